"""A release keeps its packages: every .deb a build installed, kept in the user's cache by its
SHA-256, with the index entry apt read for it; a rebuild serves exactly a recorded package set
from there as a local apt repository, so it installs the recorded versions with no network.

    <cache>/packages/debs/<sha256>.deb   a .deb, named by the digest it was checked against
    <cache>/packages/stanzas/<sha256>    the archive's index entry (Packages format) of that .deb

A build exports what it used (`export_folder`, written in the build VM by the seal role and by the
stage-0 recipe on the host): `packages.index`, the index entries apt had for every installed
version, and the .deb files it downloaded. `ingest` checks each .deb against the digest its entry
names and files both by digest. A rebuild (`write_repo`) needs an entry for every recorded
package that has a digest (the seal records the digest from the index apt reads, so the rebuild's
index must name the same ones) and the .deb of every package the image below it did not already
have. Anything missing is named, and nothing is built.

The repository is a flat one (`deb [trusted=yes] <url> ./`): it is trusted as a local source, it
holds only files whose digests the release recorded, and apt checks every file it downloads
against the index's SHA256 (the index itself is listed by digest in the Release file).

Pure logic and a small HTTP server: no Pulumi imports.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import shutil
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from imagefactory.checksums import file_digest
from imagefactory.errors import FactoryError, first_lines
from imagefactory.files import partial_name, write_atomic
from imagefactory.packages import Package

INDEX_NAME = "packages.index"
"""In an export: the index entries of every installed version, as apt had them."""
EXPORT_TAR = "packages-export.tar"
"""What the seal role fetches from the build VM: packages.index and the downloaded .deb files."""


def cache_root(cache: Path) -> Path:
    """The package store: IMAGEFACTORY_PACKAGES when set (a store shared by a team, or an empty
    one to see what a rebuild needs), else `packages` in the per-user cache."""
    return Path(os.environ["IMAGEFACTORY_PACKAGES"]) if os.environ.get("IMAGEFACTORY_PACKAGES") else cache / "packages"


def stanzas(text: str) -> list[str]:
    """The paragraphs of a Packages file, each as its lines (continuation lines kept)."""
    found, lines = [], []
    for line in text.splitlines():
        if line.strip():
            lines.append(line)
        elif lines:
            found.append("\n".join(lines) + "\n")
            lines = []
    if lines:
        found.append("\n".join(lines) + "\n")
    return found


def field_of(stanza: str, name: str) -> str | None:
    prefix = name.lower() + ":"
    for line in stanza.splitlines():
        if line[:1] not in (" ", "\t") and line.lower().startswith(prefix):
            return line[len(prefix) :].strip()
    return None


def with_filename(stanza: str, filename: str) -> str:
    """The entry with its Filename pointing into the local repository's pool."""
    lines = [line for line in stanza.splitlines() if not line.lower().startswith("filename:")]
    return "\n".join([*lines, f"Filename: {filename}"]) + "\n"


@dataclass
class Ingested:
    debs: int = 0
    new_debs: int = 0
    stanzas: int = 0
    unmatched: list[str] = field(default_factory=list)
    """.deb files whose digest no index entry names: not kept (nothing could vouch for them)."""


def _place(source: Path, target: Path) -> bool:
    """Copy `source` to `target` under a temporary name and rename it; False when already there."""
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(target)
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    return True


def ingest(folder: Path, cache: Path) -> Ingested:
    """Keep an export's index entries and .deb files in the cache, by digest."""
    root = cache_root(cache)
    result = Ingested()
    index = folder / INDEX_NAME
    by_digest: dict[str, str] = {}
    if index.is_file():
        for stanza in stanzas(index.read_text(encoding="utf-8", errors="replace")):
            digest = field_of(stanza, "SHA256")
            if digest and len(digest) == 64:
                by_digest[digest] = stanza
    for digest, stanza in sorted(by_digest.items()):
        target = root / "stanzas" / digest
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, stanza)
        result.stanzas += 1
    for deb in sorted(folder.rglob("*.deb")):
        digest = file_digest(deb)
        if digest not in by_digest and not (root / "stanzas" / digest).exists():
            result.unmatched.append(deb.name)
            continue
        result.debs += 1
        result.new_debs += _place(deb, root / "debs" / f"{digest}.deb")
    return result


