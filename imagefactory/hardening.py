"""Offline proof that an image carries the hardening it records.

The Ansible role `hardening` writes /etc/imagefactory/hardening.json: each enabled category and
its settings. This module reads that record and the files themselves from the disk (debugfs, no
mount) and returns one finding per setting that is not in effect. The seal check adds these
findings to its own, so an image whose hardening was skipped or undone is never released.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

RECORD = "/etc/imagefactory/hardening.json"
SYSCTL_FILE = "/etc/sysctl.d/99-zz-imagefactory-hardening.conf"
SUID_DUMP_FILE = "/etc/sysctl.d/99-zz-imagefactory-coredump.conf"
# Where systemd-sysctl reads, highest precedence first: a name in an earlier folder hides it later.
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
PWQUALITY_FILE = "/etc/security/pwquality.conf.d/60-imagefactory-hardening.conf"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/40-imagefactory-crypto.conf"
LIMITS_FILE = "/etc/security/limits.d/60-imagefactory-hardening.conf"
COREDUMP_FILE = "/etc/systemd/coredump.conf.d/60-imagefactory-hardening.conf"
SYSTEM_CONF_FILE = "/etc/systemd/system.conf.d/60-imagefactory-hardening.conf"
SETUID = 0o4000


class Entry(Protocol):
    mode: int


class Reader(Protocol):
    """What the check needs of a filesystem (imagefactory.debugfs.Filesystem)."""

    def read(self, path: str) -> bytes | None: ...

    def stat(self, path: str) -> Any: ...

    def listdir(self, path: str) -> Any: ...


Problem = tuple[str, str]
"""(path, what is wrong)."""


def _text(fs: Reader, path: str) -> str | None:
    data = fs.read(path)
    return None if data is None else data.decode(errors="replace")


def key_values(text: str, separator: str | None = None) -> dict[str, str]:
    """`key value` (or `key = value`) lines, comments and blanks skipped; the last one wins."""
    values = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if separator and separator in line:
            key, _, value = line.partition(separator)
        else:
            key, value = [*line.split(None, 1), ""][:2]
        values[key.strip().lstrip("-")] = value.strip()
    return values


def installed_packages(status: str) -> set[str]:
    """Names of the packages /var/lib/dpkg/status lists as installed."""
    installed, name = set(), ""
    for line in status.splitlines():
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1].strip()
        elif line.startswith("Status: ") and line.split()[-1] == "installed":
            installed.add(name)
    return installed


def _expect_values(fs: Reader, path: str, expected: dict[str, str], separator: str | None) -> list[Problem]:
    text = _text(fs, path)
    if text is None:
        return [(path, "missing")]
    found = key_values(text, separator)
    return [
        (path, f"{key} is {found.get(key)!r}, expected {str(value)!r}")
        for key, value in sorted(expected.items())
        if found.get(key) != str(value)
    ]


def effective_sysctl(fs: Reader) -> dict[str, tuple[str, str]]:
    """key -> (value, file) as systemd-sysctl applies them at boot: every *.conf of the sysctl.d
    folders (a name in /etc hides the same name below), in name order, the last value winning."""
    files: dict[str, str] = {}
    for folder in reversed(SYSCTL_DIRS):
        for entry in fs.listdir(folder) or []:
            if entry.name.endswith(".conf"):
                files[entry.name] = f"{folder}/{entry.name}"
    values: dict[str, tuple[str, str]] = {}
    for name in sorted(files):
        for key, value in key_values(_text(fs, files[name]) or "", "=").items():
            values[key] = (value, files[name])
    return values


def check_sysctl(fs: Reader, expected: dict[str, str]) -> list[Problem]:
    problems = _expect_values(fs, SYSCTL_FILE, expected, "=")
    if problems:
        return problems
    live = effective_sysctl(fs)
    return [
        (live[key][1], f"sets {key} = {live[key][0]} after {SYSCTL_FILE}, so the kernel gets that")
        for key, value in sorted(expected.items())
        if key in live and live[key][0] != str(value)
    ]


def check_login_defs(fs: Reader, expected: dict[str, str]) -> list[Problem]:
    return _expect_values(fs, "/etc/login.defs", expected, None)


def check_password_policy(fs: Reader, expected: dict[str, str]) -> list[Problem]:
    problems = _expect_values(fs, PWQUALITY_FILE, expected, "=")
    pam = _text(fs, "/etc/pam.d/common-password") or ""
    if not any("pam_pwquality.so" in line.split("#", 1)[0] for line in pam.splitlines()):
        problems.append(("/etc/pam.d/common-password", "does not use pam_pwquality.so"))
    return problems


def check_sshd_crypto(fs: Reader, expected: dict[str, str]) -> list[Problem]:
    """The drop-in sets them, and nothing sshd reads before it sets them otherwise (for each
    keyword, sshd keeps the first value it reads: sshd_config's Include comes first, then the
    drop-ins in name order)."""
    problems = _expect_values(fs, SSHD_DROPIN, expected, None)
    keys = {k.lower() for k in expected}
    main = _text(fs, "/etc/ssh/sshd_config") or ""
    before_include = main.split("Include", 1)[0]
    earlier = [("/etc/ssh/sshd_config", before_include)]
    for entry in sorted(fs.listdir("/etc/ssh/sshd_config.d") or [], key=lambda e: e.name):
        path = f"/etc/ssh/sshd_config.d/{entry.name}"
        if path == SSHD_DROPIN:
            break
        if entry.name.endswith(".conf"):
            earlier.append((path, _text(fs, path) or ""))
    for path, text in earlier:
        for key in sorted(k for k in key_values(text) if k.lower() in keys):
            problems.append((path, f"sets {key} before {SSHD_DROPIN}, so sshd uses it instead"))
    return problems


def check_core_dumps(fs: Reader, enabled: bool) -> list[Problem]:
    if not enabled:
        return []
    problems = []
    limits = _text(fs, LIMITS_FILE) or ""
    if not any(line.split() == ["*", "hard", "core", "0"] for line in limits.splitlines()):
        problems.append((LIMITS_FILE, "has no '* hard core 0'"))
    problems += _expect_values(fs, COREDUMP_FILE, {"Storage": "none", "ProcessSizeMax": "0"}, "=")
    problems += _expect_values(fs, SYSTEM_CONF_FILE, {"DefaultLimitCORE": "0"}, "=")
    problems += _expect_values(fs, SUID_DUMP_FILE, {"fs.suid_dumpable": "0"}, "=")
    live = effective_sysctl(fs).get("fs.suid_dumpable")
    if live and live[0] != "0":
        problems.append((live[1], f"sets fs.suid_dumpable = {live[0]} last, so setuid programs may dump core"))
    return problems


def check_removed_packages(fs: Reader, names: list[str]) -> list[Problem]:
    installed = installed_packages(_text(fs, "/var/lib/dpkg/status") or "")
    return [("/var/lib/dpkg/status", f"{name} is installed") for name in names if name in installed]


def check_setuid(fs: Reader, paths: list[str]) -> list[Problem]:
    problems = []
    for path in paths:
        entry = fs.stat(path)
        if entry is not None and entry.mode & SETUID:
            problems.append((path, f"still setuid (mode {entry.mode & 0o7777:o})"))
    return problems


CHECKS: dict[str, Callable[[Reader, Any], list[Problem]]] = {
    "sysctl": check_sysctl,
    "login_defs": check_login_defs,
    "password_policy": check_password_policy,
    "sshd_crypto": check_sshd_crypto,
    "core_dumps": check_core_dumps,
    "remove_packages": check_removed_packages,
    "setuid_remove": check_setuid,
}


def check(fs: Reader) -> list[tuple[str, str, str]]:
    """(category, path, problem) for every recorded setting not in effect on the disk."""
    text = _text(fs, RECORD)
    if text is None:
        return [("record", RECORD, "missing: the hardening role did not run")]
    try:
        record = json.loads(text)
    except ValueError as exc:
        return [("record", RECORD, f"not JSON: {exc}")]
    unknown = sorted(set(record) - set(CHECKS))
    problems = [("record", RECORD, f"unknown category {name!r}") for name in unknown]
    for category, run in CHECKS.items():
        settings = record.get(category)
        if settings in (None, False):
            continue  # switched off in the role, and recorded as such
        problems += [(category, path, problem) for path, problem in run(fs, settings)]
    return problems
