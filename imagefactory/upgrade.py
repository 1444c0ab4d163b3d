"""In-place upgrades: the rules that decide whether a running machine may move from one version to
another without being replaced (no Pulumi, no SSH here).

A machine moves forward only, between releases: roles are declarative, so skipping versions is
fine, but a downgrade in place would leave whatever a newer role added behind, and a development
version has no order at all. Both are refused with the way out (replace the machine). The
versions a machine went through are kept in its stamp as IMAGE_HISTORY, oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagefactory.errors import FactoryError
from imagefactory.stages import release_key

HISTORY_KEY = "IMAGE_HISTORY"


@dataclass(frozen=True)
class Step:
    """What an in-place run does: nothing (already there) or apply `target` over `current`."""

    current: str
    target: str
    history: tuple[str, ...]
    """The versions the machine will have run, oldest first, ending with `target`."""

    @property
    def needed(self) -> bool:
        return self.current != self.target


def plan(current: str, target: str, stamp: dict[str, str]) -> Step:
    """Decide an in-place move from `current` (what the machine's /etc/release says) to `target`."""
    earlier = tuple(stamp.get(HISTORY_KEY, "").split()) or (current,)
    if earlier[-1] != current:
        earlier = (*earlier, current)
    if current == target:
        return Step(current, target, earlier)
    mine, theirs = release_key(current), release_key(target)
    if mine is None or theirs is None:
        name = current if mine is None else target
        raise FactoryError(
            f"{name} is a development version, which has no order: an in-place upgrade goes from a release "
            f"to a newer release; replace the machine instead (upgrade strategy replace)"
        )
    if theirs < mine:
        raise FactoryError(
            f"{target} is older than {current}, which the machine runs: a downgrade in place would keep what "
            f"the newer roles added; replace the machine instead (upgrade strategy replace), which rolls back cleanly"
        )
    return Step(current, target, (*earlier, target))
