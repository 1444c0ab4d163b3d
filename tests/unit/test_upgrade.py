"""In-place upgrades move a machine forward between releases only, and keep its history."""

import os
import subprocess
from pathlib import Path

import pytest

from imagefactory import upgrade
from imagefactory.errors import FactoryError
from imagefactory.stages import DEFAULT_STAGES, playbook_roles, release_key
from imagefactory.upgrade import plan

ANSIBLE = Path(__file__).resolve().parents[2] / "ansible"


def test_an_upgrade_may_skip_versions_and_records_each_one_applied() -> None:
    first = plan("release-0.1.0", "release-0.2.0", {"IMAGE_VERSION": "release-0.1.0"})
    assert first.needed and first.history == ("release-0.1.0", "release-0.2.0")
    stamp = {"IMAGE_VERSION": "release-0.2.0", "IMAGE_HISTORY": " ".join(first.history)}
    skip = plan("release-0.2.0", "release-1.4.0", stamp)
    assert skip.history == ("release-0.1.0", "release-0.2.0", "release-1.4.0")


def test_the_same_version_again_is_no_step_and_keeps_the_history() -> None:
    stamp = {"IMAGE_HISTORY": "release-0.1.0 release-0.2.0"}
    again = plan("release-0.2.0", "release-0.2.0", stamp)
    assert not again.needed and again.history == ("release-0.1.0", "release-0.2.0")


@pytest.mark.parametrize(
    ("current", "target", "message"),
    [
        ("release-0.2.0", "release-0.1.0", r"release-0\.1\.0 is older than release-0\.2\.0.*replace the machine"),
        ("release-1.0.0", "release-1.0.0-rc.1", r"older than release-1\.0\.0"),
        ("release-1.0.0-rc.10", "release-1.0.0-rc.2", r"older"),
        ("dev-0123abc", "release-0.1.0", r"dev-0123abc is a development version, which has no order"),
        ("release-0.1.0", "dev-0123abc-dirty", r"dev-0123abc-dirty is a development version"),
    ],
)
def test_a_downgrade_or_a_development_version_is_refused_naming_the_way_out(
    current: str, target: str, message: str
) -> None:
    with pytest.raises(FactoryError, match=message):
        plan(current, target, {})


def test_release_order_is_semver_precedence() -> None:
    ordered = [
        "release-1.0.0-alpha",
        "release-1.0.0-alpha.1",
        "release-1.0.0-alpha.beta",
        "release-1.0.0-beta.2",
        "release-1.0.0-beta.11",
        "release-1.0.0-rc.1",
        "release-1.0.0",
        "release-1.0.1",
        "release-1.10.0",
    ]
    assert sorted(ordered, key=release_key) == ordered
    assert release_key("dev-0123abc") is None


def test_the_upgrade_playbook_applies_every_stage_role_in_order_and_never_the_seal() -> None:
    staged = [
        role
        for stage in DEFAULT_STAGES
        for role in playbook_roles((ANSIBLE / stage.playbook).read_text(), stage.playbook)
        if role not in ("seal", "package_source")  # a running machine keeps its own apt sources
    ]
    applied = playbook_roles((ANSIBLE / upgrade.PLAYBOOK).read_text(), upgrade.PLAYBOOK)
    # The release stamp is written once, last: each stage playbook lists it, the upgrade once.
    assert applied == [*dict.fromkeys(r for r in staged if r != "release"), "release"]
    assert "seal" not in applied and "package_source" not in applied


STAMP = {
    "IMAGE_VERSION": "release-0.2.0",
    "IMAGE_COMMIT": "a" * 40,
    "IMAGE_STAGE": "functional",
    "UPSTREAM_DIGEST": "sha256:" + "b" * 64,
    "UPSTREAM_SOURCE": "base release-0.2.0",
    "BUILD_TIME": "2026-11-20T10:00:00Z",
}


def test_the_release_role_gets_the_target_images_own_stamp_and_the_history() -> None:
    values = upgrade.ansible_vars(STAMP, ("release-0.1.0", "release-0.2.0"))
    assert values == {
        "image_version": "release-0.2.0",
        "image_commit": "a" * 40,
        "image_stage": "functional",
        "upstream_digest": "sha256:" + "b" * 64,
        "upstream_source": "base release-0.2.0",
        "build_time": "2026-11-20T10:00:00Z",
        "source_date_epoch": "1795168800",
        "image_history": "release-0.1.0 release-0.2.0",
    }
    with pytest.raises(FactoryError, match="has no IMAGE_COMMIT"):
        upgrade.ansible_vars({"IMAGE_VERSION": "release-0.2.0", "BUILD_TIME": "2026-11-20T10:00:00Z"}, ())


