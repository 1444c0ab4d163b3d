"""The on-disk registry of published versions, and lookups in it.

Layout:
    <registry>/index.json            {"versions": {version: {...summary...}}}
    <registry>/<version>/            the files of one version, SHA256SUMS, manifest.json

    python -m imagefactory.registry publish --registry R --staging D --version V
    python -m imagefactory.registry retire  --registry R --version V
    python -m imagefactory.registry lookup  --registry R --version V [--format qcow2]
    python -m imagefactory.registry list    --registry R

Publishing is atomic: the version's folder is renamed into place, then the index is replaced
by rename. Released versions are immutable: publishing a release again with different
content is refused; publishing identical content is a no-op. Development versions
(dev-<sha>[-dirty]) may be replaced.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagefactory.checksums import file_digest, parse_sums
from imagefactory.errors import FactoryError
from imagefactory.versions import DEV_VERSION


def is_dev(version: str) -> bool:
    return bool(DEV_VERSION.fullmatch(version))


@contextmanager
def _locked(registry: Path) -> Iterator[None]:
    registry.mkdir(parents=True, exist_ok=True)
    with open(registry / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_index(registry: Path) -> dict:
    try:
        return json.loads((registry / "index.json").read_text())
    except FileNotFoundError:
        return {"versions": {}}
    except ValueError as exc:
        raise FactoryError(f"{registry / 'index.json'} is not valid JSON: {exc}") from exc


def _write_index(registry: Path, index: dict) -> None:
    tmp = registry / ".index.json.partial"
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    tmp.replace(registry / "index.json")


def verify_folder(folder: Path) -> dict:
    """Check every file of a version against its SHA256SUMS; return its manifest."""
    manifest = json.loads((folder / "manifest.json").read_text())
    sums = parse_sums((folder / "SHA256SUMS").read_text())
    for name, (algorithm, digest) in sums.items():
        actual = file_digest(folder / name, algorithm)
        if actual != digest:
            raise FactoryError(f"{folder / name}: expected sha256:{digest}, actual sha256:{actual}")
    return manifest


def content_key(manifest: dict) -> dict:
    """What makes two builds of a version the same release: source, upstream and image bytes."""
    return {
        "commit": manifest["commit"],
        "upstream": manifest["upstream"]["sha256"],
        "formats": {fmt: entry["sha256"] for fmt, entry in manifest["formats"].items()},
    }


def entry(registry: Path, manifest: dict) -> dict:
    """The lookup-table entry for one version: what the `images` stack output carries."""
    folder = registry.resolve() / manifest["version"]
    return {
        "version": manifest["version"],
        "commit": manifest["commit"],
        "build_time": manifest["build_time"],
        "upstream": manifest["upstream"],
        "dir": str(folder),
        "formats": {
            fmt: {"path": str(folder / item["file"]), "sha256": item["sha256"], "bytes": item["bytes"]}
            for fmt, item in sorted(manifest["formats"].items())
        },
    }


def publish(registry: Path, staging: Path, version: str) -> dict:
    manifest = verify_folder(staging)
    if manifest["version"] != version:
        raise FactoryError(f"{staging} holds {manifest['version']}, not {version}")
    with _locked(registry):
        index = read_index(registry)
        target = registry / version
        if version in index["versions"] and target.is_dir():
            existing = json.loads((target / "manifest.json").read_text())
            if content_key(existing) == content_key(manifest):
                print(f"registry: {version} is already published with this content", file=sys.stderr)
                return entry(registry, existing)
            if not is_dev(version):
                raise FactoryError(
                    f"{version} is already published with different content (commit "
                    f"{existing['commit'][:12]}, upstream {existing['upstream']['sha256'][:12]}); releases are "
                    "immutable: tag a new version instead"
                )
        incoming = registry / f".{version}.incoming"
        shutil.rmtree(incoming, ignore_errors=True)
        shutil.copytree(staging, incoming, copy_function=_link_or_copy)
        if target.exists():
            retired = registry / f".{version}.replaced"
            shutil.rmtree(retired, ignore_errors=True)
            target.replace(retired)
            incoming.replace(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            incoming.replace(target)
        index["versions"][version] = {
            "commit": manifest["commit"],
            "build_time": manifest["build_time"],
            "upstream": manifest["upstream"],
            "formats": sorted(manifest["formats"]),
            "manifest_sha256": file_digest(target / "manifest.json"),
        }
        _write_index(registry, index)
    print(f"registry: published {version} in {target}", file=sys.stderr)
    return entry(registry, manifest)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


def _known(index: dict, version: str) -> None:
    if version not in index["versions"]:
        available = ", ".join(sorted(index["versions"])) or "none"
        raise FactoryError(f"{version} is not in the registry; it has: {available}")


def deprecate(registry: Path, version: str, when: str) -> None:
    """Mark a version deprecated: still published and launchable, but announced for retirement."""
    with _locked(registry):
        index = read_index(registry)
        _known(index, version)
        index["versions"][version]["deprecated"] = when
        _write_index(registry, index)


def retire(registry: Path, version: str, missing_ok: bool = False) -> None:
    """Remove a version from the index and delete its files: an explicit lifecycle step.

    A release must be deprecated first; a development version may go at any time.
    """
    with _locked(registry):
        index = read_index(registry)
        if version not in index["versions"] and missing_ok:
            return
        _known(index, version)
        if not is_dev(version) and "deprecated" not in index["versions"][version]:
            raise FactoryError(
                f"{version} is a release that is not deprecated; deprecate it first "
                f"(make deprecate VERSION={version}), then retire it"
            )
        del index["versions"][version]
        _write_index(registry, index)
        shutil.rmtree(registry / version, ignore_errors=True)


def check_not_moved(registry: Path, version: str, commit: str) -> None:
    """Refuse, before anything is built, a release whose tag now points at another commit."""
    published = read_index(registry)["versions"].get(version)
    if published and not is_dev(version) and published["commit"] != commit:
        raise FactoryError(
            f"tag {version} now points at {commit[:12]}, but {version} was published from "
            f"{published['commit'][:12]}; releases are immutable: move the tag back "
            f"(git tag -f {version} {published['commit'][:12]}) and publish the change as a new version"
        )


def lookup(registry: Path, version: str, fmt: str | None = None) -> dict:
    index = read_index(registry)
    if version not in index["versions"]:
        available = ", ".join(sorted(index["versions"])) or "none"
        raise FactoryError(f"version {version} is not published; published versions: {available}")
    manifest = json.loads((registry / version / "manifest.json").read_text())
    found = entry(registry, manifest)
    if "deprecated" in index["versions"][version]:
        print(
            f"registry: warning: {version} is deprecated since {index['versions'][version]['deprecated']}",
            file=sys.stderr,
        )
    if fmt is None:
        return found
    if fmt not in found["formats"]:
        raise FactoryError(f"{version} has no {fmt} image; it has: {', '.join(found['formats'])}")
    return found["formats"][fmt]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The on-disk registry of published image versions.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("publish", "deprecate", "retire", "lookup", "list"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--registry", type=Path, required=True)
        if name != "list":
            cmd.add_argument("--version", required=True)
    sub.choices["publish"].add_argument("--staging", type=Path, required=True)
    sub.choices["retire"].add_argument(
        "--missing-ok", action="store_true", help="succeed when the version is already gone"
    )
    sub.choices["lookup"].add_argument("--format")
    args = parser.parse_args(argv)
    try:
        if args.command == "publish":
            print(json.dumps(publish(args.registry, args.staging, args.version)))
        elif args.command == "deprecate":
            import datetime as dt

            deprecate(args.registry, args.version, dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            print(f"registry: {args.version} is deprecated", file=sys.stderr)
        elif args.command == "retire":
            retire(args.registry, args.version, args.missing_ok)
            print(f"registry: retired {args.version}", file=sys.stderr)
        elif args.command == "lookup":
            found = lookup(args.registry, args.version, args.format)
            print(found["path"] if args.format else json.dumps(found, indent=2))
        else:
            print("\n".join(sorted(read_index(args.registry)["versions"])))
    except FactoryError as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
