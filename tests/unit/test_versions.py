"""Versions: release tags are strict semver; dev builds can never take a release name."""

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory import versions
from imagefactory.errors import FactoryError


def git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x.invalid",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "packer").mkdir()
    (tmp_path / "packer" / "a.pkr.hcl").write_text("# a\n")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.local.yaml").write_text("config: {}\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "one")
    return tmp_path


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_every_semver_triple_is_a_release_tag(major: int, minor: int, patch: int) -> None:
    assert versions.parse_release_tag(f"release-{major}.{minor}.{patch}") == (major, minor, patch, "")


@pytest.mark.parametrize("bad", ["release-1.2", "release-01.2.3", "release-1.2.3.4", "v1.2.3", "release-a.b.c", ""])
def test_a_malformed_tag_is_refused_with_the_accepted_form(bad: str) -> None:
    with pytest.raises(FactoryError, match=r"release-X\.Y\.Z"):
        versions.parse_release_tag(bad)


def test_a_version_name_must_be_a_release_or_a_dev_build() -> None:
    assert versions.validate_version_name("dev-0123abc") == "dev-0123abc"
    assert versions.validate_version_name("release-0.1.0") == "release-0.1.0"
    with pytest.raises(FactoryError, match="dev-<short-sha>"):
        versions.validate_version_name("latest")


def test_a_clean_untagged_tree_is_a_dev_version(repo: Path) -> None:
    version = versions.resolve(repo)
    head = git(repo, "rev-parse", "HEAD")
    assert version.name == f"dev-{head[:12]}"
    assert not version.is_release
    assert version.commit == head


def test_a_dirty_tree_is_marked_dirty_and_never_takes_the_tag_at_head(repo: Path) -> None:
    git(repo, "tag", "release-0.1.0")
    (repo / "packer" / "a.pkr.hcl").write_text("# changed\n")
    version = versions.resolve(repo)
    assert version.name.endswith("-dirty")
    assert not version.is_release


def test_launching_the_example_app_does_not_make_the_tree_dirty(repo: Path) -> None:
    """README: `pulumi stack init dev` and `pulumi up` in examples/app write its stack file and its
    VMs' folder; with the project's .gitignore the image project's version stays the same."""
    shutil.copyfile(Path(__file__).resolve().parents[2] / ".gitignore", repo / ".gitignore")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore")
    clean = versions.resolve(repo).name
    app = repo / "examples" / "app"
    (app / ".state" / "vms" / "app-x").mkdir(parents=True)
    (app / ".state" / "vms" / "app-x" / "disk.qcow2").write_text("vm\n")
    (app / "Pulumi.dev.yaml").write_text("config:\n  app:imageVersion: release-0.1.0\n")
    assert versions.resolve(repo).name == clean and not clean.endswith("-dirty")


def test_stack_files_do_not_make_the_tree_dirty(repo: Path) -> None:
    (repo / "stacks" / "Pulumi.local.yaml").write_text("config: {}\nencryptionsalt: v1:abc\n")
    assert not versions.resolve(repo).name.endswith("-dirty")


def test_a_clean_tree_at_a_release_tag_is_that_release(repo: Path) -> None:
    git(repo, "tag", "release-0.1.0")
    git(repo, "tag", "release-0.2.0")
    version = versions.resolve(repo)
    assert version.name == "release-0.2.0"
    assert version.is_release
    assert version.semver == "0.2.0"


def test_a_release_is_built_from_its_tag_not_from_head(repo: Path) -> None:
    git(repo, "tag", "release-0.1.0")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "packer" / "a.pkr.hcl").write_text("# two\n")
    git(repo, "commit", "-qam", "two")
    version = versions.resolve(repo, "release-0.1.0")
    assert version.commit == first
    assert version.commit_time > 0


def test_a_missing_release_tag_is_refused_by_name(repo: Path) -> None:
    with pytest.raises(FactoryError, match=r"release tag 'release-9\.9\.9' does not exist"):
        versions.resolve(repo, "release-9.9.9")


def test_a_dev_version_that_does_not_describe_the_tree_is_refused(repo: Path) -> None:
    with pytest.raises(FactoryError, match="does not describe this working tree"):
        versions.resolve(repo, "dev-deadbeef0000")


def test_plan_lists_each_release_then_the_working_tree_once(repo: Path) -> None:
    git(repo, "tag", "release-0.1.0")
    planned = versions.plan(repo, ("release-0.1.0",), True)
    assert [v.name for v in planned] == ["release-0.1.0"]
    (repo / "packer" / "b.pkr.hcl").write_text("# b\n")
    planned = versions.plan(repo, ("release-0.1.0",), True)
    assert planned[0].name == "release-0.1.0"
    assert planned[1].name.endswith("-dirty")


def test_plan_refuses_an_empty_stack(repo: Path) -> None:
    with pytest.raises(FactoryError, match="nothing to build"):
        versions.plan(repo, (), False)


def test_a_step_accepts_a_release_under_any_valid_prefix_and_a_pre_release() -> None:
    from imagefactory.versions import validate_version_name

    for name in ("release-1.0.0-rc.1", "v2.3.4", "images-1.0.0", "dev-0123abc-dirty"):
        assert validate_version_name(name) == name
    for name in ("release/1.0.0", "release-1.0", "latest"):
        with pytest.raises(FactoryError, match="is not accepted"):
            validate_version_name(name)
    with pytest.raises(FactoryError, match=r"release tag v1\.0\.0|vX\.Y\.Z"):
        validate_version_name("release-1.0.0", "v")
