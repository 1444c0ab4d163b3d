"""Stack files are shared by every user: no user's passphrase salt may ever be committed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SALT = "encryptionsalt: v1:Haq7ddOaj5k=:v1:Ok+THxyETZzlQjgv:xopxU09zvfVdUMVYUJLTZFPbUPfKJg==\n"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x.invalid"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@x.invalid")
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


def tracked_stack_files() -> list[str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    return [p for p in git(ROOT, "ls-files", "stacks").split() if p.endswith(".yaml")]


def test_no_tracked_stack_file_holds_a_passphrase_salt() -> None:
    files = tracked_stack_files()
    assert "stacks/Pulumi.local.yaml" in files
    for path in files:
        committed = (
            git(ROOT, "show", f"HEAD:{path}") if path in git(ROOT, "ls-tree", "-r", "HEAD", "--name-only") else ""
        )
        staged = git(ROOT, "show", f":{path}")
        for text in (committed, staged):
            assert "encryptionsalt" not in text, f"{path} carries a passphrase salt: every other user's first run fails"


def test_the_git_filter_keeps_a_new_salt_out_of_git(tmp_path: Path) -> None:
    """What `pulumi stack init` writes into the stack file never reaches git, nor makes it dirty."""
    repo = tmp_path / "repo"
    (repo / "tools").mkdir(parents=True)
    shutil.copy(ROOT / "tools" / "stack.sh", repo / "tools" / "stack.sh")
    shutil.copy(ROOT / ".gitattributes", repo / ".gitattributes")
    shutil.copytree(ROOT / "stacks", repo / "stacks")
    stack_file = repo / "stacks" / "Pulumi.local.yaml"
    stack_file.write_text(
        "".join(line for line in stack_file.read_text().splitlines(True) if "encryptionsalt" not in line)
    )
    git(repo, "init", "-q", "-b", "main")
    subprocess.run([str(repo / "tools" / "stack.sh"), "git-filter"], check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "stacks")

    stack_file.write_text(stack_file.read_text() + SALT)  # what `pulumi stack init` does
    assert git(repo, "diff") == "", "the user's salt makes no change git can see"
    git(repo, "add", "-A")
    assert git(repo, "status", "--porcelain") == "", "nothing to commit"
    git(repo, "commit", "-q", "--allow-empty", "-m", "after init")
    assert "encryptionsalt" not in git(repo, "show", "HEAD:stacks/Pulumi.local.yaml")
    assert SALT in stack_file.read_text(), "the user's own copy keeps its salt"


def test_make_lookup_and_fetch_read_the_stacks_shared_registry(tmp_path: Path) -> None:
    """tools/stack.sh registry <stack>: what `make lookup`/`make fetch` use when REGISTRY is unset."""
    from tests.helpers import copy_project

    project = copy_project(tmp_path / "project")
    script = project / "tools" / "stack.sh"

    def registry(stack: str) -> str:
        return subprocess.run([str(script), "registry", stack], capture_output=True, text=True, check=True).stdout

    assert registry("local") == "\n", "the embedded default has no shared registry"
    stack_file = project / "stacks" / "Pulumi.local.yaml"
    url = "s3://images/team?endpoint=http://127.0.0.1:9000&pathStyle=true"
    stack_file.write_text(stack_file.read_text() + f"  imagefactory:registry: {url}\n")
    assert registry("local") == url + "\n"
    assert registry("no-such-stack") == "\n"
