"""Run a native cloud build: Packer's amazon-ebs or azure-arm source with the same roles.

    python -m imagefactory.build_cloud --target aws|azure --version V --commit C --source-dir D \
        --work-dir W --build-epoch E --upstream U --variables JSON

Credentials come from the usual environment (AWS_* / ARM_*), never from arguments. Prints
one JSON line: for aws {"amis": {region: ami-id}}, for azure {"managed_image_id": …,
"gallery_image_version_id": …}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

from imagefactory.build import run_packer
from imagefactory.errors import FactoryError, run_step
from imagefactory.steps import CloudBuildRequest
from imagefactory.versions import iso_time

SOURCES = {"aws": "amazon-ebs.aws", "azure": "azure-arm.azure"}
BUILD_USERS = {"aws": "admin", "azure": "packer"}


def parse_artifact(target: str, manifest: dict, variables: dict | None = None) -> dict[str, object]:
    """Read Packer's manifest post-processor output for the last build of the source.

    For azure the artifact is the managed image; VMs launch the gallery image version that the
    same build published (shared_image_gallery_destination), so its ID is reported too, in the
    subscription of the managed image."""
    builds = [b for b in manifest.get("builds", []) if b.get("name") in ("aws", "azure")]
    if not builds:
        raise FactoryError("Packer's manifest lists no cloud build")
    artifact = builds[-1]["artifact_id"]
    if target == "aws":
        amis = {}
        for pair in artifact.split(","):
            region, _, ami = pair.partition(":")
            if not ami.startswith("ami-"):
                raise FactoryError(f"unexpected amazon-ebs artifact {pair!r}")
            amis[region] = ami
        return {"amis": amis}
    parts = artifact.split("/")
    if len(parts) < 3 or parts[1].lower() != "subscriptions":
        raise FactoryError(f"unexpected azure-arm artifact {artifact!r}")
    given = variables or {}
    missing = [
        k
        for k in ("azure_resource_group", "azure_gallery", "azure_image_definition", "azure_gallery_version")
        if not given.get(k)
    ]
    if missing:
        raise FactoryError(f"cannot name the gallery image version: no {', '.join(missing)}")
    gallery_version = (
        f"/subscriptions/{parts[2]}/resourceGroups/{given['azure_resource_group']}/providers/Microsoft.Compute/"
        f"galleries/{given['azure_gallery']}/images/{given['azure_image_definition']}/versions/"
        f"{given['azure_gallery_version']}"
    )
    return {"managed_image_id": artifact, "gallery_image_version_id": gallery_version}


def main(argv: list[str] | None = None) -> int:
    parser = CloudBuildRequest.parser(argparse.ArgumentParser(description="Run a native cloud build with Packer."))
    args = CloudBuildRequest.from_namespace(parser.parse_args(argv), os.environ)
    return run_step("build", lambda: build(args))


def build(args: CloudBuildRequest) -> dict[str, object]:
    """Run the cloud source of Packer and return the artifact (AMIs or the gallery version)."""
    logs = args.work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.work_dir / args.version / f"{args.target}-{stamp}"
    with tempfile.TemporaryDirectory(prefix="imagefactory-cloud-") as tmp:
        extra = Path(tmp) / "build-vars.json"
        extra.write_text(
            json.dumps(
                {
                    "image_version": args.version,
                    "image_commit": args.commit,
                    "upstream_digest": args.upstream,
                    "upstream_source": args.upstream,
                    "seal_build_user": BUILD_USERS[args.target],
                    "source_date_epoch": str(args.build_epoch),
                    "build_time": iso_time(args.build_epoch),
                }
            )
        )
        variables = {
            "image_version": args.version,
            "image_commit": args.commit,
            "upstream_digest": args.upstream,
            "ansible_extra_vars_file": str(extra),
            "output_directory": str(output),
            **json.loads(args.variables),
        }
        if args.target == "azure" and not variables.get("azure_subscription_id"):
            variables["azure_subscription_id"] = os.environ.get("ARM_SUBSCRIPTION_ID", "")
        if variables.get("azure_source_gallery_version") and not variables["azure_subscription_id"]:
            raise FactoryError(
                "ARM_SUBSCRIPTION_ID is not set; an Azure stage built on its parent's gallery version "
                "needs the gallery's subscription"
            )
        if variables.get("aws_source_ami_tags"):
            # A parent stage: only the very AMI it built matches, besides its tags and owner.
            variables["aws_source_ami_id"] = args.upstream
        env = dict(os.environ)
        for name, value in variables.items():
            env[f"PKR_VAR_{name}"] = value if isinstance(value, str) else json.dumps(value)
        code = run_packer(
            ["packer", "build", "-color=false", f"-only={SOURCES[args.target]}", "."],
            logs / f"{args.version}-{args.target}-{stamp}.log",
            args.source_dir / "packer",
            env,
        )
    if code != 0:
        raise FactoryError(f"packer build ({SOURCES[args.target]}) of {args.version} failed (exit code {code})")
    manifest = json.loads(Path(f"{output}-manifest.json").read_text())
    return parse_artifact(args.target, manifest, json.loads(args.variables))


if __name__ == "__main__":
    sys.exit(main())