def ingest_tar(tar: Path, cache: Path) -> Ingested:
    """An export fetched from a build VM: a tar of packages.index and .deb files."""
    with tempfile.TemporaryDirectory(prefix="packages-export-") as tmp:
        try:
            with tarfile.open(tar) as archive:
                for member in archive.getmembers():
                    # Regular files under plain relative names only (a build VM is not trusted
                    # to write elsewhere on the host); tarfile's own filters need Python 3.11.4.
                    parts = Path(member.name).parts
                    if member.isdir() and parts and not member.name.startswith("/") and ".." not in parts:
                        continue
                    if not member.isfile() or not parts or member.name.startswith("/") or ".." in parts:
                        raise FactoryError(f"the package export {tar} holds {member.name!r}; accepted: plain files")
                    target = Path(tmp, *parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = archive.extractfile(member)
                    if source is None:
                        raise FactoryError(f"cannot read {member.name} in the package export {tar}")
                    with source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out)
        except (tarfile.TarError, OSError) as exc:
            raise FactoryError(f"cannot read the package export {tar}: {exc}") from None
        return ingest(Path(tmp), cache)


def _describe(package: Package) -> str:
    return f"{package.name} {package.version} {package.arch} sha256:{package.sha256}"


def write_repo(
    folder: Path,
    recorded: Iterable[Package],
    installed_before: Iterable[Package],
    cache: Path,
    what: str,
    codename: str = "bookworm",
    missing_list: Path | None = None,
) -> dict[str, int]:
    """A flat apt repository in `folder` holding exactly the recorded set. `installed_before` is
    what the image below had (those .deb files are never downloaded, their entries still are
    read). Raises, naming every package, when something the rebuild needs is not in the cache.
    The Release file names the suite's codename: mmdebstrap picks the Essential:yes set from the
    archive whose codename is the suite it builds. Every missing package is listed in
    `missing_list` (default: beside `folder`)."""
    root = cache_root(cache)
    before = {(p.name, p.version, p.arch) for p in installed_before}
    missing: list[str] = []
    entries: list[str] = []
    pool: list[str] = []
    for package in sorted(recorded):
        if package.sha256 == "-":
            continue  # no index named it when it was recorded: the rebuild's index does not either
        stanza_file = root / "stanzas" / package.sha256
        deb = root / "debs" / f"{package.sha256}.deb"
        needs_deb = (package.name, package.version, package.arch) not in before
        if not stanza_file.is_file() or (needs_deb and not deb.is_file()):
            missing.append(_describe(package) + ("" if stanza_file.is_file() else " (no index entry)"))
            continue
        entries.append(with_filename(stanza_file.read_text(), f"pool/{package.sha256}.deb"))
        if needs_deb:
            pool.append(package.sha256)
    if missing:
        listing = missing_list or folder.parent / f"{folder.name}-missing.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(listing, "".join(f"{line}\n" for line in missing))
        shown = first_lines(missing, 20)
        raise FactoryError(
            f"{len(missing)} package(s) recorded by {what} are not in the package cache {root}:\n  {shown}\n"
            f"(all of them in {listing}); a build keeps the packages it installs there: rebuild on a machine "
            "that built the release (or copy its package cache), nothing was built"
        )
    (folder / "pool").mkdir(parents=True, exist_ok=True)
    for digest in pool:
        link = folder / "pool" / f"{digest}.deb"
        if not link.exists():
            try:
                os.link(root / "debs" / f"{digest}.deb", link)
            except OSError:  # another filesystem: a copy
                shutil.copyfile(root / "debs" / f"{digest}.deb", link)
    packages = "\n".join(entries)
    write_atomic(folder / "Packages", packages)
    digest = hashlib.sha256(packages.encode()).hexdigest()
    write_atomic(
        folder / "Release",
        f"Origin: imagefactory\nLabel: recorded packages of {what}\nSuite: recorded\nCodename: {codename}\n"
        f"SHA256:\n {digest} {len(packages.encode())} Packages\n",
    )
    return {"entries": len(entries), "debs": len(pool)}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    served: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.served.append(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}".strip())


@dataclass
class Server:
    port: int
    served: list[str]


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[Server]:
    """Serve the repository on 127.0.0.1 (a build VM reaches it as 10.0.2.2) while the block runs."""
    served: list[str] = []
    handler = functools.partial(type("Handler", (_Quiet,), {"served": served}), directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(server.server_address[1], served)
    finally:
        server.shutdown()
        server.server_close()
        print(f"packages: the local repository served {len(served)} request(s)", file=sys.stderr)
