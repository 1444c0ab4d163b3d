"""AzureImage: the release as a Compute Gallery image version, from the same fixed VHD.

Page blob (the fixed VHD, 1 MiB aligned) -> gallery image definition (Linux, V2/UEFI, x64) ->
gallery image version `X.Y.Z` (from release-X.Y.Z), replicated to the configured regions,
with an end-of-life date, and excluded from `latest` for release candidates.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

import pulumi
from pulumi_azure_native import authorization, compute, storage

from components._command import python_step, step_result
from imagefactory.bootchain import NEW_VERSION_FIRMWARES
from imagefactory.cloud import AzureSettings, end_of_life_date, gallery_version_name, image_tags
from imagefactory.steps import AzureUploadRequest, AzureUploadResult


class AzureImageArgs(TypedDict):
    version: str
    is_release: bool
    commit: str
    upstream: pulumi.Input[str]
    vhd_path: pulumi.Input[str]
    """The fixed VHD of the local release."""
    vhd_sha256: pulumi.Input[str]
    """Its published digest; the upload is verified against it."""
    build_time: pulumi.Input[str]
    image_name: str
    tag_prefix: str
    """The stack's tag prefix: a gallery version is the X.Y.Z after it."""
    settings: AzureSettings
    release_candidate: bool
    """Release candidates are published but excluded from `latest`."""
    firmwares: NotRequired[tuple[str, ...]]
    """What the version's disk boots under (bootchain.version_firmwares): with secureboot, the
    definition says TrustedLaunchSupported."""
    revoked: NotRequired[dict[str, str]]
    """The registry's revocation of this version ({at, reason}): the gallery version is excluded
    from `latest`, reaches its end of life at the revocation, and is tagged ImageRevoked."""


class AzureImage(pulumi.ComponentResource):
    """Publishes one version to a Compute Gallery; `gallery_image_version_id` is what VMs launch."""

    gallery_image_version_id: pulumi.Output[str]

    def __init__(self, name: str, args: AzureImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imagefactory:azure:AzureImage", name, None, opts)
        settings = args["settings"]
        released = args["is_release"]
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, protect=released, retain_on_delete=released)
        revoked = args.get("revoked") or {}
        tags = pulumi.Output.from_input(args["upstream"]).apply(
            lambda upstream: image_tags(
                args["version"], args["commit"], upstream, args["image_name"], revoked.get("reason", "")
            )
        )
        container = storage.BlobContainer(
            f"{name}-container",
            account_name=settings.storage_account,
            resource_group_name=settings.resource_group,
            container_name="imagefactory",
            opts=child,
        )
        # azure-native's Blob resource makes block blobs only; an image import needs a page blob.
        upload = python_step(
            f"{name}-vhd",
            AzureUploadRequest,
            {
                "vhd_path": args["vhd_path"],
                "vhd_sha256": args["vhd_sha256"],
                "storage_account": settings.storage_account,
                "container": container.name,
                "blob_name": f"{args['image_name']}-{args['version']}.vhd",
            },
            triggers=[args["version"], args["vhd_sha256"]],
            opts=child,
        )
        blob_url = step_result(upload, AzureUploadResult).apply(lambda r: r.url)
        gallery = compute.Gallery(
            f"{name}-gallery",
            gallery_name=settings.gallery,
            resource_group_name=settings.resource_group,
            location=settings.location,
            opts=child,
        )
        definition = compute.GalleryImage(
            f"{name}-definition",
            gallery_name=gallery.name,
            gallery_image_name=settings.image_definition,
            resource_group_name=settings.resource_group,
            location=settings.location,
            os_type=compute.OperatingSystemTypes.LINUX,
            os_state=compute.OperatingSystemStateTypes.GENERALIZED,
            hyper_v_generation=compute.HyperVGeneration.V2,
            # A disk that boots with Secure Boot (Debian's signed shim, GRUB and kernel): Trusted
            # Launch. A version published as a UEFI-only disk keeps the inputs it was made with.
            **(
                {"features": [compute.GalleryImageFeatureArgs(name="SecurityType", value="TrustedLaunchSupported")]}
                if "secureboot" in args.get("firmwares", NEW_VERSION_FIRMWARES)
                else {}
            ),
            architecture=compute.Architecture.X64,
            identifier={"publisher": settings.publisher, "offer": settings.offer, "sku": settings.sku},
            # Azure keeps a definition's security type from its creation: so does the stack.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(ignore_changes=["features"])),
        )
        subscription = authorization.get_client_config_output(opts=pulumi.InvokeOptions(parent=self)).subscription_id
        storage_account_id = pulumi.Output.concat(
            "/subscriptions/",
            subscription,
            "/resourceGroups/",
            settings.resource_group,
            "/providers/Microsoft.Storage/storageAccounts/",
            settings.storage_account,
        )
        image_version = compute.GalleryImageVersion(
            f"{name}-version",
            gallery_name=gallery.name,
            gallery_image_name=definition.name,
            gallery_image_version_name=gallery_version_name(args["version"], args["tag_prefix"]),
            resource_group_name=settings.resource_group,
            location=settings.location,
            publishing_profile={
                "target_regions": [
                    {"name": region, "regional_replica_count": replicas} for region, replicas in settings.target_regions
                ],
                "end_of_life_date": revoked.get("at")
                or pulumi.Output.from_input(args["build_time"]).apply(
                    lambda built: end_of_life_date(built, settings.end_of_life_days)
                ),
                "exclude_from_latest": args["release_candidate"] or bool(revoked),
            },
            storage_profile={"os_disk_image": {"source": {"storage_account_id": storage_account_id, "uri": blob_url}}},
            tags=tags,
            opts=keep,
        )
        self.gallery_image_version_id = image_version.id
        self.register_outputs({"gallery_image_version_id": self.gallery_image_version_id})
