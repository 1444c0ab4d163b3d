"""ImageBuild: Packer + Ansible turn the upstream image into a sealed RAW disk, then an offline
seal check proves it is sealed and stamped before anything else may use it."""

from __future__ import annotations

from typing import NotRequired, TypedDict

import pulumi

from components._command import python_step, step_result, step_script
from imagefactory.steps import BuildRequest, BuildResult, SealCheckRequest, SealReport


class ImageBuildArgs(TypedDict):
    version: str
    """release-X.Y.Z or dev-<sha>[-dirty]; stamped into the image."""
    commit: str
    """The git commit the sources come from."""
    build_epoch: int
    """Commit time; stamped as BUILD_TIME so a rebuild of a tag stamps the same time."""
    source_dir: pulumi.Input[str]
    """Folder holding packer/, ansible/ and imagefactory/: the tag's tree for releases, the working
    tree for dev builds. The build, re-master and seal check run from its imagefactory package."""
    source_digest: str
    """Digest of packer/ and ansible/ of the working tree (dev builds); empty for releases (commit decides)."""
    upstream_path: pulumi.Input[str]
    upstream_sha256: pulumi.Input[str]
    upstream_source: pulumi.Input[str]
    work_dir: str
    """Build folders, relative to the project root when inside it; a failed build leaves nothing
    here but its log. The accelerator and the timeout are host facts (imagefactory.host), never
    inputs: switching them never rebuilds an image."""
    disk_size_mib: int
    playbook: NotRequired[str]
    """The stage's playbook under ansible/ (site.yml when left out)."""
    stage: NotRequired[str]
    """The stage's name, stamped as IMAGE_STAGE."""


class ImageBuild(pulumi.ComponentResource):
    """Runs `packer build` through pulumi-command, then the offline seal check of the result."""

    raw_path: pulumi.Output[str]
    raw_sha256: pulumi.Output[str]
    build_time: pulumi.Output[str]
    log: pulumi.Output[str]
    seal_report: pulumi.Output[dict]

    def __init__(self, name: str, args: ImageBuildArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imagefactory:local:ImageBuild", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        packer = python_step(
            f"{name}-packer",
            BuildRequest,
            {
                "version": args["version"],
                "commit": args["commit"],
                "build_epoch": args["build_epoch"],
                "source_dir": args["source_dir"],
                "upstream_path": args["upstream_path"],
                "upstream_sha256": args["upstream_sha256"],
                "upstream_source": args["upstream_source"],
                "work_dir": args["work_dir"],
                "disk_size_mib": args["disk_size_mib"],
                "playbook": args.get("playbook", "site.yml"),
                "stage": args.get("stage", ""),
            },
            # What decides the image's content. Not the checkout: a release depends on its tag's
            # commit only, so newer code never rebuilds an older release.
            triggers=[
                args["version"],
                args["commit"],
                args["upstream_sha256"],
                args["source_digest"],
                args["disk_size_mib"],
            ],
            delete=step_script("build --remove-previous"),
            opts=child,
            code_dir=args["source_dir"],
        )
        built = step_result(packer, BuildResult)
        self.raw_path = built.apply(lambda r: r.raw)
        self.raw_sha256 = built.apply(lambda r: r.sha256)
        self.build_time = built.apply(lambda r: r.build_time)
        self.log = built.apply(lambda r: r.log)

        seal = python_step(
            f"{name}-seal-check",
            SealCheckRequest,
            {"disk": self.raw_path, "version": args["version"]},
            triggers=[self.raw_sha256],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[packer]),
            code_dir=args["source_dir"],
        )
        self.seal_report = step_result(seal, SealReport).apply(lambda r: r.to_json())
        self.register_outputs(
            {
                "raw_path": self.raw_path,
                "raw_sha256": self.raw_sha256,
                "build_time": self.build_time,
                "log": self.log,
                "seal_report": self.seal_report,
            }
        )
