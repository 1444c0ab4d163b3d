"""File digests and checksum files (SHA256SUMS / SHA512SUMS)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from imagefactory.errors import FactoryError

_LINE = re.compile(r"^([0-9a-fA-F]{64}|[0-9a-fA-F]{128})\s+[* ]?(.+)$")
CHUNK = 4 * 1024 * 1024


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks so that multi-GiB disks need little memory."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def parse_sums(text: str) -> dict[str, tuple[str, str]]:
    """Map file name -> (algorithm, hex digest) from a `sha256sum`/`sha512sum` style file."""
    entries: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line.strip())
        if not match:
            raise FactoryError(f"checksum file line {number} is not '<hex digest>  <file name>': {line!r}")
        digest, name = match.groups()
        algorithm = "sha256" if len(digest) == 64 else "sha512"
        entries[name.strip()] = (algorithm, digest.lower())
    return entries


def format_sums(digests: dict[str, str]) -> str:
    """SHA256SUMS text for name -> sha256 hex, sorted by name so the file is reproducible."""
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))


def parse_expected(spec: str) -> tuple[str, str]:
    """`sha256:<hex>` or `sha512:<hex>` -> (algorithm, hex)."""
    algorithm, _, digest = spec.partition(":")
    lengths = {"sha256": 64, "sha512": 128}
    if algorithm not in lengths or not re.fullmatch(rf"[0-9a-fA-F]{{{lengths[algorithm]}}}", digest):
        raise FactoryError(
            f"checksum {spec!r} is not accepted: use sha256:<64 hex digits>, sha512:<128 hex digits> "
            "or file:<SHA256SUMS/SHA512SUMS>"
        )
    return algorithm, digest.lower()


def verify(path: Path, algorithm: str, expected: str) -> str:
    """Check a file against its expected digest; on mismatch name the file and both digests."""
    actual = file_digest(path, algorithm)
    if actual != expected.lower():
        raise FactoryError(
            f"checksum mismatch for {path.name}: expected {algorithm}:{expected.lower()}, actual {algorithm}:{actual}"
        )
    return actual
