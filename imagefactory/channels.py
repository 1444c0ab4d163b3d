"""Channels and revocation in the on-disk registry (no Pulumi here).

A channel is a named pointer (`stable`, `candidate`, ...) that moves between published versions;
application stacks follow it instead of pinning a version. Revocation says "never launch this
version again", which is stronger than deprecation ("stop using it soon").

Layout, beside the registry's index:
    <registry>/channels.jsonl      append-only: every promotion (channel, version, from, at, by)
    <registry>/revocations.jsonl   append-only: every revocation (version, reason, at, by, because)

The index carries the current state (`revoked` on a version) for the lookups; the two journals
are the history, and survive a rebuilt index. Both are fsynced before the index is replaced.

    python -m imagefactory.channels promote --registry R --channel stable --version V [--dev]
    python -m imagefactory.channels list    --registry R [--json]
    python -m imagefactory.channels revoke  --registry R --version V --reason TEXT
    python -m imagefactory.channels resolve --registry R --channel stable
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import re
import sys
from pathlib import Path

from imagefactory import registry as reg
from imagefactory.errors import FactoryError, run_step
from imagefactory.files import fsync

CHANNELS = "channels.jsonl"
CHANNEL_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{os.uname().nodename}"


def _append(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    fsync(path.parent)


def check_channel_name(channel: str) -> str:
    if not CHANNEL_NAME.fullmatch(channel):
        raise FactoryError(
            f"channel {channel!r} is not a channel name; accepted: a lower-case letter, then up to 39 "
            "lower-case letters, digits or '-' (e.g. stable, candidate, dev)"
        )
    return channel


def channels(registry: Path) -> dict[str, dict]:
    """Each channel's current version, whether it is a dev channel, and its whole history."""
    found: dict[str, dict] = {}
    for record in reg.read_journal(registry / CHANNELS):
        name = record.get("channel", "")
        entry = found.setdefault(name, {"version": None, "dev": False, "history": []})
        entry["history"].append(record)
        entry["version"] = record.get("version")
        entry["dev"] = entry["dev"] or bool(record.get("dev"))
        entry["since"] = record.get("at")
    return found


def revocations(registry: Path) -> dict[str, dict]:
    """The revocation record of each revoked version (the journal; the index mirrors it)."""
    return {r["version"]: r for r in reversed(reg.read_journal(registry / reg.REVOCATIONS)) if "version" in r}


def promote(registry: Path, channel: str, version: str, *, dev: bool = False, at: str = "", by: str = "") -> dict:
    """Point `channel` at a published `version`; the promotion is appended to the history.

    Refused: a version that is not published (or retired), a revoked one, and a development
    version on a channel that is not a dev channel (`dev` marks a channel as one, for good)."""
    check_channel_name(channel)
    with reg.locked(registry):
        index = reg.read_index(registry)
        if version not in index["versions"]:
            published = ", ".join(sorted(index["versions"])) or "none"
            raise FactoryError(
                f"{version} is not published (or was retired), so channel {channel} cannot point at it; "
                f"published versions: {published}"
            )
        reg.check_not_revoked(registry, version)
        current = channels(registry).get(channel, {"version": None, "dev": False})
        is_dev_channel = current["dev"] or dev
        if reg.is_dev(version) and not is_dev_channel:
            raise FactoryError(
                f"{version} is a development version and channel {channel} is not a dev channel; promote a "
                "release, or mark the channel as a dev channel (make promote ... DEV=1; it stays one)"
            )
        record = {
            "channel": channel,
            "version": version,
            "from": current["version"],
            "at": at or now(),
            "by": by or who(),
            "dev": is_dev_channel,
        }
        _append(registry / CHANNELS, record)
        return record


