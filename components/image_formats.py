"""ImageFormats: every format is a pure conversion of the one sealed RAW disk."""

from __future__ import annotations

from typing import NotRequired, TypedDict

import pulumi

from components._command import python_step, step_result, step_script
from imagefactory.steps import FormatsRequest, FormatsResult


class ImageFormatsArgs(TypedDict):
    version: str
    commit: str
    build_epoch: int
    build_time: pulumi.Input[str]
    raw_path: pulumi.Input[str]
    raw_sha256: pulumi.Input[str]
    """Digest of the RAW that passed the seal check; a changed RAW is refused."""
    seal_report: pulumi.Input[dict]
    """Only used to order this step after the seal check."""
    upstream_source: pulumi.Input[str]
    upstream_sha256: pulumi.Input[str]
    formats: list[str]
    """Any of raw, qcow2, vhd, vmdk, ova, vhdx."""
    out_dir: str
    """Where this version's staging folders are made (ImageRelease publishes from them)."""
    image_name: str
    code_dir: pulumi.Input[str]
    """The tree whose conversion and OVF code runs: the tag's tree for a release."""
    stage: NotRequired[str]
    recipe: NotRequired[str]
    stage_key: NotRequired[str]
    parents: NotRequired[pulumi.Input[str]]
    """JSON list: the chain of custody below this stage (imagefactory.stages)."""
    ova_manifest: NotRequired[str]
    """The OVA manifest's digest, sha256 (the default) or sha1."""


def ova_digest(args: ImageFormatsArgs) -> str:
    """The OVA manifest's digest; it is an input only of a version that has an OVA."""
    return args.get("ova_manifest", "sha256") if "ova" in args["formats"] else "sha256"


class ImageFormats(pulumi.ComponentResource):
    """Converts, checks and checksums each format; writes SHA256SUMS and manifest.json."""

    manifest: pulumi.Output[dict]
    staging_dir: pulumi.Output[str]

    def __init__(self, name: str, args: ImageFormatsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imagefactory:local:ImageFormats", name, None, opts)
        convert = python_step(
            f"{name}-convert",
            FormatsRequest,
            {
                "raw": args["raw_path"],
                "raw_sha256": args["raw_sha256"],
                "out_base": args["out_dir"],
                "version": args["version"],
                "commit": args["commit"],
                "upstream_source": args["upstream_source"],
                "upstream_sha256": args["upstream_sha256"],
                "build_time": args["build_time"],
                "build_epoch": args["build_epoch"],
                "formats": ",".join(args["formats"]),
                "name": args["image_name"],
                "sealed": pulumi.Output.from_input(args["seal_report"]).apply(lambda r: str(r.get("sealed", ""))),
                "stage": args.get("stage", ""),
                "recipe": args.get("recipe", ""),
                "stage_key": args.get("stage_key", ""),
                "parents": args.get("parents", ""),
                # Only when not the default: an OVA made before this setting existed keeps its inputs.
                **({"ova_manifest": digest} if (digest := ova_digest(args)) != "sha256" else {}),
            },
            triggers=[args["raw_sha256"], ",".join(args["formats"]), args["image_name"]]
            + ([digest] if digest != "sha256" else []),
            delete=step_script("formats --remove-previous"),
            opts=pulumi.ResourceOptions(parent=self),
            code_dir=args["code_dir"],
        )
        self.manifest = step_result(convert, FormatsResult).apply(lambda r: r.to_json())
        self.staging_dir = self.manifest.apply(lambda m: m["dir"])
        self.register_outputs({"manifest": self.manifest, "staging_dir": self.staging_dir})
