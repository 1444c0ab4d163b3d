"""NativeImageBuild: build a version in the cloud with Packer's amazon-ebs or azure-arm source.

The same Ansible roles run as in the local build. AWS builds start from an AMI whose owner is
pinned (UpstreamImage's rule: a filter without an owner is refused); Azure builds start from a
marketplace image whose version is pinned. In a chain, a child starts from its parent stage's own
image: the AMI with its ImageVersion and ImageStage tags, or its gallery version. Credentials
reach Packer only through the provider's usual environment (AWS_* / ARM_*), never through
arguments or state.
"""

from __future__ import annotations

import json
from typing import TypedDict

import pulumi

from components._command import python_step, step_result
from imagefactory.cloud import (
    AwsSettings,
    AzureSettings,
    deprecation_time,
    gallery_version_name,
    require_owner,
    stage_image_definition,
)
from imagefactory.steps import CloudBuildRequest


class NativeImageBuildArgs(TypedDict, total=False):
    target: str
    """aws or azure."""
    version: str
    is_release: bool
    """Released builds are protected and retained."""
    commit: str
    build_epoch: int
    build_time: str
    source_dir: pulumi.Input[str]
    work_dir: str
    image_name: str
    tag_prefix: str
    """The stack's tag prefix: a gallery version is the X.Y.Z after it."""
    aws: AwsSettings
    azure: AzureSettings
    playbook: str
    """The stage's playbook under ansible/."""
    stage: str
    """The stage's name in a chain of more than one (tagged ImageStage); left out for one stage."""
    parent: tuple[str, str, NativeImageBuild]
    """(stage, version, build) of the stage below. AWS: its AMI is this build's source, found by its
    ImageVersion and ImageStage tags among the account's own images (owner pinned to self). Azure:
    its gallery version (in the stage's own image definition) is this build's source."""
    after: list[pulumi.Resource]
    """Resources the build needs first (Azure: a parent stage's image definition)."""
    parent_stage: bool
    """This build is a parent stage: on Azure it publishes to the stage's own image definition."""


class NativeImageBuild(pulumi.ComponentResource):
    """`amis` (aws: region -> AMI id) or `gallery_image_version_id` (azure), and the `upstream` used."""

    upstream: pulumi.Output[str]
    result: pulumi.Output[dict]

    def __init__(self, name: str, args: NativeImageBuildArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imagefactory:cloud:NativeImageBuild", name, None, opts)
        target = args["target"]
        parent = args.get("parent")
        variables: dict[str, object]
        if target == "aws" and parent is not None:
            settings = args["aws"]
            parent_stage, parent_version, parent_build = parent
            self.upstream = parent_build.result.apply(lambda r: r["amis"][settings.region])
            variables = {
                "aws_region": settings.region,
                "aws_copy_regions": list(settings.copy_regions),
                "aws_source_ami_owner": "self",
                "aws_source_ami_name": "",
                "aws_source_ami_tags": {"ImageVersion": parent_version, "ImageStage": parent_stage},
                "aws_instance_type": settings.instance_type,
                "aws_deprecate_at": deprecation_time(args["build_time"], settings.deprecate_after_days),
                "image_name": args["image_name"],
            }
        elif target == "aws":
            import pulumi_aws as aws

            settings = args["aws"]
            owner = require_owner(settings.source_ami_owner)
            source = aws.ec2.get_ami_output(
                owners=[owner],
                most_recent=True,
                filters=[
                    {"name": "name", "values": [settings.source_ami_name]},
                    {"name": "architecture", "values": ["x86_64"]},
                    {"name": "virtualization-type", "values": ["hvm"]},
                ],
                region=settings.region,
                opts=pulumi.InvokeOptions(parent=self),
            )
            self.upstream = source.id
            variables = {
                "aws_region": settings.region,
                "aws_copy_regions": list(settings.copy_regions),
                "aws_source_ami_owner": owner,
                "aws_source_ami_name": settings.source_ami_name,
                "aws_instance_type": settings.instance_type,
                "aws_deprecate_at": deprecation_time(args["build_time"], settings.deprecate_after_days),
                "image_name": args["image_name"],
            }
        else:
            settings_az = args["azure"]
            market = settings_az.marketplace
            definition = settings_az.image_definition
            if args.get("parent_stage"):
                definition = stage_image_definition(definition, args["stage"])
            variables = {
                "azure_resource_group": settings_az.resource_group,
                "azure_location": settings_az.location,
                "azure_gallery": settings_az.gallery,
                "azure_image_definition": definition,
                "azure_gallery_version": gallery_version_name(args["version"], args["tag_prefix"]),
                "azure_replication_regions": [region for region, _ in settings_az.target_regions],
                "azure_marketplace": market,
                "image_name": args["image_name"],
            }
            if parent is not None:
                parent_stage, parent_version, parent_build = parent
                self.upstream = parent_build.result.apply(lambda r: r["gallery_image_version_id"])
                variables["azure_source_image_definition"] = stage_image_definition(
                    settings_az.image_definition, parent_stage
                )
                variables["azure_source_gallery_version"] = gallery_version_name(parent_version, args["tag_prefix"])
            else:
                self.upstream = pulumi.Output.from_input(
                    f"{market['publisher']}:{market['offer']}:{market['sku']}:{market['version']}"
                )
        # Left out at their defaults: the inputs of builds made before stages existed stay the same.
        if args.get("playbook", "site.yml") != "site.yml":
            variables["playbook"] = args["playbook"]
        if args.get("stage"):
            variables["image_stage"] = args["stage"]
        build = python_step(
            f"{name}-{target}-packer",
            CloudBuildRequest,
            {
                "target": target,
                "version": args["version"],
                "commit": args["commit"],
                "source_dir": args["source_dir"],
                "work_dir": args["work_dir"],
                "build_epoch": args["build_epoch"],
                "upstream": self.upstream,
                "variables": json.dumps(variables, sort_keys=True),
            },
            triggers=[args["version"], args["commit"], self.upstream, json.dumps(variables, sort_keys=True)],
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args["is_release"],
                retain_on_delete=args["is_release"],
                depends_on=[*([parent[2]] if parent else []), *args.get("after", [])] or None,
            ),
        )
        self.result = step_result(build, dict)
        self.register_outputs({"upstream": self.upstream, "result": self.result})