def revoke(registry: Path, version: str, reason: str, *, at: str = "", by: str = "") -> list[tuple[Path, str]]:
    """Revoke `version` and every version built on it (a base's children in the top registry);
    returns each (registry, version) revoked.

    Revoking twice keeps the first record. The reason is required: it is what an application's
    preview shows."""
    if not reason.strip():
        raise FactoryError("REASON is empty; say why the version must never be launched again")
    targets = [(registry, version), *reg.built_on(registry, version)]
    done = []
    for where, name in targets:
        with reg.locked(where):
            index = reg.read_index(where)
            if name not in index["versions"]:
                published = ", ".join(sorted(index["versions"])) or "none"
                raise FactoryError(f"{name} is not published in {where}; published versions: {published}")
            if reg.revocation(where, name):
                continue
            record = {
                "version": name,
                "reason": reason.strip(),
                "at": at or now(),
                "by": by or who(),
                "because": None if (where, name) == (registry, version) else f"{registry.name} {version}",
            }
            _append(where / reg.REVOCATIONS, record)
            index["versions"][name]["revoked"] = {"at": record["at"], "reason": record["reason"]}
            reg.write_index(where, index)
            done.append((where, name))
    return done


def resolve(registry: Path, channel: str, allow_revoked: bool = False) -> str:
    """The version a channel points at now; a revoked one is refused with its reason."""
    check_channel_name(channel)
    known = channels(registry)
    if channel not in known:
        raise FactoryError(f"channel {channel} does not exist; channels: {', '.join(sorted(known)) or 'none'}")
    version = known[channel]["version"]
    try:
        reg.check_not_revoked(registry, version, allow_revoked)
    except FactoryError as exc:
        raise FactoryError(f"channel {channel} points at {exc}; promote it to another version") from None
    return version


def summary(registry: Path) -> dict[str, dict]:
    """What the image stack exports as `channels`: each channel's version, whether that version is
    revoked, and its history (oldest first)."""
    return {
        name: {
            "version": info["version"],
            "since": info["since"],
            "dev": info["dev"],
            "revoked": bool(reg.revocation(registry, info["version"])),
            "history": [
                {key: record.get(key) for key in ("from", "version", "at", "by")} for record in info["history"]
            ],
        }
        for name, info in sorted(channels(registry).items())
    }


def describe(registry: Path) -> str:
    lines = []
    for name, info in sorted(channels(registry).items()):
        state = " (revoked)" if reg.revocation(registry, info["version"]) else ""
        kind = " [dev channel]" if info["dev"] else ""
        lines.append(f"{name}{kind}: {info['version']}{state} since {info['since']}")
        for record in info["history"]:
            lines.append(f"  {record['at']}  {record['from'] or '-'} -> {record['version']}  by {record['by']}")
    return "\n".join(lines) or "no channels yet (make promote CHANNEL=stable VERSION=release-X.Y.Z)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Channels and revocation of published image versions.")
    parser.add_argument("--registry", type=Path, required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("promote")
    cmd.add_argument("--channel", required=True)
    cmd.add_argument("--version", required=True)
    cmd.add_argument("--dev", action="store_true", help="mark the channel as a dev channel")
    sub.add_parser("list").add_argument("--json", action="store_true")
    cmd = sub.add_parser("revoke")
    cmd.add_argument("--version", required=True)
    cmd.add_argument("--reason", required=True)
    cmd.add_argument("--stage", help="a parent stage's version (its registry under stages/)")
    cmd = sub.add_parser("resolve")
    cmd.add_argument("--channel", required=True)
    cmd.add_argument("--allow-revoked", action="store_true")
    args = parser.parse_args(argv)
    return run_step("channels", lambda: command(args))


def command(args: argparse.Namespace) -> None:
    if args.command == "promote":
        record = promote(args.registry, args.channel, args.version, dev=args.dev)
        print(f"channels: {record['channel']}: {record['from'] or '-'} -> {record['version']}", file=sys.stderr)
    elif args.command == "list":
        if args.json:
            print(json.dumps(channels(args.registry), indent=2, sort_keys=True))
        else:
            print(describe(args.registry))
    elif args.command == "revoke":
        where = args.registry / "stages" / args.stage if args.stage else args.registry
        for registry, version in revoke(where, args.version, args.reason):
            label = f"stage {registry.name} " if registry.parent.name == "stages" else ""
            print(f"channels: revoked {label}{version}: {args.reason}", file=sys.stderr)
    else:
        print(resolve(args.registry, args.channel, args.allow_revoked))


if __name__ == "__main__":
    sys.exit(main())
