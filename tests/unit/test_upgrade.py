"""In-place upgrades move a machine forward between releases only, and keep its history."""

import pytest

from imagefactory.errors import FactoryError
from imagefactory.stages import release_key
from imagefactory.upgrade import plan


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
