"""Re-master the sealed root filesystem offline, so the shipped RAW is a function of its files.

A booted build VM leaves the history of its run in the filesystem: inode order, times,
allocation, the journal. This step reads the sealed root filesystem's files (debugfs rdump, no
mount; see fstree for how every owner, mode bit and extended attribute is kept) and writes a
fresh ext4 with `mke2fs -d` where everything that is not a file's content
or metadata is fixed: every time is clamped to SOURCE_DATE_EPOCH (the commit time), and the
hash seed is derived from the version with uuid5. The filesystem UUID and label, the partition
table and the EFI partition are kept, so the image boots exactly as before. A gate then reads
the new filesystem back and fails the build on any difference from the sealed one but times.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

from imagefactory import fstree
from imagefactory.debugfs import Filesystem
from imagefactory.errors import FactoryError, first_lines
from imagefactory.files import run
from imagefactory.gpt import Partition, root_partition

NAMESPACE = uuid.UUID("8a3d0c57-9f2e-4c1b-a7e4-5b6c7d8e9f01")  # this project's uuid5 namespace


def derived_uuid(version: str, purpose: str) -> uuid.UUID:
    """A stable UUID for one purpose of one version (hash seed, VHD id, ...)."""
    return uuid.uuid5(NAMESPACE, f"{version}/{purpose}")


def superblock(device: str) -> dict[str, str]:
    """dumpe2fs -h as a dict of its fields."""
    fields = {}
    for line in run(["dumpe2fs", "-h", device]).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _clamp_times(tree: Path, epoch: int) -> list[str]:
    """Clamp every mtime to `epoch`, deepest entries first so directories keep theirs."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(tree, topdown=False):
        for name in filenames + dirnames:
            path = Path(dirpath) / name
            if path.lstat().st_mtime > epoch:
                os.utime(path, (epoch, epoch), follow_symlinks=False)
            paths.append("/" + path.relative_to(tree).as_posix())
    if tree.lstat().st_mtime > epoch:
        os.utime(tree, (epoch, epoch))
    return paths


def remaster(raw: Path, version: str, epoch: int, work: Path) -> dict[str, object]:
    """Rewrite the root partition of `raw` in place (via a temporary copy and a rename)."""
    root: Partition = root_partition(raw)
    device = f"{raw}?offset={root.offset}"
    original = superblock(device)
    if original.get("Filesystem magic number") != "0xEF53":
        raise FactoryError(f"the root partition of {raw.name} is not ext2/3/4")
    shutil.rmtree(work, ignore_errors=True)
    tree = work / "tree"
    work.mkdir(parents=True)
    try:
        before = fstree.extract(Filesystem(raw, root.offset), tree)
        links = sum(1 for node in before.values() if node.kind == "file" and node.links > 1)
        paths = _clamp_times(tree, epoch)
        env = {**os.environ, "LC_ALL": "C", "E2FSPROGS_FAKE_TIME": str(epoch), "SOURCE_DATE_EPOCH": str(epoch)}
        image = work / "root.img"
        label = original.get("Filesystem volume name", "")
        run(
            [
                "mke2fs",
                "-q",
                "-F",
                "-t",
                "ext4",
                "-U",
                original["Filesystem UUID"],
                "-L",
                "" if label == "<none>" else label,
                "-E",
                f"hash_seed={derived_uuid(version, 'ext4-hash-seed')},root_owner=0:0",
                "-d",
                str(tree),
                str(image),
                f"{root.size // 1024}k",
            ],
            env,
        )
        shutil.rmtree(tree)
        fixed = Filesystem(image, writable=True)
        commands = []
        for path in ["/", *paths]:
            if '"' in path or "\n" in path:
                raise FactoryError(f"cannot re-master a file name with a quote or newline: {path!r}")
            # "@": seconds since 1970 (a bare number is read otherwise: a ctime in the year 2340).
            commands += [f'sif "{path}" atime @{epoch}', f'sif "{path}" ctime @{epoch}']
        fixed.run_script(commands, env)  # E2FSPROGS_FAKE_TIME also fixes the last write time
        check = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise FactoryError(f"the re-mastered filesystem is not clean: {check.stdout[-800:]}")
        # The gate: the new filesystem holds exactly what the sealed one held, but for times.
        after = fstree.manifest(Filesystem(image), work)
        changed = fstree.differences(before, after)
        if changed:
            raise FactoryError("the re-mastered filesystem differs from the sealed one:\n  " + "\n  ".join(changed))
        # And its times are the build's: none later than the commit, none left from the clock.
        wrong = fstree.times_not_at(fstree.times(Filesystem(image), after), epoch)
        if wrong:
            shown = first_lines(wrong, 10)
            raise FactoryError(f"the re-mastered filesystem's times are not the commit time ({epoch}):\n  {shown}")
        out = raw.with_name(f".{raw.name}.remastered")
        run(["cp", "--sparse=always", str(raw), str(out)])
        run(["fallocate", "--punch-hole", "--offset", str(root.offset), "--length", str(root.size), str(out)])
        run(
            [
                "dd",
                f"if={image}",
                f"of={out}",
                "bs=1M",
                f"seek={root.offset}",
                "oflag=seek_bytes",
                "conv=notrunc,sparse",
                "status=none",
            ]
        )
        out.replace(raw)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "files": len(paths),
        "compared": len(before),
        "identical_but_times": True,
        "hard_links": links,
        "epoch": epoch,
        "hash_seed": str(derived_uuid(version, "ext4-hash-seed")),
    }
