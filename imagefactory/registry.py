"""The on-disk registry of published versions, and lookups in it.

Layout:
    <registry>/index.json            {"versions": {version: {...summary...}}}
    <registry>/<version>/            the files of one version (read-only), SHA256SUMS, manifest.json
    <registry>/published.jsonl       append-only: the content of every version ever published
    <registry>/channels.jsonl        append-only: every promotion of a channel (imagefactory.channels)
    <registry>/revocations.jsonl     append-only: every revoked version, with its reason

    python -m imagefactory.registry publish --registry R --staging D --version V
    python -m imagefactory.registry retire  --registry R --version V
    python -m imagefactory.registry lookup  --registry R --version V [--format qcow2]
    python -m imagefactory.registry list    --registry R
    python -m imagefactory.registry verify  --registry R [--version V]

Publishing is atomic and durable: the version's files are written and fsynced under a
temporary name, the folder is renamed into place, the ledger gets its record, and only then is
the index replaced by rename. Released versions are immutable, judged by content: publishing a
release again with different content is refused, even when index.json or the version's folder
was deleted, because the ledger keeps every published digest; publishing identical content is
a no-op (or restores what was deleted). Development versions (dev-<sha>[-dirty]) may be
replaced. Every lookup checks the files it returns against SHA256SUMS and the manifest's
digest in the index.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
from contextlib import AbstractContextManager
from pathlib import Path

from imagefactory import files, host
from imagefactory.checksums import file_digest, parse_sums
from imagefactory.errors import FactoryError, run_step
from imagefactory.files import fsync, write_atomic
from imagefactory.steps import FileEntry, ImageEntry, PublishRequest
from imagefactory.versions import DEV_VERSION


def is_dev(version: str) -> bool:
    return bool(DEV_VERSION.fullmatch(version))


def locked(registry: Path) -> AbstractContextManager[None]:
    return files.exclusive(registry / ".lock")


def read_index(registry: Path) -> dict:
    try:
        return json.loads((registry / "index.json").read_text())
    except FileNotFoundError:
        return {"versions": {}}
    except ValueError as exc:
        raise FactoryError(f"{registry / 'index.json'} is not valid JSON: {exc}") from exc


LEDGER = "published.jsonl"
REVOCATIONS = "revocations.jsonl"


def write_index(registry: Path, index: dict) -> None:
    write_atomic(registry / "index.json", json.dumps(index, indent=2, sort_keys=True) + "\n", durable=True)


def read_ledger(registry: Path) -> dict[str, dict]:
    """The last published record of each version, from the append-only ledger."""
    path = registry / LEDGER
    records: dict[str, dict] = {}
    if not path.exists():
        return records
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            records[record["version"]] = record
        except (ValueError, KeyError, TypeError):
            raise FactoryError(
                f"{path}:{number} is not a ledger record; the ledger of published digests is damaged"
            ) from None
    return records


def _append_ledger(registry: Path, record: dict) -> None:
    with open(registry / LEDGER, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    fsync(registry)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FactoryError(f"{path} is missing") from None
    except ValueError as exc:
        raise FactoryError(f"{path} is not valid JSON: {exc}") from None


def verify_folder(folder: Path, formats: list[str] | None = None) -> dict:
    """Check a version's files (all, or those of `formats`) against its SHA256SUMS and its
    manifest; return the manifest. Every fault is one line that names the file."""
    if not folder.is_dir():
        raise FactoryError(f"{folder} is missing: the version's folder was deleted or moved")
    manifest = _read_json(folder / "manifest.json")
    sums_file = folder / "SHA256SUMS"
    if not sums_file.is_file():
        raise FactoryError(f"{sums_file} is missing")
    sums = parse_sums(sums_file.read_text())
    wanted = manifest.get("formats", {}) if formats is None else {f: manifest["formats"][f] for f in formats}
    names = set(sums) if formats is None else {item["file"] for item in wanted.values()}
    for fmt, item in wanted.items():
        if item["file"] not in sums:
            raise FactoryError(f"{folder / item['file']} ({fmt}) has no line in {sums_file}")
        if sums[item["file"]][1] != item["sha256"]:
            raise FactoryError(f"{folder / item['file']}: SHA256SUMS and manifest.json disagree on its digest")
    for name in sorted(names):
        algorithm, digest = sums[name]
        if not (folder / name).is_file():
            raise FactoryError(f"{folder / name} is missing")
        actual = file_digest(folder / name, algorithm)
        if actual != digest:
            raise FactoryError(f"{folder / name}: expected sha256:{digest}, actual sha256:{actual}")
    return manifest


def verify(registry: Path, version: str | None = None) -> list[str]:
    """Check published versions (one, or all) against the index's manifest digest and SHA256SUMS."""
    index = read_index(registry)
    if version is not None:
        _known(index, version)
    checked = [version] if version else sorted(index["versions"])
    for name in checked:
        _verify_published(registry, index, name)
    return checked


