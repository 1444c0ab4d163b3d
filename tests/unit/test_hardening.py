"""The offline hardening check: every recorded setting must be in effect on the disk; a setting
that is missing, changed or overridden is a finding that names the file and the value."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from imagefactory import hardening, sealcheck
from imagefactory.debugfs import Filesystem
from imagefactory.gpt import root_partition
from tests.unit.conftest import SEALED_FILES, hardened_files

Factory = Callable[..., Path]


def problems(disk: Path) -> set[tuple[str, str]]:
    fs = Filesystem(disk, root_partition(disk).offset)
    return {(category, path) for category, path, _ in hardening.check(fs)}


def test_the_role_defaults_as_rendered_pass(disk_factory: Factory) -> None:
    assert problems(disk_factory(hardened_files())) == set()


@pytest.mark.parametrize(
    ("path", "content", "expected"),
    [
        (
            "/etc/sysctl.d/99-zz-imagefactory-hardening.conf",
            "-kernel.kptr_restrict = 0\n",
            ("sysctl", "/etc/sysctl.d/99-zz-imagefactory-hardening.conf"),
        ),
        (
            "/usr/lib/sysctl.d/99-zzz-vendor.conf",
            "fs.protected_fifos = 1\n",
            ("sysctl", "/usr/lib/sysctl.d/99-zzz-vendor.conf"),
        ),
        (
            "/usr/lib/sysctl.d/99-zzz-coredump.conf",
            "fs.suid_dumpable = 2\n",
            ("core_dumps", "/usr/lib/sysctl.d/99-zzz-coredump.conf"),
        ),
        ("/etc/login.defs", "UMASK 022\n", ("login_defs", "/etc/login.defs")),
        (
            "/etc/pam.d/common-password",
            "password [success=1] pam_unix.so\n",
            ("password_policy", "/etc/pam.d/common-password"),
        ),
        (
            "/etc/ssh/sshd_config.d/10-vendor.conf",
            "Ciphers aes128-cbc\n",
            ("sshd_crypto", "/etc/ssh/sshd_config.d/10-vendor.conf"),
        ),
        (
            "/etc/systemd/coredump.conf.d/60-imagefactory-hardening.conf",
            "[Coredump]\nStorage=external\n",
            ("core_dumps", "/etc/systemd/coredump.conf.d/60-imagefactory-hardening.conf"),
        ),
        (
            "/var/lib/dpkg/status",
            "Package: telnet\nStatus: install ok installed\n",
            ("remove_packages", "/var/lib/dpkg/status"),
        ),
    ],
)
def test_each_category_names_what_is_not_in_effect(
    disk_factory: Factory, path: str, content: str, expected: tuple[str, str]
) -> None:
    assert expected in problems(disk_factory({**hardened_files(), path: content}))


def test_a_setuid_bit_the_role_removes_is_a_finding(disk_factory: Factory) -> None:
    disk = disk_factory(hardened_files(), {"/usr/bin/chfn": 0o4755})
    assert ("setuid_remove", "/usr/bin/chfn") in problems(disk)


def test_a_switched_off_category_is_not_checked(disk_factory: Factory) -> None:
    files = hardened_files()
    record = json.loads(files["/etc/imagefactory/hardening.json"])
    record["sysctl"] = None
    files["/etc/imagefactory/hardening.json"] = json.dumps(record)
    del files["/etc/sysctl.d/99-zz-imagefactory-hardening.conf"]
    assert problems(disk_factory(files)) == set()


def test_an_image_without_the_record_is_not_released(disk_factory: Factory) -> None:
    files = dict(SEALED_FILES)
    del files["/etc/imagefactory/hardening.json"]
    findings = sealcheck.check_disk(disk_factory(files), "release-0.1.0")
    assert [(f.check, f.path) for f in findings] == [("hardening-record", "/etc/imagefactory/hardening.json")]


def test_login_defs_values_are_read_as_sshd_and_login_read_them() -> None:
    text = "# PASS_MAX_DAYS 1\nPASS_MAX_DAYS\t365\nUMASK\t\t027\nENV_PATH PATH=/usr/bin:/bin\n"
    assert hardening.key_values(text) == {"PASS_MAX_DAYS": "365", "UMASK": "027", "ENV_PATH": "PATH=/usr/bin:/bin"}
    assert hardening.key_values("-net.ipv4.tcp_syncookies = 1\n", "=") == {"net.ipv4.tcp_syncookies": "1"}
