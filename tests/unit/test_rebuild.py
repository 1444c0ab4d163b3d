"""make rebuild: what it accepts, what it refuses before anything builds, and its verdict."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from imagefactory import rebuild
from imagefactory.errors import FactoryError


def publish(registry: Path, version: str, manifest: dict) -> Path:
    folder = registry / version
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"version": version, **manifest}))
    return folder


def test_an_unpublished_version_is_refused_naming_the_registry(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert rebuild.main(["--version", "release-9.9.9", "--registry", str(tmp_path)]) == 1
    assert f"release-9.9.9 is not published in {tmp_path}" in capsys.readouterr().err


def test_no_version_is_refused_saying_what_to_give(capsys: pytest.CaptureFixture) -> None:
    assert rebuild.main([]) == 1
    assert "VERSION is required: make rebuild VERSION=release-0.1.0" in capsys.readouterr().err


def test_a_bad_upstream_mode_is_refused(capsys: pytest.CaptureFixture) -> None:
    assert rebuild.main(["--version", "release-0.1.0", "--upstream", "fresh"]) == 1
    assert "UPSTREAM is 'fresh'; accepted: reuse, rebuild" in capsys.readouterr().err


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    git(project, "config", "user.email", "t@example.invalid")
    git(project, "config", "user.name", "t")
    (project / "file").write_text("one\n")
    git(project, "add", "file")
    git(project, "commit", "-qm", "one")
    git(project, "tag", "release-0.1.0")
    return project


def test_a_version_that_is_not_a_tag_is_refused(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    publish(repo / ".state" / "registry", "dev-0123456789ab", {"commit": git(repo, "rev-parse", "HEAD")})
    monkeypatch.chdir(repo)
    assert rebuild.main(["--version", "dev-0123456789ab"]) == 1
    assert "dev-0123456789ab is not a tag of" in capsys.readouterr().err


def test_a_tag_moved_since_the_release_is_refused(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    publish(repo / ".state" / "registry", "release-0.1.0", {"commit": "f" * 40})
    monkeypatch.chdir(repo)
    assert rebuild.main(["--version", "release-0.1.0"]) == 1
    assert "the tag release-0.1.0 points at" in capsys.readouterr().err


def test_a_release_made_before_rebuilds_existed_is_refused(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    publish(repo / ".state" / "registry", "release-0.1.0", {"commit": git(repo, "rev-parse", "HEAD")})
    monkeypatch.chdir(repo)
    assert rebuild.main(["--version", "release-0.1.0"]) == 1
    assert "released before rebuilds existed" in capsys.readouterr().err
    assert not list((repo / ".state").glob("rebuild-*")), "the exported tree is removed"


def test_a_stage0_upstream_without_a_recorded_package_set_cannot_be_rebuilt(tmp_path: Path) -> None:
    manifest = {"version": "release-0.1.0", "upstream": {"source": "stage0:0123456789abcdef", "sha256": "a" * 64}}
    with pytest.raises(FactoryError, match="recorded no package set for its stage-0 image"):
        rebuild.input_image(manifest, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path, "reuse")


def test_a_downloaded_upstream_cannot_be_rebuilt_and_the_error_says_why(tmp_path: Path) -> None:
    source = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
    manifest = {"version": "release-0.1.0", "upstream": {"source": source, "sha256": "c" * 64}}
    with pytest.raises(FactoryError, match=r"downloaded upstream \(https://.*package set is not recorded"):
        rebuild.input_image(manifest, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path, "reuse")


def test_a_parent_that_changed_in_the_registry_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "stages" / "base" / "release-0.1.0"
    parent.mkdir(parents=True)
    (parent / "base.qcow2").write_bytes(b"changed")
    (parent / "manifest.json").write_text(json.dumps({"formats": {"qcow2": {"file": "base.qcow2"}}}))
    manifest = {"version": "release-0.1.0", "upstream": {"source": "base release-0.1.0", "sha256": "b" * 64}}
    with pytest.raises(FactoryError, match="does not have the recorded digest"):
        rebuild.input_image(manifest, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path, "reuse")


def test_the_verdict_needs_every_artifact_identical() -> None:
    manifest = {"sealed_raw_sha256": "r", "formats": {"qcow2": {"sha256": "q"}, "raw": {"sha256": "w"}}}
    same = rebuild.compare(manifest, {"qcow2": {"sha256": "q"}, "raw": {"sha256": "w"}}, "r")
    assert all(row["identical"] for row in same)
    one_off = rebuild.compare(manifest, {"qcow2": {"sha256": "q"}, "raw": {"sha256": "X"}}, "r")
    assert [row["artifact"] for row in one_off if not row["identical"]] == ["raw"]
    missing = rebuild.compare(manifest, {"qcow2": {"sha256": "q"}}, "r")
    assert [row["artifact"] for row in missing if not row["identical"]] == ["raw"]


def test_the_stage_playbook_comes_from_the_tags_stack(tmp_path: Path) -> None:
    assert rebuild.playbook_of(tmp_path, "local", "base") == "base.yml"
    assert rebuild.playbook_of(tmp_path, "local", "functional") == "site.yml"
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.local.yaml").write_text(
        "config:\n  imagefactory:stages:\n    - name: only\n      playbook: single-stage.yml\n"
    )
    assert rebuild.playbook_of(tmp_path, "local", "only") == "single-stage.yml"
    with pytest.raises(FactoryError, match="declares no stage 'base'"):
        rebuild.playbook_of(tmp_path, "local", "base")
