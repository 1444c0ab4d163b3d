"""The chain of custody of a published version, proven offline, with HCP Packer-style status.

    python -m imagefactory.ancestry --registry R --version V [--json]      (make ancestry VERSION=V)

Prints the upstream, then each stage (name, version, commit, recipe digest, output digest), top
last. Every published file of the chain is checked again: the version's own files against its
SHA256SUMS and manifest, and each parent stage's file against the digest the child recorded
when it booted it and against the parent registry's ledger. Then, for each parent stage whose
registry holds a newer version, a line says so ("functional release-0.2.0 is built on base X;
base Y is newer"). A broken link is an error that names the file and both digests.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from imagefactory import registry
from imagefactory.checksums import file_digest
from imagefactory.errors import FactoryError, run_step
from imagefactory.stages import format_chain, newest_published, outdated, stage_registry


def check_link(top: Path, link: dict[str, Any]) -> None:
    """A parent stage of a chain: its published file is still the one its child booted."""
    if not isinstance(link.get("file"), dict) or "version" not in link:
        raise FactoryError(
            f"the chain names {link.get('stage')!r} without the file its child booted: it cannot be proven"
        )
    where = stage_registry(top, link["stage"])
    path = where / link["version"] / link["file"]["name"]
    if not path.is_file():
        raise FactoryError(f"{path} is missing: stage {link['stage']} {link['version']} of the chain is gone")
    actual = file_digest(path)
    if actual != link["file"]["sha256"]:
        raise FactoryError(
            f"{path} does not match the chain: the child booted sha256:{link['file']['sha256']}, "
            f"the file is now sha256:{actual}"
        )
    ledger = registry.read_ledger(where).get(link["version"], {}).get("content", {}).get("formats", {})
    if ledger.get(link["file"]["format"]) != actual:
        raise FactoryError(f"{path}: the ledger of {where} records another digest for {link['version']}")


def status(top: Path, entry: dict[str, Any]) -> list[str]:
    chain = entry.get("chain", [])

    def latest(stage: str) -> str | None:
        return newest_published(registry.read_index(stage_registry(top, stage)))

    return outdated(chain, latest, entry["version"]) if len(chain) > 2 else []


def ancestry(top: Path, version: str) -> dict[str, Any]:
    # Every file of the version, verified; a revoked version's chain is still shown (and says so).
    entry: dict[str, Any] = dict(registry.lookup_entry(top, version, allow_revoked=True))
    chain = entry.get("chain")
    if not chain:
        raise FactoryError(f"{version} was published without a chain of custody (before stages existed)")
    for link in chain[1:-1]:
        check_link(top, link)
    revoked = [f"{version} is revoked since {r['at']}: {r['reason']}" for r in [registry.revocation(top, version)] if r]
    for link in chain[1:-1]:
        record = registry.revocation(stage_registry(top, link["stage"]), link.get("version", ""))
        if record:
            revoked.append(f"its {link['stage']} {link['version']} is revoked since {record['at']}: {record['reason']}")
    return {"version": version, "chain": chain, "outdated": status(top, entry), "revoked": revoked}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print and verify the chain of custody of a published version.")
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    args = parser.parse_args(argv)

    def show() -> None:
        found = ancestry(args.registry, args.version)
        if args.json:
            print(json.dumps(found, indent=2))
            return
        print("\n".join(format_chain(found["chain"])))
        print(f"chain verified: {len(found['chain']) - 1} stage(s) on the upstream, every published file matches")
        for note in found["outdated"]:
            print(f"outdated: {note}")
        for note in found["revoked"]:
            print(f"revoked: {note}")

    return run_step("ancestry", show)


if __name__ == "__main__":
    sys.exit(main())
