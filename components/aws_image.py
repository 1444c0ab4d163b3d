"""AwsImage: the release as an AMI, made from the very RAW every other format came from.

S3 object (the sealed RAW) -> ebs.SnapshotImport -> ec2.Ami (UEFI, ENA, IMDSv2 only) -> an
AmiCopy in every other configured region. Every AMI and snapshot carries the ImageVersion tag,
each AMI is deprecated on a configured date, and released resources are protected.
Credentials come only from the provider's usual environment or config secrets.
"""

from __future__ import annotations

from typing import TypedDict

import pulumi
import pulumi_aws as aws

from imagefactory.cloud import AwsSettings, deprecation_time, image_tags


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


class AwsImage(pulumi.ComponentResource):
    """Imports one version into AWS; `amis` maps region -> AMI id."""

    amis: pulumi.Output[dict]

    def __init__(self, name: str, args: AwsImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imagefactory:aws:AwsImage", name, None, opts)
        settings = args["settings"]
        released = args["is_release"]
        keep = pulumi.ResourceOptions(parent=self, protect=released, retain_on_delete=released)
        tags = pulumi.Output.from_input(args["upstream"]).apply(
            lambda upstream: image_tags(args["version"], args["commit"], upstream, args["image_name"])
        )
        disk = aws.s3.BucketObjectv2(
            f"{name}-disk",
            bucket=settings.bucket,
            key=f"imagefactory/{args['version']}/{args['image_name']}-{args['version']}.raw",
            source=pulumi.Output.from_input(args["raw_path"]).apply(pulumi.FileAsset),
            checksum_algorithm="SHA256",
            tags=tags,
            region=settings.region,
            opts=pulumi.ResourceOptions(parent=self),
        )
        snapshot = aws.ebs.SnapshotImport(
            f"{name}-snapshot",
            disk_container={"format": "RAW", "user_bucket": {"s3_bucket": disk.bucket, "s3_key": disk.key}},
            role_name=settings.import_role,
            description=f"{args['image_name']} {args['version']}",
            tags=tags,
            region=settings.region,
            opts=keep,
        )
        deprecate_at = pulumi.Output.from_input(args["build_time"]).apply(
            lambda built: deprecation_time(built, settings.deprecate_after_days)
        )
        ami = aws.ec2.Ami(
            f"{name}-ami",
            name=f"{args['image_name']}-{args['version']}",
            description=f"{args['image_name']} {args['version']} ({args['commit'][:12]})",
            architecture="x86_64",
            boot_mode="uefi",
            ena_support=True,
            imds_support="v2.0",
            virtualization_type="hvm",
            root_device_name="/dev/xvda",
            ebs_block_devices=[
                {
                    "device_name": "/dev/xvda",
                    "snapshot_id": snapshot.id,
                    "volume_type": "gp3",
                    "delete_on_termination": True,
                }
            ],
            deprecation_time=deprecate_at,
            tags=tags,
            region=settings.region,
            opts=keep,
        )
        regions = {settings.region: ami.id}
        for region in settings.copy_regions:
            copy = aws.ec2.AmiCopy(
                f"{name}-ami-{region}",
                name=f"{args['image_name']}-{args['version']}",
                source_ami_id=ami.id,
                source_ami_region=settings.region,
                deprecation_time=deprecate_at,
                tags=tags,
                region=region,
                opts=keep,
            )
            regions[region] = copy.id
        self.amis = pulumi.Output.all(**regions)
        self.register_outputs({"amis": self.amis})