def _verify_published(registry: Path, index: dict, version: str, formats: list[str] | None = None) -> dict:
    folder = registry / version
    manifest_file = folder / "manifest.json"
    if not folder.is_dir():
        raise FactoryError(f"{folder} is missing: {version} is in the index but its folder was deleted or moved")
    if not manifest_file.is_file():
        raise FactoryError(f"{manifest_file} is missing")
    recorded = index["versions"][version].get("manifest_sha256")
    if recorded and file_digest(manifest_file) != recorded:
        raise FactoryError(f"{manifest_file} does not match the digest the index recorded when {version} was published")
    return verify_folder(folder, formats)


def content_key(manifest: dict) -> dict:
    """What makes two builds of a version the same release: source, upstream and image bytes."""
    return {
        "commit": manifest["commit"],
        "upstream": manifest["upstream"]["sha256"],
        "formats": {fmt: entry["sha256"] for fmt, entry in manifest["formats"].items()},
    }


def entry(registry: Path, manifest: dict) -> ImageEntry:
    """The lookup-table entry for one version: what the `images` stack output carries. Its paths
    are relative to the project root when the registry lies inside it (see absolute_entry)."""
    folder = registry / manifest["version"]
    found: ImageEntry = {
        "version": manifest["version"],
        "commit": manifest["commit"],
        "build_time": manifest["build_time"],
        "upstream": manifest["upstream"],
        "dir": host.portable(folder),
        "formats": {
            fmt: {"path": host.portable(folder / item["file"]), "sha256": item["sha256"], "bytes": item["bytes"]}
            for fmt, item in sorted(manifest["formats"].items())
        },
    }
    if manifest.get("chain"):
        found["stage"] = manifest.get("stage", "")
        found["chain"] = manifest["chain"]
    sbom = manifest.get("packages", {}).get("sbom")
    if sbom:
        found["sbom"] = {"path": host.portable(folder / sbom["file"]), "sha256": sbom["sha256"], "bytes": sbom["bytes"]}
    return found


def absolute_entry(found: ImageEntry, root: Path) -> ImageEntry:
    """An entry with absolute paths, for readers outside the project (stack outputs, the CLI)."""
    if "dir" not in found:
        return found  # a native cloud build's entry has no files
    absolute = ImageEntry(**found)
    absolute["dir"] = str(root / found["dir"])
    absolute["formats"] = {
        fmt: FileEntry(path=str(root / item["path"]), sha256=item["sha256"], bytes=item["bytes"])
        for fmt, item in found["formats"].items()
    }
    if "sbom" in found:
        absolute["sbom"] = FileEntry(
            path=str(root / found["sbom"]["path"]), sha256=found["sbom"]["sha256"], bytes=found["sbom"]["bytes"]
        )
    return absolute


