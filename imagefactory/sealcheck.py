"""Offline seal check: prove that a built disk carries nothing of the machine that built it.

The check reads the root filesystem of the RAW disk with debugfs (no mount, no root) and
reports one finding per leftover. Any finding fails the release.

    python -m imagefactory.sealcheck <disk.raw> --version <v> [--build-user imagebuild] [--json]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from imagefactory import bootchain, hardening
from imagefactory.debugfs import Filesystem
from imagefactory.errors import FactoryError
from imagefactory.files import write_atomic
from imagefactory.gpt import root_partition
from imagefactory.stamp import parse_stamp
from imagefactory.steps import SealCheckRequest, SealReport


@dataclass(frozen=True)
class Finding:
    check: str
    """The virt-sysprep style operation that should have removed it."""
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.path}: {self.detail}"


def _absent(fs: Filesystem, check: str, paths: list[str]) -> list[Finding]:
    return [Finding(check, p, "still present") for p in paths if fs.stat(p) is not None]


def _no_match(fs: Filesystem, check: str, directory: str, patterns: list[str]) -> list[Finding]:
    return [
        Finding(check, f"{directory}/{e.name}", "still present")
        for e in fs.listdir(directory) or []
        if any(fnmatch.fnmatch(e.name, pattern) for pattern in patterns)
    ]


def _homes(fs: Filesystem) -> list[str]:
    return ["/root"] + [f"/home/{e.name}" for e in fs.listdir("/home") or [] if e.is_dir]


def check_filesystem(fs: Filesystem, version: str, build_user: str) -> list[Finding]:
    findings: list[Finding] = []
    findings += _no_match(fs, "ssh-hostkeys", "/etc/ssh", ["ssh_host_*"])

    machine_id = fs.stat("/etc/machine-id")
    if machine_id is None:
        findings.append(Finding("machine-id", "/etc/machine-id", "missing (policy: present and empty)"))
    elif machine_id.size != 0:
        findings.append(Finding("machine-id", "/etc/machine-id", f"not empty ({machine_id.size} bytes)"))
    dbus_id = fs.stat("/var/lib/dbus/machine-id")
    if dbus_id is not None and dbus_id.is_file and dbus_id.size:
        findings.append(Finding("machine-id", "/var/lib/dbus/machine-id", "not empty"))

    findings += _absent(fs, "random-seed", ["/var/lib/systemd/random-seed", "/var/lib/urandom/random-seed"])
    # A persistent timer's stamp holds the build's last run as its time; a machine (or the next
    # stage's build) booted later takes every run since as missed and starts them all at once.
    findings += _no_match(fs, "timer-stamps", "/var/lib/systemd/timers", ["stamp-*"])
    findings += _absent(
        fs,
        "net-hwaddr",
        [
            "/etc/udev/rules.d/70-persistent-net.rules",
            "/etc/network/interfaces.d/50-cloud-init",
            "/etc/netplan/50-cloud-init.yaml",
        ],
    )
    findings += _no_match(fs, "net-hwaddr", "/etc/systemd/network", ["*cloud-init*"])
    findings += _no_match(fs, "dhcp-client-state", "/var/lib/dhcp", ["*.leases", "*.lease"])

    for path, entry in fs.walk("/var/log/journal"):
        if entry.is_file:
            findings.append(Finding("logfiles", path, "journal file of the build"))
    for path, entry in fs.walk("/var/log"):
        if entry.is_file and entry.size and not path.startswith("/var/log/journal/"):
            findings.append(Finding("logfiles", path, f"log not emptied ({entry.size} bytes)"))

    for home in _homes(fs):
        findings += _no_match(fs, "bash-history", home, [".bash_history", ".python_history", ".lesshst", ".viminfo"])
        findings += _absent(fs, "ssh-userdir", [f"{home}/.ssh/authorized_keys"])
        findings += _absent(fs, "provisioner-leftovers", [f"{home}/.ansible"])

    findings += _absent(
        fs, "cloud-init-state", ["/var/lib/cloud/instance", "/var/lib/cloud/instances", "/var/lib/cloud/sem"]
    )
    findings += _absent(
        fs,
        "user-account",
        [f"/home/{build_user}", "/etc/sudoers.d/90-cloud-init-users", f"/var/mail/{build_user}"],
    )
    for account_file in ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"):
        content = fs.read(account_file) or b""
        for line in content.decode(errors="replace").splitlines():
            if line.split(":", 1)[0] == build_user:
                findings.append(Finding("user-account", account_file, f"still lists the build user {build_user}"))
    findings += _absent(fs, "passwd-backups", ["/etc/passwd-", "/etc/shadow-", "/etc/group-", "/etc/gshadow-"])
    findings += _absent(fs, "provisioner-leftovers", ["/usr/local/sbin/image-seal-final"])
    for directory in ("/tmp", "/var/tmp"):  # noqa: S108 - folders inside the image, read offline
        for entry in fs.listdir(directory) or []:
            findings.append(Finding("tmp-files", f"{directory}/{entry.name}", "temporary file left behind"))
    findings += _no_match(fs, "package-manager-cache", "/var/cache/apt/archives", ["*.deb"])
    findings += _no_match(fs, "package-manager-cache", "/var/lib/apt/lists", ["*_Packages*", "*_Release*"])

    findings += check_stamp(fs, version)
    findings += [Finding(f"hardening-{category}", path, problem) for category, path, problem in hardening.check(fs)]
    return findings


def check_stamp(fs: Filesystem, version: str) -> list[Finding]:
    findings = []
    release = fs.read("/etc/release")
    if release is None:
        return [Finding("release-stamp", "/etc/release", "missing")]
    stamped = parse_stamp(release.decode(errors="replace")).get("IMAGE_VERSION")
    if stamped != version:
        findings.append(Finding("release-stamp", "/etc/release", f"IMAGE_VERSION is {stamped!r}, expected {version!r}"))
    os_release = parse_stamp((fs.read("/etc/os-release") or b"").decode(errors="replace"))
    if os_release.get("IMAGE_VERSION") != version:
        findings.append(
            Finding(
                "release-stamp",
                "/etc/os-release",
                f"IMAGE_VERSION is {os_release.get('IMAGE_VERSION')!r}, expected {version!r}",
            )
        )
    return findings


def check_disk(disk: Path, version: str, build_user: str = "imagebuild") -> list[Finding]:
    root = root_partition(disk)
    findings = check_filesystem(Filesystem(disk, root.offset), version, build_user)
    return findings + [Finding(check, where, problem) for check, where, problem in bootchain.check(disk)]


def main(argv: list[str] | None = None) -> int:
    parser = SealCheckRequest.parser(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--build-user", default="imagebuild")
    parsed = parser.parse_args(argv)
    args = SealCheckRequest.from_namespace(parsed, {})
    try:
        if not args.disk.is_file():
            raise FactoryError(f"disk {args.disk} does not exist")
        findings = check_disk(args.disk, args.version, parsed.build_user)
    except FactoryError as exc:
        print(f"seal check: {exc}", file=sys.stderr)
        return 2
    report = SealReport(
        disk=str(args.disk), version=args.version, sealed=not findings, findings=[asdict(f) for f in findings]
    )
    if args.report:
        write_atomic(args.report, json.dumps(report.to_json(), indent=2) + "\n")
    for finding in findings:
        print(f"seal check FAILED: {finding}", file=sys.stderr)
    if findings:
        print(f"seal check: {len(findings)} finding(s); the release is blocked", file=sys.stderr)
        return 1
    print(json.dumps(report.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
