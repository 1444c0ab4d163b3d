"""Stack locks: a dead run's lock is cleared with a line saying so; a live run's never is."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from imagefactory import locks
from imagefactory.errors import FactoryError


def write_lock(backend: Path, pid: int, hostname: str | None = None, stack: str = "local") -> Path:
    folder = backend / ".pulumi" / "locks" / "organization" / "imagefactory" / stack
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"lock-{pid}.json"
    content = {
        "pid": pid,
        "username": "u",
        "hostname": hostname or socket.gethostname(),
        "timestamp": "2026-01-01T00:00:00Z",
    }
    path.write_text(json.dumps(content))
    return path


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_lock_of_a_dead_run_is_cleared_and_said(tmp_path: Path) -> None:
    pid = dead_pid()
    lock = write_lock(tmp_path, pid)
    other_stack = write_lock(tmp_path, pid, stack="aws")
    messages = locks.clear_stale(tmp_path, "imagefactory", "local")
    assert not lock.exists()
    assert messages == [
        f"cleared the lock of stack local left by pid {pid} (2026-01-01T00:00:00Z): that process is gone"
    ]
    assert other_stack.exists(), "only the named stack's locks are touched"


def test_the_lock_of_a_live_run_is_never_touched(tmp_path: Path) -> None:
    with subprocess.Popen(["sleep", "30"]) as live:
        lock = write_lock(tmp_path, live.pid)
        try:
            with pytest.raises(FactoryError, match=rf"in use by a running release \(pid {live.pid}"):
                locks.clear_stale(tmp_path, "imagefactory", "local")
        finally:
            live.kill()
    assert lock.exists()


def test_a_lock_of_another_host_is_never_touched(tmp_path: Path) -> None:
    lock = write_lock(tmp_path, dead_pid(), hostname="build-host-elsewhere")
    with pytest.raises(FactoryError, match=r"runs on another host"):
        locks.clear_stale(tmp_path, "imagefactory", "local")
    assert lock.exists()
    assert locks.main(["--backend", str(tmp_path), "--stack", "local"]) == 1


def test_no_lock_is_no_message(tmp_path: Path) -> None:
    assert locks.clear_stale(tmp_path, "imagefactory", "local") == []
