"""In-place upgrades: the rules that decide whether a running machine may move from one version to
another without being replaced (no Pulumi, no SSH here).

A machine moves forward only, between releases: roles are declarative, so skipping versions is
fine, but a downgrade in place would leave whatever a newer role added behind, and a development
version has no order at all. Both are refused with the way out (replace the machine). The
versions a machine went through are kept in its stamp as IMAGE_HISTORY, oldest first.
"""

from __future__ import annotations

import datetime as dt
import re
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


# --- applying a version's roles to a running machine ----------------------------------------------

PLAYBOOK = "upgrade.yml"
"""The playbook of a version's tree that an in-place run applies: every stage's roles, in stage
order, without the seal (which would remove the machine's identity: host keys, machine-id)."""


def ansible_vars(stamp: dict[str, str], history: tuple[str, ...]) -> dict[str, str]:
    """The release role's inputs for an in-place run: the target image's own stamp (read from its
    published disk), so the machine ends up stamped as the image is, plus the history."""
    missing = [key for key in ("IMAGE_VERSION", "IMAGE_COMMIT", "BUILD_TIME") if not stamp.get(key)]
    if missing:
        raise FactoryError(
            f"the target image's /etc/release has no {', '.join(missing)}; it cannot be applied in place"
        )
    built = dt.datetime.strptime(stamp["BUILD_TIME"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return {
        "image_version": stamp["IMAGE_VERSION"],
        "image_commit": stamp["IMAGE_COMMIT"],
        "image_stage": stamp.get("IMAGE_STAGE", ""),
        "upstream_digest": stamp.get("UPSTREAM_DIGEST", ""),
        "upstream_source": stamp.get("UPSTREAM_SOURCE", ""),
        "build_time": stamp["BUILD_TIME"],
        "source_date_epoch": str(int(built.timestamp())),
        "image_history": " ".join(history),
    }


_TASK = re.compile(r"^TASK \[(?P<name>.*)\] \**$")
_FAILED = re.compile(r"^(fatal|failed): \[")
_RECAP = re.compile(
    r"\bok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)"
)


def failed_task(output: str) -> str | None:
    """The name of the first task that failed in an ansible-playbook run's output, if any."""
    task = None
    for line in output.splitlines():
        started = _TASK.match(line.strip())
        if started:
            task = started["name"]
        elif _FAILED.match(line.strip()):
            return task or "(before the first task)"
    return None


def recap(output: str) -> dict[str, int]:
    """The PLAY RECAP counts (ok, changed, unreachable, failed) of a run on one host; {} if none."""
    found = {}
    for line in output.splitlines():
        match = _RECAP.search(line)
        if match:
            found = {key: int(value) for key, value in match.groupdict().items()}
    return found
