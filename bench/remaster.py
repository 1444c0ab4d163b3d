"""The re-master's cost before and after it kept every owner, mode bit and xattr; one run, one RAW.

    python -m bench.remaster --raw <a sealed RAW, e.g. from a build folder or the registry>

Writes bench/results/remaster.json. The two ways of copying the sealed root filesystem out are
timed on the same disk, in the same run:
- before: `debugfs rdump` alone, then the hard links restored (what the re-master did before; it
  dropped setuid bits, extended attributes and special files);
- after: `fstree.extract` (rdump, then every owner, mode, xattr, special file and hard link set
  again from debugfs's reading of the inodes).
Then the whole new re-master (copy, `mke2fs -d`, time clamp, and the gate that reads the new
filesystem back and compares) is timed, and the former re-master's time is derived from it by
taking out what changed: (new total) - (extract - rdump) - (gate).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.stages import RESULTS, machine
from bench.stages import report as write_report
from imagefactory import fstree, gpt, remaster
from imagefactory.debugfs import Filesystem


def seconds(func, *args):
    start = time.monotonic()
    value = func(*args)
    return round(time.monotonic() - start, 2), value


def rdump_with_links(fs: Filesystem, tree: Path) -> None:
    """The former copy: rdump, then each extra name of a hard-linked file linked again."""
    tree.mkdir(parents=True)
    fs.run_script([f'rdump / "{tree}"'])
    by_inode: dict[int, list[str]] = {}
    for path, entry in fs.walk("/"):
        if entry.is_file:
            by_inode.setdefault(entry.inode, []).append(path)
    for paths in by_inode.values():
        first, *others = sorted(paths)
        for other in others:
            (tree / other.lstrip("/")).unlink()
            (tree / other.lstrip("/")).hardlink_to(tree / first.lstrip("/"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--report", type=Path, default=RESULTS / "remaster.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-remaster-", dir=args.raw.parent) as tmp:
        work = Path(tmp)
        disk = work / "disk.raw"
        subprocess.run(["cp", "--sparse=always", str(args.raw), str(disk)], check=True)
        fs = Filesystem(disk, gpt.root_partition(disk).offset)
        rdump_s, _ = seconds(rdump_with_links, fs, work / "before")
        shutil.rmtree(work / "before")
        extract_s, nodes = seconds(fstree.extract, fs, work / "after")
        shutil.rmtree(work / "after")
        gate_s, _ = seconds(lambda: fstree.differences(nodes, fstree.manifest(fs, work)))
        total_s, report = seconds(remaster.remaster, disk, "bench-remaster", 1_700_000_000, work / "remaster")
    former = round(total_s - (extract_s - rdump_s) - gate_s, 2)
    result = {
        "what": "seconds of the root filesystem re-master, before and after it kept all metadata; one run",
        "machine": machine(),
        "raw": args.raw.name,
        "paths": report["compared"],
        "copy_seconds": {"before_rdump_and_links": rdump_s, "after_fstree_extract": extract_s},
        "gate_seconds": gate_s,
        "remaster_seconds": {"after": total_s, "before_derived": former},
    }
    return write_report(args.report, result)


if __name__ == "__main__":
    sys.exit(main())
