"""AwsImage: the release as an AMI, made from the very RAW every other format came from.

S3 object (the sealed RAW) -> ebs.SnapshotImport -> ec2.Ami (UEFI, ENA, IMDSv2 only) -> an
AmiCopy in every other configured region. Every AMI and snapshot carries the ImageVersion tag,
each AMI is deprecated on a configured date, and released resources are protected.
Credentials come only from the provider's usual environment or config secrets.

The request parameters come from imagefactory.aws_import: the plan that `aws_import.execute`
sends with boto3 (tested against moto's server) is what this file maps to pulumi_aws resources;
tests/unit/test_aws_import.py fails if the two disagree.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

import pulumi
import pulumi_aws as aws
from pulumi_command import local

from components._command import step_script
from imagefactory.aws_import import layout
from imagefactory.bootchain import NEW_VERSION_FIRMWARES
from imagefactory.cloud import AwsSettings, deprecation_time, image_tags

DEPRECATE_NOW = 'aws_lifecycle deprecate-now --owner self --region "$REGION" --image-id "$IMAGE_ID"'


class AwsImageArgs(TypedDict):
    version: str
    is_release: bool
    commit: str
    upstream: pulumi.Input[str]
    """The upstream digest (chain of custody), recorded in the tags."""
    raw_path: pulumi.Input[str]
    """The sealed RAW disk of the local release."""
    raw_sha256: pulumi.Input[str]
    build_time: pulumi.Input[str]
    image_name: str
    settings: AwsSettings
    revoked: NotRequired[str]
    """The reason of the registry's revocation of this version: tagged ImageRevoked on every AMI,
    and every AMI deprecated at once (the next minute) by the `pulumi up` that carries it."""
    firmwares: NotRequired[tuple[str, ...]]
    """What the version's disk boots under (bootchain.version_firmwares): its AMIs' boot mode."""


class AwsImage(pulumi.ComponentResource):
    """Imports one version into AWS; `amis` maps region -> AMI id."""

    amis: pulumi.Output[dict]

    def __init__(self, name: str, args: AwsImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imagefactory:aws:AwsImage", name, None, opts)
        settings = args["settings"]
        released = args["is_release"]
        keep = pulumi.ResourceOptions(parent=self, protect=released, retain_on_delete=released)
        version, commit, image_name = args["version"], args["commit"], args["image_name"]
        # The fields the build's outputs do not decide are plain values (known in a preview, where a
        # replace-on-change input must not turn unknown); the tags and the deprecation time follow the
        # upstream digest and the build time with the same rules that aws_import.plan() applies.
        fixed = layout(settings, version, image_name, commit, tuple(args.get("firmwares", NEW_VERSION_FIRMWARES)))
        tags = pulumi.Output.from_input(args["upstream"]).apply(
            lambda upstream: image_tags(version, commit, upstream, image_name, args.get("revoked", ""))
        )
        deprecate_at = pulumi.Output.from_input(args["build_time"]).apply(
            lambda built: deprecation_time(built, settings.deprecate_after_days)
        )
        disk = aws.s3.BucketObjectv2(
            f"{name}-disk",
            bucket=fixed.s3_object.bucket,
            key=fixed.s3_object.key,
            source=pulumi.Output.from_input(args["raw_path"]).apply(pulumi.FileAsset),
            checksum_algorithm=fixed.s3_object.checksum_algorithm,
            tags=tags,
            region=fixed.region,
            opts=pulumi.ResourceOptions(parent=self),
        )
        snapshot = aws.ebs.SnapshotImport(
            f"{name}-snapshot",
            disk_container={
                "format": fixed.snapshot.disk_format,
                "user_bucket": {"s3_bucket": disk.bucket, "s3_key": disk.key},
            },
            role_name=fixed.snapshot.role_name,
            description=fixed.snapshot.description,
            tags=tags,
            region=fixed.region,
            opts=keep,
        )
        image = fixed.image
        # A revoked version's AMIs are deprecated now, by a step (EC2 takes no past time, so a
        # fixed deprecation time cannot say "now"); the stack then never moves that time back.
        revoked = ["deprecationTime"] if args.get("revoked") else []
        ami = aws.ec2.Ami(
            f"{name}-ami",
            name=image.name,
            description=image.description,
            architecture=image.architecture,
            boot_mode=image.boot_mode,
            ena_support=image.ena_support,
            imds_support=image.imds_support,
            virtualization_type=image.virtualization_type,
            root_device_name=image.root_device_name,
            ebs_block_devices=[
                {
                    "device_name": image.root_device_name,
                    "snapshot_id": snapshot.id,
                    "volume_type": image.volume_type,
                    "delete_on_termination": image.delete_on_termination,
                }
            ],
            deprecation_time=deprecate_at,
            tags=tags,
            region=fixed.region,
            # The boot mode an AMI was registered with stays: changing it would replace the AMI, and
            # a release's formats step (its tag's code) may not record the firmwares the program reads.
            opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(ignore_changes=["bootMode", *revoked])),
        )
        regions = {fixed.region: ami.id}
        for region in fixed.copy_regions:
            copy = aws.ec2.AmiCopy(
                f"{name}-ami-{region}",
                name=image.name,
                source_ami_id=ami.id,
                source_ami_region=fixed.region,
                deprecation_time=deprecate_at,
                tags=tags,
                region=region,
                opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(ignore_changes=revoked)),
            )
            regions[region] = copy.id
        if args.get("revoked"):
            for region, image_id in regions.items():
                local.Command(
                    f"{name}-deprecate-{region}",
                    create=step_script(DEPRECATE_NOW),
                    environment={"PYTHONPATH": ".", "REGION": region, "IMAGE_ID": image_id},
                    triggers=[image_id, args["revoked"]],
                    logging=local.Logging.STDERR,
                    opts=pulumi.ResourceOptions(parent=self),
                )
        self.amis = pulumi.Output.all(**regions)
        self.register_outputs({"amis": self.amis})
