"""Seal check: every leftover of the build is a named finding; a sealed disk has none."""

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imagefactory import sealcheck
from imagefactory.debugfs import Filesystem
from imagefactory.gpt import root_partition
from tests.unit.conftest import SEALED_FILES

Factory = Callable[[dict[str, str | bytes]], Path]


def checks(disk: Path, version: str = "release-0.1.0") -> set[tuple[str, str]]:
    return {(f.check, f.path) for f in sealcheck.check_disk(disk, version)}


def test_a_sealed_disk_has_no_findings(disk_factory: Factory) -> None:
    assert sealcheck.check_disk(disk_factory(SEALED_FILES), "release-0.1.0") == []


@pytest.mark.parametrize(
    ("path", "content", "finding"),
    [
        ("/etc/ssh/ssh_host_ed25519_key", "PRIVATE", ("ssh-hostkeys", "/etc/ssh/ssh_host_ed25519_key")),
        ("/etc/machine-id", "0123456789abcdef0123456789abcdef\n", ("machine-id", "/etc/machine-id")),
        ("/var/lib/systemd/random-seed", "seed", ("random-seed", "/var/lib/systemd/random-seed")),
        (
            "/var/lib/systemd/timers/stamp-apt-daily.timer",
            "",
            ("timer-stamps", "/var/lib/systemd/timers/stamp-apt-daily.timer"),
        ),
        ("/etc/udev/rules.d/70-persistent-net.rules", "x", ("net-hwaddr", "/etc/udev/rules.d/70-persistent-net.rules")),
        (
            "/etc/systemd/network/10-cloud-init-ens3.link",
            "[Match]",
            ("net-hwaddr", "/etc/systemd/network/10-cloud-init-ens3.link"),
        ),
        ("/var/lib/dhcp/dhclient.ens3.leases", "lease", ("dhcp-client-state", "/var/lib/dhcp/dhclient.ens3.leases")),
        ("/var/log/journal/abc/system.journal", "j", ("logfiles", "/var/log/journal/abc/system.journal")),
        ("/var/log/apt/history.log", "Start-Date", ("logfiles", "/var/log/apt/history.log")),
        ("/root/.bash_history", "ls", ("bash-history", "/root/.bash_history")),
        ("/home/imagebuild/.ssh/authorized_keys", "ssh-ed25519 AAAA", ("user-account", "/home/imagebuild")),
        ("/var/lib/cloud/instance/obj.pkl", "x", ("cloud-init-state", "/var/lib/cloud/instance")),
        (
            "/etc/sudoers.d/90-cloud-init-users",
            "imagebuild ALL",
            ("user-account", "/etc/sudoers.d/90-cloud-init-users"),
        ),
        ("/etc/shadow-", "root:*:1::::::", ("passwd-backups", "/etc/shadow-")),
        ("/root/.ansible/tmp/x", "x", ("provisioner-leftovers", "/root/.ansible")),
        (
            "/usr/local/sbin/image-seal-final",
            "#!/bin/sh",
            ("provisioner-leftovers", "/usr/local/sbin/image-seal-final"),
        ),
        ("/tmp/packer-upload", "x", ("tmp-files", "/tmp/packer-upload")),
        (
            "/var/cache/apt/archives/x_1_amd64.deb",
            "deb",
            ("package-manager-cache", "/var/cache/apt/archives/x_1_amd64.deb"),
        ),
    ],
)
def test_each_leftover_is_a_named_finding(
    disk_factory: Factory, path: str, content: str, finding: tuple[str, str]
) -> None:
    disk = disk_factory({**SEALED_FILES, path: content})
    assert finding in checks(disk)


def test_the_build_user_in_passwd_is_a_finding(disk_factory: Factory) -> None:
    passwd = str(SEALED_FILES["/etc/passwd"]) + "imagebuild:x:1000:1000::/home/imagebuild:/bin/bash\n"
    assert ("user-account", "/etc/passwd") in checks(disk_factory({**SEALED_FILES, "/etc/passwd": passwd}))


def test_a_wrong_or_missing_release_stamp_is_a_finding(disk_factory: Factory) -> None:
    disk = disk_factory(SEALED_FILES)
    assert ("release-stamp", "/etc/release") in checks(disk, "release-0.2.0")
    files = dict(SEALED_FILES)
    del files["/etc/release"]
    assert ("release-stamp", "/etc/release") in checks(disk_factory(files))


def test_a_key_planted_in_a_copy_of_a_sealed_disk_is_caught(disk_factory: Factory, tmp_path: Path) -> None:
    disk = disk_factory(SEALED_FILES)
    key = tmp_path / "planted"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    Filesystem(disk, root_partition(disk).offset, writable=True).write(key, "/etc/ssh/ssh_host_ed25519_key")
    assert ("ssh-hostkeys", "/etc/ssh/ssh_host_ed25519_key") in checks(disk)


def test_the_command_line_exits_non_zero_and_names_each_finding(disk_factory: Factory, capsys) -> None:
    disk = disk_factory({**SEALED_FILES, "/root/.bash_history": "ls"})
    assert sealcheck.main([str(disk), "--version", "release-0.1.0"]) == 1
    err = capsys.readouterr().err
    assert "bash-history: /root/.bash_history" in err and "release is blocked" in err


def test_a_missing_disk_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert sealcheck.main([str(tmp_path / "nope.raw"), "--version", "release-0.1.0"]) == 2
    assert "does not exist" in capsys.readouterr().err
