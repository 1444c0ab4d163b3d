"""Packer's last lines, shown in a failed build's error, belong to that build even when two
builds run side by side in one process (`make reproducible`)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from imagefactory import build


def test_each_thread_keeps_the_last_lines_of_its_own_packer(tmp_path: Path) -> None:
    seen: dict[str, list[str]] = {}

    def one(name: str) -> None:
        script = f"for i in 1 2 3; do echo {name} $i; sleep 0.1; done; exit 3"
        code = build.run_packer(["sh", "-c", script], tmp_path / f"{name}.log", tmp_path, dict(os.environ))
        assert code == 3
        seen[name] = list(build._packer_tail.lines)

    threads = [threading.Thread(target=one, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"a": ["a 1", "a 2", "a 3"], "b": ["b 1", "b 2", "b 3"]}
