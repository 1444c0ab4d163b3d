"""AWS and Azure targets, checked with Pulumi mocks and written as policies."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks as pulumi_mocks

from imagefactory.cloud import aws_settings, azure_settings
from imagefactory.steps import AzureUploadResult

RESOURCES: dict[str, dict[str, Any]] = {}
_register = pulumi_mocks.MockMonitor.RegisterResource


def _capture(self, request):  # type: ignore[no-untyped-def]  # a test helper; its callers pass whatever the mocked API takes
    RESOURCES.setdefault(request.name, {}).update(
        {"type": request.type, "protect": request.protect, "retain_on_delete": request.retainOnDelete}
    )
    return _register(self, request)


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        RESOURCES.setdefault(args.name, {})["inputs"] = args.inputs
        outputs = dict(args.inputs)
        if args.typ == "aws:ec2/ami:Ami":
            return "ami-0000000000000000a", outputs
        if args.typ == "aws:ec2/amiCopy:AmiCopy":
            return f"ami-copy-{args.inputs['region']}", outputs
        if args.typ == "command:local:Command" and args.name.endswith("-vhd"):
            outputs["stdout"] = json.dumps(
                AzureUploadResult("https://st.blob.core.windows.net/imagefactory/x.vhd", "v" * 64, True).to_json()
            )
        elif args.typ == "command:local:Command":
            outputs["stdout"] = '{"amis": {"eu-west-1": "ami-native"}}'
        outputs.setdefault("name", args.inputs.get("galleryName", args.name))
        outputs.setdefault("url", "https://st.blob.core.windows.net/imagefactory/x.vhd")
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        if args.token == "aws:ec2/getAmi:getAmi":
            RESOURCES["get-ami"] = {"inputs": args.args}
            return {"id": "ami-source", "ownerId": "136693071363", "architecture": "x86_64"}
        if args.token == "azure-native:authorization:getClientConfig":
            return {"subscriptionId": "sub-1", "tenantId": "t", "clientId": "c", "objectId": "o"}
        return {}


@pytest.fixture(autouse=True)
def mocked(monkeypatch: pytest.MonkeyPatch) -> None:
    RESOURCES.clear()
    monkeypatch.setattr(pulumi_mocks.MockMonitor, "RegisterResource", _capture)
    pulumi.runtime.set_mocks(Mocks(), preview=False)


AWS = aws_settings(
    {"bucket": "imports", "region": "eu-west-1", "copyRegions": ["eu-central-1", "us-east-1"], "deprecateAfterDays": 30}
)
AZURE = azure_settings(
    {
        "resourceGroup": "rg",
        "storageAccount": "st",
        "location": "westeurope",
        "targetRegions": [{"name": "westeurope", "replicas": 2}, {"name": "northeurope", "replicas": 1}],
        "endOfLifeDays": 365,
    }
)


def aws_image(version: str = "release-0.1.0", released: bool = True):  # type: ignore[no-untyped-def]  # a test helper; its callers pass whatever the mocked API takes
    from components.aws_image import AwsImage

    return AwsImage(
        version,
        {
            "version": version,
            "is_release": released,
            "commit": "c" * 40,
            "upstream": "u" * 64,
            "raw_path": "/registry/x.raw",
            "raw_sha256": "r" * 64,
            "build_time": "2025-01-01T00:00:00Z",
            "image_name": "debian-12",
            "tag_prefix": "release-",
            "settings": AWS,
        },
    )


@pulumi.runtime.test
def test_the_version_tag_is_on_every_ami_and_snapshot():
    image = aws_image()

    def check(_: Any) -> None:
        tagged = [
            n
            for n, r in RESOURCES.items()
            if r.get("type") in ("aws:ebs/snapshotImport:SnapshotImport", "aws:ec2/ami:Ami", "aws:ec2/amiCopy:AmiCopy")
        ]
        assert len(tagged) == 4, tagged
        for name in tagged:
            tags = RESOURCES[name]["inputs"]["tags"]
            assert tags["ImageVersion"] == "release-0.1.0", f"{name} carries ImageVersion"
            assert tags["ImageCommit"] == "c" * 40, f"{name} carries the commit"
            assert tags["Name"] == "debian-12-release-0.1.0"

    return image.amis.apply(check)


@pulumi.runtime.test
def test_amis_are_in_exactly_the_configured_regions():
    image = aws_image()

    def check(amis: dict) -> None:
        assert set(amis) == {"eu-west-1", "eu-central-1", "us-east-1"}
        assert RESOURCES["release-0.1.0-ami"]["inputs"]["region"] == "eu-west-1"
        for region in ("eu-central-1", "us-east-1"):
            copy = RESOURCES[f"release-0.1.0-ami-{region}"]["inputs"]
            assert copy["region"] == region and copy["sourceAmiRegion"] == "eu-west-1"
            assert copy["deprecationTime"] == "2025-01-31T00:00:00Z", "deprecate_at comes from config"

    return image.amis.apply(check)


@pulumi.runtime.test
def test_the_ami_is_imported_from_the_sealed_raw_and_boots_uefi_with_imdsv2():
    image = aws_image()

    def check(_: Any) -> None:
        snapshot = RESOURCES["release-0.1.0-snapshot"]["inputs"]
        assert snapshot["diskContainer"]["format"] == "RAW"
        ami = RESOURCES["release-0.1.0-ami"]["inputs"]
        assert ami["bootMode"] == "uefi-preferred" and ami["imdsSupport"] == "v2.0" and ami["enaSupport"]
        assert ami["deprecationTime"] == "2025-01-31T00:00:00Z"

    return image.amis.apply(check)


@pulumi.runtime.test
def test_released_cloud_images_are_protected_dev_ones_are_not():
    release = aws_image()
    dev = aws_image("dev-0123456789ab", released=False)

    def check(_: Any) -> None:
        for name in ("release-0.1.0-ami", "release-0.1.0-snapshot", "release-0.1.0-ami-us-east-1"):
            assert RESOURCES[name]["protect"] and RESOURCES[name]["retain_on_delete"], f"{name} is protected"
        assert not RESOURCES["dev-0123456789ab-ami"]["protect"]

    return pulumi.Output.all(release.amis, dev.amis).apply(check)


@pulumi.runtime.test
def test_the_gallery_version_name_matches_the_release():
    from components.azure_image import AzureImage

    image = AzureImage(
        "release-1.4.2-rc.1",
        {
            "version": "release-1.4.2",
            "is_release": True,
            "commit": "c" * 40,
            "upstream": "u" * 64,
            "vhd_path": "/registry/x.vhd",
            "vhd_sha256": "v" * 64,
            "build_time": "2025-01-01T00:00:00Z",
            "image_name": "debian-12",
            "tag_prefix": "release-",
            "settings": AZURE,
            "release_candidate": True,
        },
    )

    def check(_: Any) -> None:
        version = RESOURCES["release-1.4.2-rc.1-version"]
        inputs = version["inputs"]
        assert inputs["galleryImageVersionName"] == "1.4.2", "the gallery version is X.Y.Z of release-X.Y.Z"
        profile = inputs["publishingProfile"]
        assert [(r["name"], r["regionalReplicaCount"]) for r in profile["targetRegions"]] == [
            ("westeurope", 2),
            ("northeurope", 1),
        ], "regions and replicas come from config"
        assert profile["excludeFromLatest"] is True, "release candidates are excluded from latest"
        assert profile["endOfLifeDate"] == "2026-01-01T00:00:00Z"
        source = inputs["storageProfile"]["osDiskImage"]["source"]
        assert source["storageAccountId"].startswith("/subscriptions/sub-1/resourceGroups/rg/")
        assert version["protect"] and version["retain_on_delete"]
        definition = RESOURCES["release-1.4.2-rc.1-definition"]["inputs"]
        assert definition["hyperVGeneration"] == "V2" and definition["osType"] == "Linux"
        assert definition["features"] == [{"name": "SecurityType", "value": "TrustedLaunchSupported"}]
        upload = RESOURCES["release-1.4.2-rc.1-vhd"]["inputs"]
        assert upload["create"].endswith("azure_upload"), "the VHD goes up as a page blob, verified by digest"
        assert upload["environment"]["VHD_SHA256"] == "v" * 64
        assert source["uri"].endswith("/x.vhd")

    return image.gallery_image_version_id.apply(check)


@pulumi.runtime.test
def test_a_native_aws_build_starts_from_an_owner_pinned_ami():
    from components.cloud_build import NativeImageBuild

    build = NativeImageBuild(
        "release-0.1.0",
        {
            "target": "aws",
            "version": "release-0.1.0",
            "is_release": True,
            "commit": "c" * 40,
            "build_epoch": 0,
            "build_time": "2025-01-01T00:00:00Z",
            "source_dir": "/src",
            "work_dir": "/srv/factory",
            "image_name": "debian-12",
            "tag_prefix": "release-",
            "aws": aws_settings({"mode": "native", "region": "eu-west-1"}),
        },
    )

    def check(_: dict) -> None:
        assert RESOURCES["get-ami"]["inputs"]["owners"] == ["136693071363"], "the source AMI's owner is pinned"
        packer = RESOURCES["release-0.1.0-aws-packer"]
        assert "ami-source" in packer["inputs"]["triggers"], "the source AMI id is part of the build's identity"
        assert '"aws_source_ami_owner": "136693071363"' in packer["inputs"]["environment"]["PACKER_VARIABLES"]
        assert packer["protect"]

    return build.result.apply(check)
