"""Shared test helpers: an isolated copy of the project, its Pulumi env, and fake step results for mocks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from imagefactory import build_cloud, steps

ROOT = Path(__file__).resolve().parent.parent
COPY_IGNORE = shutil.ignore_patterns(
    ".venv", ".state", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".ansible", "work"
)


def copy_project(dest: Path) -> Path:
    """Copy the project (without state, venv or git) so a test never touches the user's stacks."""
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE, symlinks=True)
    # The user's stack files may carry their passphrase salt; a test stack makes its own.
    for stack_file in (dest / "stacks").glob("Pulumi.*.yaml"):
        lines = stack_file.read_text().splitlines(keepends=True)
        stack_file.write_text("".join(line for line in lines if not line.startswith("encryptionsalt:")))
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def init_git(repo: Path, tag: str | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True, env=env)  # noqa: E731
    run("init", "-q", "-b", "main")
    run("add", "-A")
    run("commit", "-q", "-m", "test tree")
    if tag:
        run("tag", tag)
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def pulumi_env(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PULUMI_BACKEND_URL"] = f"file://{project / '.state' / 'pulumi'}"
    env["PULUMI_CONFIG_PASSPHRASE"] = "integration-test-only"
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
    env["PULUMI_SKIP_UPDATE_CHECK"] = "true"
    (project / ".state" / "pulumi").mkdir(parents=True, exist_ok=True)
    return env


def pulumi(
    project: Path, *args: str, env: dict[str, str], check: bool = True, timeout: int = 3600
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["pulumi", *args, "--non-interactive"], cwd=project, env=env, text=True, capture_output=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"pulumi {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
        )
    return result


def stack_outputs(project: Path, stack: str, env: dict[str, str]) -> dict:
    result = pulumi(project, "stack", "output", "--json", "--show-secrets", "--stack", stack, env=env)
    return json.loads(result.stdout)


def fake_step_result(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """For Pulumi mocks: what the step named `name` prints as its last line, built from the
    step's result contract (imagefactory.steps), so a component reading a key that the step
    does not print fails a unit test."""
    env = inputs.get("environment", {})
    version = env.get("IMAGE_VERSION", "")
    registry = f".state/registry/{version}"
    files = {
        fmt: {"path": f"{registry}/debian-12-{version}.{ext}", "sha256": fmt[0] * 64, "bytes": 3 << 30}
        for fmt, ext in (("raw", "raw"), ("qcow2", "qcow2"), ("vhd", "vhd"), ("vmdk", "vmdk"), ("ova", "ova"))
    }
    results: dict[str, steps.Result | dict[str, Any]] = {
        "-resolve": steps.UpstreamResult("/cache/up.qcow2", "u" * 64, "stage0:x", "sha256:" + "u" * 64, "stage0"),
        "-source": steps.SourcesResult(env.get("DEST", ""), env.get("IMAGE_COMMIT", "")),
        "-packer": steps.BuildResult(
            version=version,
            commit="c" * 40,
            raw=f".state/work/{version}/b/disk.raw",
            sha256="r" * 64,
            bytes=3 << 30,
            accelerator="tcg",
            build_time="2026-01-01T00:00:00Z",
            log=".state/work/logs/x.log",
            remaster={},
        ),
        "-seal-check": steps.SealReport(disk="disk.raw", version=version, sealed=True, findings=[]),
        "-convert": steps.FormatsResult(
            version=version,
            commit="c" * 40,
            name="debian-12",
            disk_size_mib=3072,
            build_time="2026-01-01T00:00:00Z",
            upstream={"source": "stage0:x", "sha256": "u" * 64},
            sealed_raw_sha256="r" * 64,
            formats={},
            dir=f".state/work/{version}/formats-x",
        ),
        "-publish": {"version": version, "commit": "c" * 40, "dir": registry, "formats": files},
        "-verify": steps.ParentResult(
            path=f".state/registry/stages/{env.get('PARENT_STAGE')}/{env.get('PARENT_VERSION')}/p.qcow2",
            sha256="p" * 64,
            source=f"{env.get('PARENT_STAGE')} {env.get('PARENT_VERSION')}",
            stage=env.get("PARENT_STAGE", ""),
            version=env.get("PARENT_VERSION", ""),
            chain=[
                {"stage": "upstream", "source": "stage0:x", "sha256": "u" * 64, "verified": "stage0"},
                {"stage": env.get("PARENT_STAGE", ""), "version": env.get("PARENT_VERSION", "")},
            ],
        ),
        "-push": {
            "version": Path(env.get("VERSION_DIR", "")).name,
            "registry": env.get("SHARED_REGISTRY", "").split("?")[0],
            "commit": "c" * 40,
            "published_at": "2026-01-01T00:00:00Z",
            "formats": {
                fmt: {
                    "file": Path(str(item["path"])).name,
                    "sha256": item["sha256"],
                    "bytes": item["bytes"],
                    "url": f"{env.get('SHARED_REGISTRY', '').split('?')[0]}/blobs/sha256/{item['sha256']}",
                    "web_url": f"http://127.0.0.1:1/blobs/sha256/{item['sha256']}",
                }
                for fmt, item in files.items()
            },
        },
        "-vhd": steps.AzureUploadResult("https://st.blob.core.windows.net/imagefactory/x.vhd", "v" * 64, True),
        "-vm": {"reported_version": env.get("IMAGE_VERSION", ""), "pid": 1},
        "-aws-packer": {"amis": {"eu-west-1": "ami-0native"}},
        "-azure-packer": build_cloud.parse_artifact(
            "azure",
            {"builds": [{"name": "azure", "artifact_id": "/subscriptions/sub-1/resourceGroups/rg/providers/i"}]},
            json.loads(env.get("PACKER_VARIABLES", "{}")),
        )
        if name.endswith("-azure-packer")
        else {},
    }
    if "-deprecate-" in name:  # aws_lifecycle deprecate-now, in one region
        return {"image_id": env.get("IMAGE_ID", ""), "deprecate_at": "2026-11-28T10:01:00Z"}
    result = results[max((s for s in results if name.endswith(s)), key=len)]
    return result.to_json() if isinstance(result, steps.Result) else result
