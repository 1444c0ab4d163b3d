"""In-place upgrades move a machine forward between releases only, and keep its history."""

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
        if role != "seal"
    ]
    applied = playbook_roles((ANSIBLE / upgrade.PLAYBOOK).read_text(), upgrade.PLAYBOOK)
    # The release stamp is written once, last: each stage playbook lists it, the upgrade once.
    assert applied == [*dict.fromkeys(r for r in staged if r != "release"), "release"]
    assert "seal" not in applied


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
