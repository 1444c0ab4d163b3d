"""The re-master keeps everything but times: modes with setuid/setgid/sticky bits, owners,
file capabilities, ACLs, other xattrs, hard links, symlinks, device nodes, FIFOs, sparse files
and empty directories. Its gate fails the build when anything else changed."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from imagefactory import fstree, remaster
from imagefactory.debugfs import Filesystem
from imagefactory.errors import FactoryError
from imagefactory.gpt import root_partition
from tests.unit.conftest import DISK_MIB, ROOT_TYPE

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="setting owners and capabilities needs root")

# An ACL giving user 1000 rwx on a directory (the Linux xattr format of system.posix_acl_access).
ACL = bytes.fromhex("0200000001000700ffffffff04000500ffffffff08000700e803000010000700ffffffff20000500ffffffff")
CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")


def rich_tree(tree: Path) -> None:
    """A root filesystem with every kind of metadata a Debian image uses, and a few it may."""
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "srv/empty").mkdir(parents=True)
    (tree / "dev").mkdir()
    (tree / "tmp").mkdir()
    os.chmod(tree / "tmp", 0o1777)
    sudo = tree / "usr/bin/sudo"
    sudo.write_bytes(b"#!/bin/sh\n")
    os.chmod(sudo, 0o4755)
    wall = tree / "usr/bin/wall"
    wall.write_bytes(b"wall\n")
    os.chown(wall, 0, 5)
    os.chmod(wall, 0o2755)
    ping = tree / "usr/bin/ping"
    ping.write_bytes(b"\x7fELF" + b"\x01" * 5000)
    os.setxattr(ping, "security.capability", CAP_NET_RAW)
    os.link(sudo, tree / "usr/bin/sudoedit")
    os.symlink("sudo", tree / "usr/bin/sudo-link")
    owned = tree / "srv/owned"
    owned.write_text("data\n")
    os.chown(owned, 1234, 5678)
    os.chmod(owned, 0o640)
    os.setxattr(owned, "user.origin", b"build\x00time")
    shared = tree / "srv/shared"
    shared.mkdir()
    os.setxattr(shared, "system.posix_acl_access", ACL)
    os.mknod(tree / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(tree / "srv/fifo")
    sparse = tree / "srv/sparse"
    with open(sparse, "wb") as handle:
        handle.truncate(8 * 1024 * 1024)
        handle.seek(4 * 1024 * 1024)
        handle.write(b"middle")


def make_disk(folder: Path) -> Path:
    tree = folder / "tree"
    rich_tree(tree)
    root = folder / "root.img"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(tree), str(root), f"{DISK_MIB - 10}M"], check=True)
    disk = folder / "disk.raw"
    subprocess.run(["truncate", "-s", f"{DISK_MIB}M", str(disk)], check=True)
    table = f"label: gpt\nunit: sectors\nstart=2048, size=14336\nstart=16384, size={(DISK_MIB - 10) * 2048}, type={ROOT_TYPE}\n"
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(disk)], input=table.encode(), check=True)
    subprocess.run(["dd", f"if={root}", f"of={disk}", "bs=1M", "seek=8", "conv=notrunc", "status=none"], check=True)
    return disk


def nodes_of(disk: Path) -> dict[str, fstree.Node]:
    return fstree.scan(Filesystem(disk, root_partition(disk).offset))


def test_the_remaster_keeps_every_owner_mode_bit_xattr_and_special_file(tmp_path: Path) -> None:
    disk = make_disk(tmp_path)
    before = nodes_of(disk)
    report = remaster.remaster(disk, "release-0.1.0", 1_700_000_000, tmp_path / "work")
    after = nodes_of(disk)
    assert report["identical_but_times"] is True
    assert stat.S_IMODE(after["/usr/bin/sudo"].mode) == 0o4755
    assert stat.S_IMODE(after["/usr/bin/wall"].mode) == 0o2755 and after["/usr/bin/wall"].gid == 5
    assert stat.S_IMODE(after["/tmp"].mode) == 0o1777
    assert after["/usr/bin/ping"].xattrs == {"security.capability": CAP_NET_RAW.hex()}
    assert "system.posix_acl_access" in after["/srv/shared"].xattrs
    assert after["/srv/owned"].xattrs == {"user.origin": b"build\x00time".hex()}
    assert (after["/srv/owned"].uid, after["/srv/owned"].gid, stat.S_IMODE(after["/srv/owned"].mode)) == (
        1234,
        5678,
        0o640,
    )
    assert after["/usr/bin/sudo"].inode == after["/usr/bin/sudoedit"].inode, "the hard link is kept"
    assert after["/dev/null"].kind == "char" and after["/dev/null"].rdev == (1, 3)
    assert after["/srv/fifo"].kind == "fifo"
    assert after["/srv/empty"].kind == "dir"
    assert after["/srv/sparse"].blocks <= before["/srv/sparse"].blocks < 64, "the sparse file stays sparse"
    assert fstree.differences(before, after) == []
    times = fstree.times(Filesystem(disk, root_partition(disk).offset), after)
    assert times["/usr/bin/sudo"]["ctime"] == times["/usr/bin/sudo"]["atime"] == "6553f100.00000000"
    assert fstree.times_not_at(times, 1_700_000_000) == []


def test_the_gate_fails_the_remaster_when_a_time_is_not_the_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare number to debugfs's `sif … ctime` is not read as seconds since 1970 (it gave 2340)."""
    disk = make_disk(tmp_path)
    original = disk.read_bytes()
    run_script = Filesystem.run_script

    def bare(self: Filesystem, commands: list[str], env: dict[str, str] | None = None) -> str:
        return run_script(self, [c.replace(" @", " ") if c.startswith("sif ") else c for c in commands], env)

    monkeypatch.setattr(Filesystem, "run_script", bare)
    # This commit time (2026-12-07 21:54:52), bare, is read as a date in the year 2340.
    with pytest.raises(FactoryError, match=r"times are not the commit time \(1796680492\):\n  /: atime"):
        remaster.remaster(disk, "release-0.1.0", 1_796_680_492, tmp_path / "work")
    assert disk.read_bytes() == original, "a failed re-master leaves the sealed disk as it was"