RUN = """
PLAY [Upgrade a running machine in place] **************************************

TASK [Gathering Facts] *********************************************************
ok: [127.0.0.1]

TASK [baseline : Install the baseline packages] ********************************
fatal: [127.0.0.1]: FAILED! => changed=false
  msg: Failed to update apt cache

PLAY RECAP *********************************************************************
127.0.0.1                  : ok=14   changed=2    unreachable=0    failed=1    skipped=3    rescued=0    ignored=0
"""


def test_a_failed_run_names_its_task_and_the_recap_counts_changes() -> None:
    assert upgrade.failed_task(RUN) == "baseline : Install the baseline packages"
    assert upgrade.recap(RUN) == {"ok": 14, "changed": 2, "unreachable": 0, "failed": 1}
    clean = RUN.replace("fatal: [127.0.0.1]: FAILED!", "ok: [127.0.0.1]").replace("failed=1", "failed=0")
    assert upgrade.failed_task(clean) is None
    assert upgrade.recap(clean.replace("changed=2", "changed=0"))["changed"] == 0
    assert upgrade.recap("no recap") == {}


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_an_in_place_upgrade_applies_the_roles_of_the_tag_and_never_the_working_tree(tmp_path: Path) -> None:
    """B's roles come from B's tag (git archive), whatever the checkout holds now; a tag that moved
    away from the image's commit, or a tree without the upgrade playbook, is refused."""
    from imagefactory.launch_local import _tag_tree

    repo = tmp_path / "repo"
    (repo / "ansible").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "ansible" / upgrade.PLAYBOOK).write_text("# the tag's playbook\n")
    (repo / "ansible" / "site.yml").write_text("# a stage's playbook\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "0.2.0")
    _git(repo, "tag", "release-0.2.0")
    commit = _git(repo, "rev-parse", "HEAD")
    # The working tree moves on (and is left dirty): the upgrade must not see it.
    (repo / "ansible" / upgrade.PLAYBOOK).write_text("# a later commit\n")
    _git(repo, "commit", "-q", "-am", "later")
    (repo / "ansible" / upgrade.PLAYBOOK).write_text("# uncommitted\n")
    for folder in "abc":
        (tmp_path / folder).mkdir()
    tree = _tag_tree(repo, "release-0.2.0", commit, tmp_path / "a")
    assert (tree / upgrade.PLAYBOOK).read_text() == "# the tag's playbook\n"

    with pytest.raises(FactoryError, match=r"tag release-0\.2\.0 points at .*, but the image was built from"):
        _tag_tree(repo, "release-0.2.0", _git(repo, "rev-parse", "HEAD"), tmp_path / "b")

    (repo / "ansible" / upgrade.PLAYBOOK).unlink()
    _git(repo, "commit", "-q", "-am", "no upgrade playbook")
    _git(repo, "tag", "release-0.0.9")
    old = _git(repo, "rev-parse", "HEAD")
    with pytest.raises(FactoryError, match=r"release-0\.0\.9 predates in-place upgrades"):
        _tag_tree(repo, "release-0.0.9", old, tmp_path / "c")


def test_the_roles_come_from_the_image_project_that_published_the_image(tmp_path: Path) -> None:
    """Not from wherever this code runs: the image's registry is in the image project's state
    folder (ignored by git), and that checkout holds the release tags."""
    from imagefactory.launch_local import PROJECT, image_project

    repo = tmp_path / "image-project"
    published = repo / ".state" / "registry" / "release-0.2.0" / "debian-12-release-0.2.0.qcow2"
    published.parent.mkdir(parents=True)
    published.write_bytes(b"qcow2")
    _git(repo, "init", "-q")
    (repo / ".gitignore").write_text(".state/\n")
    assert image_project(published) == repo.resolve()
    elsewhere = tmp_path / "elsewhere" / "x.qcow2"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"qcow2")
    assert image_project(elsewhere) == PROJECT
