"""Stack locks of Pulumi's file backend: clear a dead run's lock, never a live one's.

    python -m imagefactory.locks --backend <dir> --project imagefactory --stack local

A `pulumi up` writes `.pulumi/locks/<org>/<project>/<stack>/<id>.json` naming its host and pid,
and removes it when it ends. A run killed with SIGKILL leaves it behind, and every later run
stops with "the stack is currently locked ... pulumi cancel". Before a release, this step
removes a lock whose process is gone on this host (and says so), and refuses, naming the
process, while another run is alive. A lock of another host is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from imagefactory.errors import FactoryError, run_step


@dataclass(frozen=True)
class Lock:
    path: Path
    pid: int
    hostname: str
    username: str
    timestamp: str


def stack_locks(backend: Path, project: str, stack: str) -> list[Lock]:
    found = []
    for path in sorted((backend / ".pulumi" / "locks").glob(f"*/{project}/{stack}/*.json")):
        try:
            content = json.loads(path.read_text())
            found.append(
                Lock(path, int(content["pid"]), content["hostname"], content.get("username", "?"), content["timestamp"])
            )
        except (ValueError, KeyError, TypeError, OSError):
            raise FactoryError(f"{path} is not a Pulumi lock file; inspect it and remove it by hand") from None
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def clear_stale(backend: Path, project: str, stack: str) -> list[str]:
    """Remove the locks of dead runs on this host; refuse while a run is alive. Returns messages."""
    here = socket.gethostname()
    messages = []
    for lock in stack_locks(backend, project, stack):
        if lock.hostname != here:
            raise FactoryError(
                f"stack {stack} is locked by {lock.username}@{lock.hostname} (pid {lock.pid}) since "
                f"{lock.timestamp}; it runs on another host: wait for it, or run `pulumi cancel` there"
            )
        if alive(lock.pid):
            raise FactoryError(
                f"stack {stack} is in use by a running release (pid {lock.pid}, since {lock.timestamp}); "
                "wait for it to finish or stop it first"
            )
        lock.path.unlink(missing_ok=True)
        messages.append(
            f"cleared the lock of stack {stack} left by pid {lock.pid} ({lock.timestamp}): that process is gone"
        )
    return messages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Clear a dead run's stack lock; refuse while a run is alive.")
    parser.add_argument("--backend", type=Path, required=True, help="the file backend's folder")
    parser.add_argument("--project", default="imagefactory")
    parser.add_argument("--stack", required=True)
    args = parser.parse_args(argv)

    def clear() -> None:
        for message in clear_stale(args.backend, args.project, args.stack):
            print(f"locks: {message}", file=sys.stderr)

    return run_step("locks", clear)


if __name__ == "__main__":
    sys.exit(main())
