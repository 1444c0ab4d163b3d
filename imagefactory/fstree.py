"""A faithful, offline copy and manifest of an ext4 filesystem inside a disk image.

`debugfs rdump` (e2fsprogs 1.47.0) copies file contents, directories and symlinks, but it drops
setuid, setgid and sticky bits, extended attributes (file capabilities, ACLs), device nodes and
FIFOs, and it writes holes as zeros. `extract` runs rdump for the contents and then sets every
other piece of metadata again from what debugfs reads off the filesystem itself: owner, group,
the whole mode, extended attributes, special files and hard links. `manifest` describes a
filesystem by everything but its times, so two filesystems can be proven equal (the re-master's
gate) and two builds can be compared (the reproducibility check).

Everything runs without a mount; setting owners and capabilities needs root, so `extract`
refuses to start without it rather than produce an image whose `sudo` does not work.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from imagefactory.debugfs import Filesystem
from imagefactory.errors import FactoryError

# debugfs stores the content of inline-data inodes in this attribute; it is not a user xattr.
INTERNAL_XATTRS = frozenset({"system.data"})
_EA_LINE = re.compile(r"^  (\S+) \((\d+)\)")
_DEVICE = re.compile(r"Device major/minor number: ([0-9a-f]+):([0-9a-f]+)")
_BLOCKCOUNT = re.compile(r"Blockcount: (\d+)")
_EXTENT_TREE_BLOCK = re.compile(r"\(ETB\d+\):\d+")
_BLOCK_SIZE = re.compile(r"^Block size:\s+(\d+)", re.MULTILINE)
_TIME = re.compile(r"^\s*(ctime|atime|mtime|crtime): 0x([0-9a-f]+)(?::([0-9a-f]+))?", re.MULTILINE)


@dataclass
class Node:
    """One inode as seen through one of its paths; times are deliberately not part of it."""

    inode: int
    mode: int
    uid: int
    gid: int
    size: int
    blocks: int = 0
    """Allocated 512-byte sectors of data (regular files): a sparse file must stay sparse. The
    extent tree's own blocks are not counted: how many a file needs follows where the allocator
    put its extents (a file in five pieces needs one, in four none), not the file."""
    rdev: tuple[int, int] | None = None
    target: str | None = None
    xattrs: dict[str, str] = field(default_factory=dict)
    """Extended attribute name -> value as hex."""
    sha256: str | None = None
    links: int = 1
    """How many paths of the filesystem name this inode (hard links)."""

    @property
    def kind(self) -> str:
        fmt = stat.S_IFMT(self.mode)
        return {
            stat.S_IFREG: "file",
            stat.S_IFDIR: "dir",
            stat.S_IFLNK: "symlink",
            stat.S_IFCHR: "char",
            stat.S_IFBLK: "block",
            stat.S_IFIFO: "fifo",
            stat.S_IFSOCK: "socket",
        }.get(fmt, f"unknown-{fmt:o}")

    def describe(self) -> dict[str, object]:
        """The comparable description: every field but the inode number and times."""
        item = asdict(self)
        item.pop("inode")
        item["mode"] = f"{self.mode:07o}"
        item["kind"] = self.kind
        if self.kind != "file":
            item.pop("blocks")
        return item


def _check_name(path: str) -> None:
    if "\n" in path:
        raise FactoryError(f"cannot copy a file name with a newline: {path!r}")


def _parse_listing(output: str) -> dict[int, list[tuple[str, int, int, int, int, int]]]:
    """`ls -p <ino>` output of a debugfs script, by the directory inode it listed (with ".")."""
    listings: dict[int, list[tuple[str, int, int, int, int, int]]] = {}
    current: int | None = None
    for line in output.splitlines():
        if line.startswith("debugfs: ls -p <"):
            current = int(line.removeprefix("debugfs: ls -p <").rstrip(">"))
            listings[current] = []
            continue
        parts = line.split("/")
        if current is None or len(parts) < 7 or not line.startswith("/"):
            continue
        name = "/".join(parts[5:-2])
        if parts[1] == "0" or name == "..":
            continue
        size = int(parts[-2]) if parts[-2] else 0
        listings[current].append((name, int(parts[1]), int(parts[2], 8), int(parts[3]), int(parts[4]), size))
    return listings


def scan(fs: Filesystem) -> dict[str, Node]:
    """Every path of the filesystem with its metadata, read in a handful of debugfs runs."""
    nodes: dict[str, Node] = {}
    level = {2: "/"}
    listings = _parse_listing(fs.run_script(["ls -p <2>"]))
    while level:
        following: dict[int, str] = {}
        for directory, base in level.items():
            for name, ino, mode, uid, gid, size in listings.get(directory, []):
                if name == ".":
                    if directory == 2:
                        nodes["/"] = Node(ino, mode, uid, gid, 0)
                    continue
                path = f"{base.rstrip('/')}/{name}"
                _check_name(path)
                nodes[path] = Node(ino, mode, uid, gid, size)
                if stat.S_ISDIR(mode):
                    following[ino] = path
        level = following
        if level:
            listings = _parse_listing(fs.run_script([f"ls -p <{ino}>" for ino in level]))
    if "/" not in nodes:
        raise FactoryError(f"debugfs could not list the root directory of {fs.image.name}")

    by_inode: dict[int, list[Node]] = {}
    for node in nodes.values():
        by_inode.setdefault(node.inode, []).append(node)
    for same in by_inode.values():
        for node in same:
            node.links = len(same)
    _read_inode_details(fs, by_inode)
    _read_xattrs(fs, by_inode)
    return nodes


def _split_by_command(output: str, verb: str) -> dict[int, str]:
    """Output of a debugfs script of `<verb> <ino>` requests, by inode."""
    chunks: dict[int, list[str]] = {}
    current: list[str] | None = None
    prefix = f"debugfs: {verb} <"
    for line in output.splitlines():
        if line.startswith(prefix):
            ino = int(line.removeprefix(prefix).split(">", 1)[0])
            current = chunks.setdefault(ino, [])
        elif current is not None:
            current.append(line)
    return {ino: "\n".join(lines) for ino, lines in chunks.items()}


def _read_inode_details(fs: Filesystem, by_inode: dict[int, list[Node]]) -> None:
    """Allocated blocks of regular files, device numbers of device nodes, symlink targets."""
    wanted = [ino for ino, same in by_inode.items() if same[0].kind in ("file", "char", "block")]
    details = _split_by_command(fs.run_script([f"stat <{ino}>" for ino in wanted]), "stat")
    block_size = _BLOCK_SIZE.search(fs.run_script(["stats -h"]))
    if block_size is None:
        raise FactoryError(f"debugfs found no block size in {fs.image.name}")
    sectors_per_block = int(block_size.group(1)) // 512
    for ino in wanted:
        text = details.get(ino, "")
        for node in by_inode[ino]:
            if node.kind == "file":
                count = _BLOCKCOUNT.search(text)
                if count is None:
                    raise FactoryError(f"debugfs could not stat inode {ino} of {fs.image.name}")
                node.blocks = int(count.group(1)) - len(_EXTENT_TREE_BLOCK.findall(text)) * sectors_per_block
            else:
                device = _DEVICE.search(text)
                if device is None:
                    raise FactoryError(f"debugfs found no device number for inode {ino} of {fs.image.name}")
                node.rdev = (int(device.group(1), 16), int(device.group(2), 16))


def parse_times(stat_output: str) -> dict[str, str]:
    """The times of one `debugfs stat` answer, each as seconds[.extra] in hex as debugfs shows them
    (the extra word holds nanoseconds and the epoch bits)."""
    return {m.group(1): m.group(2) + (f".{m.group(3)}" if m.group(3) else "") for m in _TIME.finditer(stat_output)}


def time_seconds(value: str) -> int:
    """A time as `parse_times` gives it, in seconds since 1970: the low word is signed, and the
    extra word's two low bits extend it past 2038 (ext4's encoding)."""
    low, _, extra = value.partition(".")
    seconds = int(low, 16)
    if seconds >= 1 << 31:
        seconds -= 1 << 32
    return seconds + ((int(extra, 16) & 3) << 32 if extra else 0)


def times_not_at(times: dict[str, dict[str, str]], epoch: int) -> list[str]:
    """Where a re-mastered filesystem's times are not the build's: every change, access and
    creation time must be `epoch` exactly, and no modification time may be later."""
    wrong = []
    for path, fields in sorted(times.items()):
        for name, value in sorted(fields.items()):
            seconds = time_seconds(value)
            if seconds > epoch or (name != "mtime" and seconds != epoch):
                wrong.append(f"{path}: {name} {value} is {seconds}, not {epoch}")
    return wrong


def times(fs: Filesystem, nodes: dict[str, Node] | None = None) -> dict[str, dict[str, str]]:
    """Every path's inode times (ctime, atime, mtime, crtime), which `manifest` leaves out; `nodes`
    is a scan of `fs` already made (by `manifest`), else it is scanned here."""
    if nodes is None:
        nodes = scan(fs)
    inodes = sorted({node.inode for node in nodes.values()})
    details = _split_by_command(fs.run_script([f"stat <{ino}>" for ino in inodes]), "stat")
    return {path: parse_times(details.get(node.inode, "")) for path, node in nodes.items()}


def _read_xattrs(fs: Filesystem, by_inode: dict[int, list[Node]]) -> None:
    listed = _split_by_command(fs.run_script([f"ea_list <{ino}>" for ino in by_inode]), "ea_list")
    requests: list[tuple[int, str]] = []
    for ino, text in listed.items():
        for line in text.splitlines():
            match = _EA_LINE.match(line)
            if match and match.group(1) not in INTERNAL_XATTRS:
                requests.append((ino, match.group(1)))
    if not requests:
        return
    with tempfile.TemporaryDirectory(prefix="imagefactory-xattr-") as tmp:
        script = [f"ea_get -f {tmp}/{n} <{ino}> {name}" for n, (ino, name) in enumerate(requests)]
        fs.run_script(script)
        for n, (ino, name) in enumerate(requests):
            value = Path(tmp, str(n))
            if not value.is_file():
                raise FactoryError(f"debugfs could not read extended attribute {name} of inode {ino}")
            for node in by_inode[ino]:
                node.xattrs[name] = value.read_bytes().hex()


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _add_content_digests(nodes: dict[str, Node], tree: Path) -> None:
    for path, node in nodes.items():
        if node.kind == "symlink":
            node.target = os.readlink(tree / path.lstrip("/"))
        elif node.kind == "file":
            node.sha256 = _digest(tree / path.lstrip("/"))


def require_root(purpose: str) -> None:
    if os.geteuid() != 0:
        raise FactoryError(
            f"{purpose} needs root: a non-root copy cannot keep file owners, setuid bits and file "
            "capabilities (sudo would not work in the image). Run it as root, for example with sudo."
        )


def _set_mode(local: Path, node: Node) -> None:
    if node.kind != "symlink":
        os.chmod(local, stat.S_IMODE(node.mode))


def extract(fs: Filesystem, tree: Path) -> dict[str, Node]:
    """Copy the whole filesystem into `tree` (which must not exist) with all of its metadata."""
    require_root("copying a filesystem faithfully")
    nodes = scan(fs)
    tree.mkdir(parents=True)
    result = fs.run_script([f'rdump / "{tree}"'])
    if not any(tree.iterdir()) and len(nodes) > 1:
        raise FactoryError(f"debugfs rdump copied nothing out of {fs.image.name}: {result[-300:]}")
    first_name: dict[int, str] = {}
    for path in sorted(nodes):
        node = nodes[path]
        local = tree / path.lstrip("/") if path != "/" else tree
        if node.kind in ("char", "block", "fifo", "socket"):
            if not local.exists():
                device = os.makedev(*node.rdev) if node.rdev else 0
                os.mknod(local, stat.S_IFMT(node.mode) | 0o600, device)
        elif node.kind == "file" and node.links > 1:
            if node.inode in first_name:
                local.unlink()
                os.link(tree / first_name[node.inode].lstrip("/"), local)
            else:
                first_name[node.inode] = path
        if not local.exists() and not local.is_symlink():
            raise FactoryError(f"debugfs rdump did not copy {path} ({node.kind}) out of {fs.image.name}")
    # Owners first: chown clears setuid and setgid bits, so the mode is set after it. Deepest
    # paths first, so a directory's own mode is set after its content has been written.
    for path in sorted(nodes, key=lambda p: (-p.count("/"), p)):
        node = nodes[path]
        local = tree / path.lstrip("/") if path != "/" else tree
        os.lchown(local, node.uid, node.gid)
        _set_mode(local, node)
        for name, value in node.xattrs.items():
            try:
                os.setxattr(local, name, bytes.fromhex(value), follow_symlinks=False)
            except OSError as exc:
                raise FactoryError(
                    f"cannot keep extended attribute {name} of {path}: {exc.strerror} "
                    f"(the work folder's filesystem must support {name.split('.')[0]}.* attributes)"
                ) from None
    _add_content_digests(nodes, tree)
    return nodes


def manifest(fs: Filesystem, work: Path) -> dict[str, Node]:
    """The filesystem's every path with metadata and content digest, read offline."""
    tree = work / "manifest-tree"
    shutil.rmtree(tree, ignore_errors=True)
    nodes = scan(fs)
    tree.mkdir(parents=True)
    try:
        fs.run_script([f'rdump / "{tree}"'])
        _add_content_digests(nodes, tree)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return nodes


def differences(before: dict[str, Node], after: dict[str, Node], limit: int = 20) -> list[str]:
    """How `after` differs from `before` in anything but times; a sparse file may only shrink."""
    found: list[str] = []
    for path in sorted(set(before) | set(after)):
        if path not in after:
            found.append(f"{path}: missing after")
        elif path not in before:
            found.append(f"{path}: added")
        else:
            old, new = before[path].describe(), after[path].describe()
            for key in sorted(set(old) | set(new)):
                if key == "blocks":
                    if new[key] > old[key]:  # type: ignore[operator]  # both ints for files
                        found.append(f"{path}: allocated {new[key]} sectors, was {old[key]} (a hole was filled)")
                elif old.get(key) != new.get(key):
                    found.append(f"{path}: {key} {old.get(key)!r} -> {new.get(key)!r}")
        if len(found) >= limit:
            found.append("(more differences not shown)")
            break
    return found
