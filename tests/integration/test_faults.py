"""Faults a release must survive: killed during Packer and during the conversions (SIGINT, then
SIGKILL to the whole process tree), and a second run beside a live one.

After each kill: no published part of the version, no stray QEMU, no build key in /dev/shm; the
next plain `make release` completes without a manual step. The kills happen to a real release
build in test_releases.py (publishing release-0.2.0 beside 0.1.0), which shares these helpers
so that no extra image is built for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imagefactory.build import KEY_PREFIX, _key_base
from tests.integration.conftest import Project, new_project


def descendants(pid: int) -> list[int]:
    table = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    children: dict[int, list[int]] = {}
    for line in table.splitlines():
        child, parent = (int(field) for field in line.split())
        children.setdefault(parent, []).append(child)
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def processes_of(project: Project) -> list[str]:
    result = subprocess.run(["pgrep", "-af", str(project.path)], capture_output=True, text=True, check=False)
    return [line for line in result.stdout.splitlines() if "pgrep" not in line]


def live_keys() -> list[Path]:
    """Build keys in /dev/shm, excluding those of builds still running."""
    keys = []
    for folder in _key_base().glob(f"{KEY_PREFIX}*"):
        pid = int(folder.name.removeprefix(KEY_PREFIX).split("-", 1)[0])
        if not Path(f"/proc/{pid}").exists():
            keys.append(folder)
    return keys


def release_and_kill(project: Project, moment: Callable[[], bool], deadline: int = 900) -> str:
    """Start a release, wait for `moment`, then SIGINT it and SIGKILL its whole process tree."""
    log = project.path / "killed-release.log"
    with open(log, "w") as out:
        run = subprocess.Popen(
            ["make", "release"], cwd=project.path, env=project.env, stdout=out, stderr=subprocess.STDOUT
        )
        start = time.monotonic()
        while not moment():
            assert run.poll() is None, f"the release ended before the kill point:\n{log.read_text()[-3000:]}"
            assert time.monotonic() - start < deadline, "the kill point never came"
            time.sleep(1)
        tree = [run.pid, *descendants(run.pid)]
        pulumi = [
            p
            for p in tree
            if Path(f"/proc/{p}/comm").exists() and Path(f"/proc/{p}/comm").read_text().strip() == "pulumi"
        ]
        for pid in pulumi or [run.pid]:
            os.kill(pid, signal.SIGINT)
        time.sleep(5)
        for pid in [run.pid, *descendants(run.pid), *tree]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run.wait()
    return log.read_text()


def assert_clean_after_kill(project: Project, version: str) -> None:
    time.sleep(2)
    assert processes_of(project) == [], "no process of the killed release survives (no stray QEMU)"
    assert live_keys() == [], "no build key is left in /dev/shm"
    assert version not in project.registry_index()["versions"], "nothing of the version was published"
    assert not (project.path / ".state" / "registry" / version).exists()


def make_release(project: Project) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["make", "release"], cwd=project.path, env=project.env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"make release failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return new_project(tmp_path_factory.mktemp("faults") / "project")


def test_a_second_release_beside_a_live_one_is_refused_naming_it(project: Project) -> None:
    with subprocess.Popen(["sleep", "60"]) as live:
        folder = Path(project.env["PULUMI_BACKEND_URL"].removeprefix("file://")) / ".pulumi" / "locks"
        lock = folder / "organization" / "imagefactory" / project.stack / "held-by-a-live-run.json"
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text(
            json.dumps({"pid": live.pid, "username": "u", "hostname": os.uname().nodename, "timestamp": "now"})
        )
        try:
            result = subprocess.run(
                ["make", "release"], cwd=project.path, env=project.env, capture_output=True, text=True, check=False
            )
        finally:
            live.kill()
            lock.unlink()
    assert result.returncode != 0
    assert f"in use by a running release (pid {live.pid}" in result.stdout + result.stderr
