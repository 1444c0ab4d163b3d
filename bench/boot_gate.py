"""Benchmark the release gate: each format of one published version booted under each firmware of
the matrix (imagefactory.bootcheck, mode all), one after the other, on this machine's accelerator.

    python -m bench.boot_gate <published version folder>

Results: bench/results/boot_gate.json (seconds per boot, from QEMU's start to the version read
over SSH and the guest stopped).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from bench.stages import RESULTS, machine, report
from imagefactory import accel, bootcheck, host


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "manifest.json").is_file():
        print("usage: python -m bench.boot_gate <published version folder (with manifest.json)>", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    manifest = json.loads((folder / "manifest.json").read_text())
    files = {fmt: folder / entry["file"] for fmt, entry in manifest["formats"].items()}
    accelerator = accel.choose("auto", files.get("qcow2") or files["raw"], host.cache_dir())
    with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp:
        started = time.monotonic()
        records = bootcheck.run(files, manifest["version"], "all", accelerator, Path(tmp) / "work")
        total = time.monotonic() - started
    result = {
        "what": "the release gate (bootCheck: all) on one published version; seconds per boot",
        "machine": machine(),
        "accelerator": accelerator,
        "version": manifest["version"],
        "boots": records,
        "total_seconds": round(total, 1),
    }
    return report(RESULTS / "boot_gate.json", result)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