def publish(registry: Path, staging: Path, version: str) -> ImageEntry:
    manifest = verify_folder(staging)
    if manifest["version"] != version:
        raise FactoryError(f"{staging} holds {manifest['version']}, not {version}")
    with locked(registry):
        index = read_index(registry)
        target = registry / version
        recorded = read_ledger(registry).get(version)
        if recorded and not is_dev(version) and recorded["content"] != content_key(manifest):
            raise FactoryError(
                f"{version} was published before with different content (commit {recorded['content']['commit'][:12]}, "
                f"ledger {registry / LEDGER}); releases are immutable, even when their folder or the index is "
                "deleted: tag a new version instead"
            )
        if version in index["versions"] and target.is_dir():
            existing = json.loads((target / "manifest.json").read_text())
            if content_key(existing) == content_key(manifest):
                print(f"registry: {version} is already published with this content", file=sys.stderr)
                return entry(registry, existing)
            children = released_children(registry, version)
            if children:
                raise FactoryError(
                    f"stage {registry.name} {version} is the parent of {', '.join(children)}, published, and cannot "
                    "be replaced: commit the change (a new development version) or tag a release"
                )
            if not is_dev(version):
                raise FactoryError(
                    f"{version} is already published with different content (commit "
                    f"{existing['commit'][:12]}, upstream {existing['upstream']['sha256'][:12]}); releases are "
                    "immutable: tag a new version instead"
                )
        incoming = registry / f".{version}.incoming"
        shutil.rmtree(incoming, ignore_errors=True)
        shutil.copytree(staging, incoming, copy_function=_link_or_copy)
        for item in incoming.iterdir():
            item.chmod(0o444)  # published files are never written again
            fsync(item)
        fsync(incoming)
        if target.exists():
            retired = registry / f".{version}.replaced"
            shutil.rmtree(retired, ignore_errors=True)
            target.replace(retired)
            incoming.replace(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            incoming.replace(target)
        fsync(registry)
        _append_ledger(
            registry,
            {
                "version": version,
                "content": content_key(manifest),
                "manifest_sha256": file_digest(target / "manifest.json"),
            },
        )
        index["versions"][version] = {
            "commit": manifest["commit"],
            "build_time": manifest["build_time"],
            "upstream": manifest["upstream"],
            "formats": sorted(manifest["formats"]),
            "manifest_sha256": file_digest(target / "manifest.json"),
            "published_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        if manifest.get("stage_key"):
            index["versions"][version]["stage_key"] = manifest["stage_key"]
        write_index(registry, index)
    print(f"registry: published {version} in {target}", file=sys.stderr)
    return entry(registry, manifest)


def built_on(registry: Path, version: str, releases_only: bool = False) -> list[tuple[Path, str]]:
    """For a stage registry (<top>/stages/<stage>): every (registry, version) whose chain of
    custody names this version of the stage, at any depth: the top registry's images and the later
    stages' versions (only releases with releases_only); none for a top registry."""
    if registry.parent.name != "stages":
        return []
    top, stage = registry.parent.parent, registry.name
    children = []
    for where in [top, *sorted(p for p in registry.parent.iterdir() if p.is_dir() and p != registry)]:
        if not (where / "index.json").is_file():
            continue
        for name in sorted(read_index(where)["versions"]):
            manifest = where / name / "manifest.json"
            if (releases_only and is_dev(name)) or not manifest.is_file():
                continue
            chain = _read_json(manifest).get("chain", [])
            if any(link.get("stage") == stage and link.get("version") == version for link in chain[1:-1]):
                children.append((where, name))
    return children


def released_children(registry: Path, version: str) -> list[str]:
    """The releases built on this version of a stage: a development parent of a release never changes."""
    found = built_on(registry, version, releases_only=True)
    return [f"stage {where.name} {name}" if where.parent.name == "stages" else name for where, name in found]


def read_journal(path: Path) -> list[dict]:
    """An append-only JSON-lines history (channels, revocations): every record, oldest first."""
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise FactoryError(f"{path}:{number} is not a JSON object; the history is damaged")
        records.append(record)
    return records


def revocation(registry: Path, version: str) -> dict | None:
    """The first revocation record of `version` in the registry's journal (it survives a rebuilt index)."""
    return next((r for r in read_journal(registry / REVOCATIONS) if r.get("version") == version), None)


def check_not_revoked(registry: Path, version: str, allow: bool = False) -> None:
    """A revoked version is never handed out (lookups, parents), unless asked for explicitly."""
    record = revocation(registry, version)
    if record and not allow:
        raise FactoryError(
            f"{version} is revoked since {record['at']}: {record['reason']}; it must never be launched or built "
            "on again (--allow-revoked reads it anyway)"
        )


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
    with locked(registry):
        index = read_index(registry)
        _known(index, version)
        index["versions"][version]["deprecated"] = when
        write_index(registry, index)


def retire(registry: Path, version: str, missing_ok: bool = False) -> None:
    """Remove a version from the index and delete its files: an explicit lifecycle step.

    A release must be deprecated first; a development version may go at any time.
    """
    with locked(registry):
        index = read_index(registry)
        if version not in index["versions"] and missing_ok:
            return
        _known(index, version)
        from imagefactory.channels import channels  # channels builds on this module

        following = sorted(name for name, info in channels(registry).items() if info["version"] == version)
        if following:
            raise FactoryError(
                f"channel {', '.join(following)} points at {version}; promote the channel to another version "
                f"first (make promote CHANNEL={following[0]} VERSION=…), then retire {version}"
            )
        if not is_dev(version) and "deprecated" not in index["versions"][version]:
            raise FactoryError(
                f"{version} is a release that is not deprecated; deprecate it first "
                f"(make deprecate VERSION={version}), then retire it"
            )
        del index["versions"][version]
        write_index(registry, index)
        shutil.rmtree(registry / version, ignore_errors=True)


def check_not_moved(registry: Path, version: str, commit: str) -> None:
    """Refuse, before anything is built, a release whose tag now points at another commit."""
    published = read_index(registry)["versions"].get(version)
    if published is None and version in (ledger := read_ledger(registry)):
        published = ledger[version]["content"]
    if published and not is_dev(version) and published["commit"] != commit:
        raise FactoryError(
            f"tag {version} now points at {commit[:12]}, but {version} was published from "
            f"{published['commit'][:12]}; releases are immutable: move the tag back "
            f"(git tag -f {version} {published['commit'][:12]}) and publish the change as a new version"
        )


def published_manifest(registry: Path, version: str) -> dict | None:
    """The manifest of a published version; None when the version is not published (yet)."""
    manifest_file = registry / version / "manifest.json"
    if version not in read_index(registry)["versions"] or not manifest_file.is_file():
        return None
    return _read_json(manifest_file)


def check_release_settings(registry: Path, version: str, configured: dict[str, object]) -> None:
    """Refuse, at preview, a stack setting that would change a published release's content.

    `configured` maps config keys (diskSizeMiB, formats, imageName, ovaManifest) to the stack's values."""
    if is_dev(version) or version not in read_index(registry)["versions"]:
        return
    manifest_file = registry / version / "manifest.json"
    if not manifest_file.is_file():
        return  # verify and lookups report a missing folder; the ledger keeps the content
    manifest = _read_json(manifest_file)
    published = {
        "diskSizeMiB": manifest.get("disk_size_mib"),
        "formats": sorted(manifest.get("formats", {})),
        "imageName": manifest.get("name"),
        "ovaManifest": manifest["formats"]["ova"].get("manifest_digest", "sha256")
        if "ova" in manifest.get("formats", {})
        else None,
    }
    for key, value in configured.items():
        now = sorted(value) if isinstance(value, list | tuple) else value
        if published.get(key) is not None and published[key] != now:
            raise FactoryError(
                f"{version} was published with imagefactory:{key} {published[key]!r}, and the stack now says "
                f"{now!r}; a published release never changes: restore the value, or remove {version} from "
                "imagefactory:releases (it stays published) and publish the change as a new version"
            )


def _lookup(registry: Path, version: str, fmt: str | None, allow_revoked: bool = False) -> ImageEntry:
    index = read_index(registry)
    if version not in index["versions"]:
        available = ", ".join(sorted(index["versions"])) or "none"
        raise FactoryError(f"version {version} is not published; published versions: {available}")
    check_not_revoked(registry, version, allow_revoked)
    if not (registry / version).is_dir():
        raise FactoryError(
            f"{registry / version} is missing: {version} is in the index but its folder was deleted or moved"
        )
    manifest = _read_json(registry / version / "manifest.json")
    if fmt is not None and fmt not in manifest["formats"]:
        raise FactoryError(f"{version} has no {fmt} image; it has: {', '.join(sorted(manifest['formats']))}")
    _verify_published(registry, index, version, [fmt] if fmt else None)
    found = entry(registry, manifest)
    if "deprecated" in index["versions"][version]:
        print(
            f"registry: warning: {version} is deprecated since {index['versions'][version]['deprecated']}",
            file=sys.stderr,
        )
    return found


def lookup_entry(registry: Path, version: str, allow_revoked: bool = False) -> ImageEntry:
    """The published, verified entry of `version` (every file checked against its digest)."""
    return _lookup(registry, version, None, allow_revoked)


def lookup_file(registry: Path, version: str, fmt: str, allow_revoked: bool = False) -> FileEntry:
    """One published file of `version`, verified; the error lists the formats it has."""
    return _lookup(registry, version, fmt, allow_revoked)["formats"][fmt]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The on-disk registry of published image versions.")
    sub = parser.add_subparsers(dest="command", required=True)
    PublishRequest.parser(sub.add_parser("publish"))  # the pipeline's step: one contract (imagefactory.steps)
    for name in ("deprecate", "retire", "lookup", "list", "verify"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--registry", type=Path, required=True)
        if name == "verify":
            cmd.add_argument("--version", help="one version; all published versions when omitted")
        elif name != "list":
            cmd.add_argument("--version", required=True)
    sub.choices["retire"].add_argument(
        "--missing-ok", action="store_true", help="succeed when the version is already gone"
    )
    sub.choices["lookup"].add_argument("--format")
    sub.choices["lookup"].add_argument("--allow-revoked", action="store_true", help="read a revoked version anyway")
    args = parser.parse_args(argv)
    if args.command == "publish":  # the pipeline step: its ImageEntry is the last stdout line
        return run_step("registry", lambda: publish(args.registry, args.staging, args.version))
    return run_step("registry", lambda: command(args))


def command(args: argparse.Namespace) -> None:
    """The registry's commands for people (make lookup/verify/deprecate/retire)."""
    if args.command == "deprecate":
        deprecate(args.registry, args.version, dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        print(f"registry: {args.version} is deprecated", file=sys.stderr)
    elif args.command == "retire":
        retire(args.registry, args.version, args.missing_ok)
        print(f"registry: retired {args.version}", file=sys.stderr)
    elif args.command == "lookup":
        allow = args.allow_revoked
        if args.format:  # only that file is read and checked
            print(Path(lookup_file(args.registry, args.version, args.format, allow)["path"]).absolute())
        else:
            print(json.dumps(absolute_entry(lookup_entry(args.registry, args.version, allow), Path.cwd()), indent=2))
        from imagefactory.ancestry import status  # the ancestry status reads this module

        manifest = _read_json(args.registry / args.version / "manifest.json")  # checked by the lookup
        for note in status(args.registry, {"version": args.version, "chain": manifest.get("chain", [])}):
            print(f"registry: outdated: {note} (make ancestry VERSION={args.version})", file=sys.stderr)
    elif args.command == "verify":
        for version in verify(args.registry, args.version or None):
            print(f"{version}: every file matches SHA256SUMS and the manifest")
        stages = args.registry / "stages"
        for stage in sorted(stages.iterdir()) if not args.version and stages.is_dir() else []:
            for version in verify(stage, None):
                print(f"stage {stage.name} {version}: every file matches SHA256SUMS and the manifest")
    else:
        print("\n".join(sorted(read_index(args.registry)["versions"])))


if __name__ == "__main__":
    sys.exit(main())
