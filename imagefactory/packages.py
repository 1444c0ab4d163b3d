"""The package set of an image: read offline, written as an SBOM, compared between versions.

The seal role records every installed package (name, version, architecture and the SHA-256 of
its .deb as the archive publishes it) in PACKAGES_FILE inside the image. The formats step reads
that file out of the sealed RAW with debugfs and publishes it twice beside the manifest: as
`packages.tsv` (what `make diff` compares) and as a CycloneDX SBOM (`sbom.cdx.json`).

    python -m imagefactory.packages diff --registry .state/registry --from release-0.1.0 --to release-0.2.0
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from imagefactory.errors import FactoryError

PACKAGES_FILE = "/usr/share/imagefactory/packages.tsv"
TSV_NAME = "packages.tsv"
UPSTREAM_TSV_NAME = "upstream-packages.tsv"
"""Beside a manifest whose first stage booted the stage-0 image: that image's own package set."""
SBOM_NAME = "sbom.cdx.json"
SBOM_NAMESPACE = uuid.UUID("3f0e9a8c-2b1d-4c5e-9f7a-6d8e0b1c2a34")


@dataclass(frozen=True, order=True)
class Package:
    name: str
    version: str
    arch: str
    sha256: str = "-"

    @property
    def purl(self) -> str:
        return f"pkg:deb/debian/{self.name}@{self.version}?arch={self.arch}"


def parse(text: str, source: str = PACKAGES_FILE) -> list[Package]:
    """Lines of name, version, architecture and digest, separated by tabs."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("\t")
        if len(fields) != 4 or not all(fields):
            raise FactoryError(f"{source} line {number}: {line[:120]!r}; accepted: name, version, arch, sha256 by tabs")
        found.append(Package(*fields))
    return sorted(found)


def to_tsv(packages: list[Package]) -> str:
    return "".join(f"{p.name}\t{p.version}\t{p.arch}\t{p.sha256}\n" for p in sorted(packages))


def sbom(packages: list[Package], image: str, version: str, epoch: int) -> str:
    """A CycloneDX JSON SBOM of the image. Its serial number and time come from the version and
    the commit time, so a rebuild writes the same bytes."""
    from cyclonedx.model import HashAlgorithm, HashType
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    bom = Bom(serial_number=uuid.uuid5(SBOM_NAMESPACE, f"{image}/{version}"))
    bom.metadata.timestamp = datetime.fromtimestamp(epoch, UTC)
    root = Component(name=image, version=version, type=ComponentType.OPERATING_SYSTEM, bom_ref=f"{image}@{version}")
    bom.metadata.component = root
    members = []
    for package in sorted(packages):
        purl = PackageURL("deb", "debian", package.name, package.version, {"arch": package.arch})
        hashes = [HashType(alg=HashAlgorithm.SHA_256, content=package.sha256)] if package.sha256 != "-" else []
        member = Component(
            name=package.name,
            version=package.version,
            type=ComponentType.LIBRARY,
            purl=purl,
            bom_ref=purl.to_string(),
            hashes=hashes,
        )
        bom.components.add(member)
        members.append(member)
    bom.register_dependency(root, members)  # the image contains every package
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _version_key(part: str) -> list[tuple[int, str | int]]:
    """dpkg's ordering of an upstream version or revision: alternating non-digit runs (compared
    character by character: ~ before the end, the end before letters, letters before the rest)
    and digit runs (compared as numbers)."""
    end = chr(1024)

    def weight(char: str) -> str:
        if char == "~":
            return chr(1023)
        return chr(1024 + ord(char) + (0 if char.isalpha() else 256))

    key: list[tuple[int, str | int]] = []
    rest = part
    while rest:
        head = ""
        while rest and not rest[0].isdigit():
            head, rest = head + weight(rest[0]), rest[1:]
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        key += [(0, head + end), (1, int(digits or 0))]
    return [*key, (0, end)]


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as dpkg --compare-versions orders two Debian versions."""

    def split(version: str) -> tuple[int, list, list]:
        epoch, _, rest = version.rpartition(":") if ":" in version else ("0", "", version)
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
        return int(epoch or 0), _version_key(upstream), _version_key(revision)

    left, right = split(a), split(b)
    return (left > right) - (left < right)


def diff(old: list[Package], new: list[Package]) -> dict[str, list[dict[str, str]]]:
    """Packages added, removed, upgraded and downgraded from `old` to `new` (by name and arch)."""
    before = {(p.name, p.arch): p for p in old}
    after = {(p.name, p.arch): p for p in new}
    result: dict[str, list[dict[str, str]]] = {"added": [], "removed": [], "upgraded": [], "downgraded": []}
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a is None and b is not None:
            result["added"].append({"name": b.name, "arch": b.arch, "version": b.version})
        elif b is None and a is not None:
            result["removed"].append({"name": a.name, "arch": a.arch, "version": a.version})
        elif a is not None and b is not None and a.version != b.version:
            kind = "upgraded" if compare_versions(b.version, a.version) > 0 else "downgraded"
            result[kind].append({"name": a.name, "arch": a.arch, "from": a.version, "to": b.version})
    return result


def format_diff(changes: dict[str, list[dict[str, str]]], old: str, new: str) -> list[str]:
    lines = []
    for item in changes["added"]:
        lines.append(f"+ {item['name']} {item['version']}")
    for item in changes["removed"]:
        lines.append(f"- {item['name']} {item['version']}")
    for kind in ("upgraded", "downgraded"):
        for item in changes[kind]:
            lines.append(f"~ {item['name']} {item['from']} -> {item['to']} ({kind})")
    counts = ", ".join(f"{len(changes[k])} {k}" for k in ("added", "removed", "upgraded", "downgraded"))
    return [f"packages from {old} to {new}: {counts}", *lines]


def published(registry: Path, version: str) -> list[Package]:
    """The package set a published version recorded (its packages.tsv)."""
    path = registry / version / TSV_NAME
    if not (registry / version).is_dir():
        raise FactoryError(f"{version} is not published in {registry}")
    if not path.is_file():
        raise FactoryError(f"{version} recorded no package set ({path} is missing): it was built before SBOMs")
    return parse(path.read_text(), str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("diff", help="packages added, removed and changed between two published versions")
    show.add_argument("--registry", type=Path, required=True)
    show.add_argument("--from", dest="old", required=True)
    show.add_argument("--to", dest="new", required=True)
    show.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if not args.old or not args.new:
            raise FactoryError("FROM and TO are required: make diff FROM=release-0.1.0 TO=release-0.2.0")
        changes = diff(published(args.registry, args.old), published(args.registry, args.new))
    except FactoryError as exc:
        print(f"diff: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(changes, indent=2) if args.json else "\n".join(format_diff(changes, args.old, args.new)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
