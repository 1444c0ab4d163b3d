"""Shared helpers for integration tests: an isolated copy of the project and its Pulumi env."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

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