def test_a_time_past_2038_is_read_with_its_epoch_bits() -> None:
    assert fstree.time_seconds("6b172b2c.00000000") == 1_796_680_492
    assert fstree.time_seconds("b98978de.00000003") == 0xB98978DE - (1 << 32) + (3 << 32)
    assert fstree.time_seconds("ffffffff") == -1
    assert fstree.times_not_at({"/f": {"ctime": "b98978de.00000003", "mtime": "6b172b2c.00000000"}}, 1_796_680_492) == [
        f"/f: ctime b98978de.00000003 is {0xB98978DE + (2 << 32)}, not 1796680492"
    ]


def test_the_gate_fails_the_remaster_when_metadata_is_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = make_disk(tmp_path)
    original = disk.read_bytes()
    monkeypatch.setattr(fstree, "_set_mode", lambda local, node: None)  # what rdump alone did
    with pytest.raises(FactoryError, match=r"/usr/bin/sudo: mode '0104755' -> '0100755'"):
        remaster.remaster(disk, "release-0.1.0", 1_700_000_000, tmp_path / "work")
    assert disk.read_bytes() == original, "a failed re-master leaves the sealed disk as it was"


def test_differences_name_each_changed_field_and_a_filled_hole() -> None:
    before = {
        "/a": fstree.Node(12, 0o104755, 0, 0, 3, blocks=8),
        "/b": fstree.Node(13, 0o100644, 0, 0, 3, blocks=8, xattrs={"security.capability": "01"}),
        "/gone": fstree.Node(14, 0o040755, 0, 0, 0),
    }
    after = {
        "/a": fstree.Node(20, 0o104755, 0, 0, 3, blocks=16),
        "/b": fstree.Node(21, 0o100644, 0, 0, 3, blocks=8),
        "/new": fstree.Node(22, 0o100644, 0, 0, 0),
    }
    assert fstree.differences(before, after) == [
        "/a: allocated 16 sectors, was 8 (a hole was filled)",
        "/b: xattrs {'security.capability': '01'} -> {}",
        "/gone: missing after",
        "/new: added",
    ]
    shrunk = {**before, "/a": fstree.Node(20, 0o104755, 0, 0, 3, blocks=0)}
    assert fstree.differences(before, shrunk) == [], "a new hole is not a difference; the inode number is not"


def test_allocation_counts_a_files_data_and_not_its_extent_tree(disk_factory) -> None:  # type: ignore[no-untyped-def]  # pytest fixture
    """A file in more than four pieces needs an extent-tree block, which `Blockcount` includes. How
    many pieces the allocator makes differs between two filesystems with the same files (a GRUB
    image in four extents on the build's disk, five after the re-master), so the gate compares data
    blocks: 12 blocks of data between holes are 96 sectors, whatever the tree costs."""
    block = 4096
    content = b"".join(bytes([n + 1]) * block + bytes(block) for n in range(12))  # data, hole, data, …
    disk = disk_factory({"/pieces": content})
    fs = Filesystem(disk, root_partition(disk).offset)
    assert "(ETB0)" in fs.run_script(["stat /pieces"]), "the file needs an extent tree block"
    assert fstree.scan(fs)["/pieces"].blocks == 12 * block // 512
