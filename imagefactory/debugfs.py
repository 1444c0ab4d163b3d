"""Read an ext4 filesystem inside a disk image offline, with debugfs and no mount or root."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imagefactory.errors import FactoryError

S_IFMT = 0o170000
S_IFDIR = 0o040000
S_IFREG = 0o100000
S_IFLNK = 0o120000


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    size: int
    inode: int = 0

    @property
    def is_dir(self) -> bool:
        return self.mode & S_IFMT == S_IFDIR

    @property
    def is_file(self) -> bool:
        return self.mode & S_IFMT == S_IFREG


class Filesystem:
    """An ext2/3/4 filesystem at a byte offset of a raw disk image."""

    def __init__(self, image: Path, offset: int = 0, writable: bool = False) -> None:
        self.image = image
        self.device = f"{image}?offset={offset}" if offset else str(image)
        self.writable = writable

    def _run(self, request: str) -> subprocess.CompletedProcess[bytes]:
        args = ["debugfs"] + (["-w"] if self.writable else []) + ["-R", request, self.device]
        try:
            return subprocess.run(args, capture_output=True, check=False)
        except FileNotFoundError as exc:
            raise FactoryError("debugfs is not installed (Debian package e2fsprogs)") from exc

    def listdir(self, path: str) -> list[Entry] | None:
        """Entries of a directory (without . and ..), or None when it does not exist."""
        result = self._run(f'ls -p "{path}"')
        if b"not found" in result.stderr or b"Ext2 inode is not a directory" in result.stderr:
            return None
        if result.returncode != 0:
            raise FactoryError(f"debugfs could not read {path} in {self.image.name}: {result.stderr.decode()}")
        entries = []
        for line in result.stdout.decode(errors="replace").splitlines():
            parts = line.strip().split("/")
            # "/ino/mode/uid/gid/name/size/"
            if len(parts) < 7 or parts[5] in (".", ".."):
                continue
            name = "/".join(parts[5:-2])
            if not name or parts[1] == "0":
                continue
            entries.append(Entry(name, int(parts[2], 8), int(parts[-2] or 0), int(parts[1])))
        return entries

    def read(self, path: str) -> bytes | None:
        """Content of a file, or None when it does not exist."""
        result = self._run(f'cat "{path}"')
        if b"not found" in result.stderr:
            return None
        return result.stdout

    def stat(self, path: str) -> Entry | None:
        parent = str(PurePosixPath(path).parent)
        name = PurePosixPath(path).name
        for entry in self.listdir(parent) or []:
            if entry.name == name:
                return entry
        return None

    def walk(self, path: str) -> list[tuple[str, Entry]]:
        """Every entry below a directory, depth first, as (full path, entry)."""
        found: list[tuple[str, Entry]] = []
        for entry in self.listdir(path) or []:
            full = f"{path.rstrip('/')}/{entry.name}"
            found.append((full, entry))
            if entry.is_dir:
                found.extend(self.walk(full))
        return found

    def run_script(self, commands: list[str], env: dict[str, str] | None = None) -> str:
        """Run many requests in one debugfs process (debugfs -f); returns its standard output."""
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".debugfs", delete=False) as script:
            script.write("\n".join(commands) + "\n")
        try:
            args = ["debugfs"] + (["-w"] if self.writable else []) + ["-f", script.name, self.device]
            result = subprocess.run(args, capture_output=True, check=False, env=env)
        finally:
            Path(script.name).unlink()
        if result.returncode != 0:
            raise FactoryError(f"debugfs script failed on {self.image.name}: {result.stderr.decode()[-500:]}")
        return result.stdout.decode(errors="replace")

    def write(self, local: Path, path: str) -> None:
        """Copy a local file into the filesystem (used by tests to plant findings in a copy)."""
        if not self.writable:
            raise FactoryError("filesystem opened read-only")
        result = self._run(f'write "{local}" "{path}"')
        if result.returncode != 0 or b"rror" in result.stderr:
            raise FactoryError(f"debugfs could not write {path}: {result.stderr.decode()}")
