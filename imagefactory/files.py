"""The one way this project writes a file and runs a tool.

A file is written under a temporary name in the same folder, flushed to disk, then renamed over
the target, so a reader sees the old file or the new one and never half of one; an interrupted
write leaves only a `.<name>.<pid>-<thread>.partial` that nothing reads. A tool that fails raises a
FactoryError that names it and carries what it said.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from imagefactory.errors import FactoryError


@contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `lock` (made when missing) for the block: another process
    asking for it waits. The lock ends with the process, however it ends."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def partial_name(path: Path) -> Path:
    """Where `path` is written before it is complete (same folder, so the rename is atomic)."""
    # The thread too: two builds of one process (make reproducible, side by side) write the same files.
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.partial")


def fsync(path: Path) -> None:
    """Flush a file's (or a folder's) content to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, *, durable: bool = False) -> None:
    """Replace `path` with `text` in one rename; `durable` also syncs the file and its folder
    (records that must survive a power cut, such as the registry's index)."""
    tmp = partial_name(path)
    try:
        tmp.write_text(text)
        if durable:
            fsync(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync(path.parent)


def run(args: list[str], env: Mapping[str, str] | None = None, *, tail: int = 800) -> str:
    """Run a tool and return its stdout; on failure, a FactoryError with the end of its output."""
    try:
        result = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    except FileNotFoundError:
        raise FactoryError(f"{args[0]} is not installed; run `make setup`") from None
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip()[-tail:]
        raise FactoryError(f"{' '.join(args[:2])} failed (exit code {result.returncode}): {said}")
    return result.stdout
