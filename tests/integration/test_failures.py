"""Every failure ends with a clear message, and with no version in the registry or the outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagefactory import host
from imagefactory.upstream import stage0_recipe_digest
from tests.integration.conftest import Project, new_project


def assert_nothing_published(project: Project) -> None:
    assert project.registry_index()["versions"] == {}
    assert "images" not in project.outputs()


def stage0_image() -> Path:

    cache = host.cache_dir()
    image = cache / "upstream" / f"stage0-{stage0_recipe_digest()}" / "debian-12-stage0-amd64.qcow2"
    if not image.exists():
        pytest.skip("the stage-0 image is built by the release test; run the whole suite")
    return image


def test_a_checksum_mismatch_stops_the_release_naming_file_and_digests(tmp_path: Path, released: Project) -> None:
    project = new_project(tmp_path / "project")
    project.config("upstreamUrl", str(stage0_image()))
    project.config("upstreamChecksum", "sha256:" + "0" * 64)
    result = project.pulumi("up", "--yes", "--skip-preview", check=False)
    assert result.returncode != 0
    assert (
        f"checksum mismatch for debian-12-stage0-amd64.qcow2: expected sha256:{'0' * 64}, actual sha256:"
        in result.stdout
    )
    assert_nothing_published(project)


def test_an_unreachable_upstream_without_fallback_stops_the_release(tmp_path: Path) -> None:
    project = new_project(tmp_path / "project")
    project.config("upstreamFallback", "none")
    result = project.pulumi("up", "--yes", "--skip-preview", check=False)
    assert result.returncode != 0
    assert "the upstream image cannot be fetched" in result.stdout
    assert "imagefactory:upstreamFallback is 'none'" in result.stdout
    assert_nothing_published(project)


def test_a_packer_failure_stops_the_release_and_keeps_no_image(tmp_path: Path, released: Project) -> None:
    def break_the_playbook(path: Path) -> None:
        site = path / "ansible" / "base.yml"  # the first stage: nothing below it is built
        site.write_text(
            site.read_text().replace(
                "  roles:\n",
                "  pre_tasks:\n    - name: Fail on purpose\n      ansible.builtin.fail:\n"
                "        msg: integration test of a failed build\n  roles:\n",
            )
        )

    project = new_project(tmp_path / "project", break_the_playbook)
    result = project.pulumi("up", "--yes", "--skip-preview", check=False)
    assert result.returncode != 0
    assert "integration test of a failed build" in result.stdout
    assert "failed (exit code" in result.stdout and "no image was kept" in result.stdout
    assert_nothing_published(project)
    builds = list((project.path / ".state" / "work").glob("**/build-*"))  # every stage
    assert builds == [], "a failed build leaves no disk behind"


def test_a_failed_seal_check_blocks_the_release(tmp_path: Path, released: Project) -> None:
    def leave_host_keys(path: Path) -> None:
        defaults = path / "ansible" / "roles" / "seal" / "defaults" / "main.yml"
        defaults.write_text(
            defaults.read_text().replace("seal_ssh_hostkeys_enabled: true", "seal_ssh_hostkeys_enabled: false")
        )
        # Faster: this build only needs to boot, provision and seal.
        baseline = path / "ansible" / "roles" / "baseline" / "defaults" / "main.yml"
        baseline.write_text(
            baseline.read_text()
            .replace("baseline_packages_enabled: true", "baseline_packages_enabled: false")
            .replace("baseline_timesync_enabled: true", "baseline_timesync_enabled: false")
        )

    project = new_project(tmp_path / "project", leave_host_keys)
    # One stage is enough to prove the gate: every stage runs the same seal check.
    project.pulumi("config", "set", "--path", "imagefactory:stages[0].name", "image")
    project.pulumi("config", "set", "--path", "imagefactory:stages[0].playbook", "site.yml")
    result = project.pulumi("up", "--yes", "--skip-preview", check=False)
    assert result.returncode != 0
    assert "seal check FAILED: ssh-hostkeys: /etc/ssh/ssh_host_" in result.stdout
    assert "the release is blocked" in result.stdout
    assert_nothing_published(project)
