"""ImageFormats: every format is a pure conversion of the one sealed RAW disk."""

from __future__ import annotations

from typing import TypedDict

import pulumi

from components._command import json_stdout, python_step, step_script


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


class ImageFormats(pulumi.ComponentResource):
    """Converts, checks and checksums each format; writes SHA256SUMS and manifest.json."""

    manifest: pulumi.Output[dict]
    staging_dir: pulumi.Output[str]

    def __init__(self, name: str, args: ImageFormatsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imagefactory:local:ImageFormats", name, None, opts)
        convert = python_step(
            f"{name}-convert",
            'formats --raw "$RAW" --raw-sha256 "$RAW_SHA256" --out-base "$OUT_DIR" --version "$IMAGE_VERSION" '
            '--commit "$IMAGE_COMMIT" --upstream-source "$UPSTREAM_SOURCE" --upstream-sha256 "$UPSTREAM_SHA256" '
            '--build-time "$BUILD_TIME" --build-epoch "$BUILD_EPOCH" --formats "$FORMATS" --name "$IMAGE_NAME"',
            {
                "RAW": args["raw_path"],
                "RAW_SHA256": args["raw_sha256"],
                "OUT_DIR": args["out_dir"],
                "IMAGE_VERSION": args["version"],
                "IMAGE_COMMIT": args["commit"],
                "UPSTREAM_SOURCE": args["upstream_source"],
                "UPSTREAM_SHA256": args["upstream_sha256"],
                "BUILD_TIME": args["build_time"],
                "BUILD_EPOCH": str(args["build_epoch"]),
                "FORMATS": ",".join(args["formats"]),
                "IMAGE_NAME": args["image_name"],
                "SEALED": pulumi.Output.from_input(args["seal_report"]).apply(lambda r: str(r.get("sealed", ""))),
            },
            triggers=[args["raw_sha256"], ",".join(args["formats"]), args["image_name"]],
            delete=step_script("formats --remove-previous"),
            opts=pulumi.ResourceOptions(parent=self),
            code_dir=args["code_dir"],
        )
        self.manifest = json_stdout(convert)
        self.staging_dir = self.manifest.apply(lambda m: m["dir"])
        self.register_outputs({"manifest": self.manifest, "staging_dir": self.staging_dir})
