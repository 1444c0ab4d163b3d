"""ImageRelease: publish one version to the registry; releases are protected and retained."""

from __future__ import annotations

from typing import NotRequired, TypedDict

import pulumi

from components._command import python_step, step_result, step_script
from imagefactory.steps import ImageEntry, PublishRequest


class ImageReleaseArgs(TypedDict):
    version: str
    is_release: bool
    """Releases are immutable: protected, retained on delete, refused if republished differently."""
    staging_dir: pulumi.Input[str]
    manifest: pulumi.Input[dict]
    registry_dir: str
    retire_on_delete: NotRequired[bool]
    """False for a parent stage: images are built on it, so it stays when its resources go."""


class ImageRelease(pulumi.ComponentResource):
    """Records the version in the on-disk registry and exposes its lookup-table entry."""

    entry: pulumi.Output[ImageEntry]

    def __init__(self, name: str, args: ImageReleaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imagefactory:local:ImageRelease", name, None, opts)
        released = args["is_release"]
        content = pulumi.Output.from_input(args["manifest"]).apply(
            lambda m: {fmt: item["sha256"] for fmt, item in sorted(m.get("formats", {}).items())}
        )
        publish = python_step(
            f"{name}-publish",
            PublishRequest,
            {"registry": args["registry_dir"], "staging": args["staging_dir"], "version": args["version"]},
            triggers=[args["version"], content],
            # A development version leaves the registry with its resource; a release never
            # does by accident: retiring it is `make retire VERSION=…` (see README).
            delete=None
            if released or not args.get("retire_on_delete", True)
            else step_script('registry retire --registry "$REGISTRY" --version "$IMAGE_VERSION" --missing-ok'),
            opts=pulumi.ResourceOptions(parent=self, protect=released, retain_on_delete=released),
        )
        self.entry = step_result(publish, ImageEntry)
        self.register_outputs({"entry": self.entry})
