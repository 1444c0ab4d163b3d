"""Fixtures for unit tests: small real disk images, made without root or mounts."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
DISK_MIB = 40
REPO = Path(__file__).resolve().parents[2]


def make_gpt_disk(folder: Path, files: dict[str, str | bytes], modes: dict[str, int] | None = None) -> Path:
    """A 40 MiB GPT disk: a small ESP-typed partition and an ext4 root holding `files` (with
    `modes` for some of them: mke2fs -d copies them, setuid bits included)."""
    tree = folder / "tree"
    for rel, content in files.items():
        path = tree / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    for rel, mode in (modes or {}).items():
        (tree / rel.lstrip("/")).chmod(mode)
    tree.mkdir(exist_ok=True)
    root = folder / "root.img"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(tree), str(root), f"{DISK_MIB - 10}M"], check=True)
    disk = folder / "disk.raw"
    subprocess.run(["truncate", "-s", f"{DISK_MIB}M", str(disk)], check=True)
    table = (
        "label: gpt\nunit: sectors\n"
        "start=2048, size=14336, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
        f"start=16384, size={(DISK_MIB - 10) * 2048}, type={ROOT_TYPE}\n"
    )
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(disk)], input=table.encode(), check=True)
    subprocess.run(
        ["dd", f"if={root}", f"of={disk}", "bs=1M", "seek=8", "conv=notrunc,sparse", "status=none"], check=True
    )
    return disk


SEALED_FILES: dict[str, str | bytes] = {
    "/etc/machine-id": "",
    "/etc/release": "IMAGE_VERSION=release-0.1.0\nIMAGE_COMMIT=abc\n",
    "/etc/os-release": 'NAME="Debian GNU/Linux"\nIMAGE_VERSION=release-0.1.0\n',
    "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\nappsvc:x:999:999::/srv/appsvc:/usr/sbin/nologin\n",
    "/etc/ssh/sshd_config": "PermitRootLogin no\n",
    "/var/log/apt/history.log": "",
    "/root/.profile": "# profile\n",
}


def hardened_files() -> dict[str, str]:
    """The files the hardening role writes with its defaults (ansible/roles/hardening), as its
    templates render them: what a hardened image holds."""
    defaults = yaml.safe_load((REPO / "ansible" / "roles" / "hardening" / "defaults" / "main.yml").read_text())
    sshd = {
        "KexAlgorithms": defaults["hardening_sshd_kex"],
        "Ciphers": defaults["hardening_sshd_ciphers"],
        "MACs": defaults["hardening_sshd_macs"],
    }
    record = {
        "sysctl": defaults["hardening_sysctl"],
        "login_defs": defaults["hardening_login_defs"],
        "password_policy": defaults["hardening_pwquality"],
        "sshd_crypto": sshd,
        "core_dumps": True,
        "remove_packages": defaults["hardening_remove_packages"],
        "setuid_remove": defaults["hardening_setuid_remove"],
    }
    pwquality = "".join(f"{k} = {v}\n" if v else f"{k}\n" for k, v in sorted(defaults["hardening_pwquality"].items()))
    return {
        "/etc/imagefactory/hardening.json": json.dumps(record, indent=4, sort_keys=True),
        "/etc/sysctl.d/99-zz-imagefactory-hardening.conf": "".join(
            f"-{k} = {v}\n" for k, v in sorted(defaults["hardening_sysctl"].items())
        ),
        "/etc/sysctl.d/99-zz-imagefactory-coredump.conf": "fs.suid_dumpable = 0\n",
        "/etc/login.defs": "# login.defs\nMAIL_DIR        /var/mail\n"
        + "".join(f"{k}\t{v}\n" for k, v in defaults["hardening_login_defs"].items()),
        "/etc/security/pwquality.conf.d/60-imagefactory-hardening.conf": pwquality,
        "/etc/pam.d/common-password": "password requisite pam_pwquality.so retry=3\n",
        "/etc/ssh/sshd_config.d/40-imagefactory-crypto.conf": "".join(f"{k} {v}\n" for k, v in sshd.items()),
        "/etc/security/limits.d/60-imagefactory-hardening.conf": "*\thard\tcore\t0\n*\tsoft\tcore\t0\n",
        "/etc/systemd/coredump.conf.d/60-imagefactory-hardening.conf": "[Coredump]\nStorage=none\nProcessSizeMax=0\n",
        "/etc/systemd/system.conf.d/60-imagefactory-hardening.conf": "[Manager]\nDefaultLimitCORE=0\n",
        "/var/lib/dpkg/status": "Package: openssh-server\nStatus: install ok installed\n\n"
        "Package: telnet\nStatus: deinstall ok config-files\n",
        "/usr/bin/chfn": "binary",
    }


SEALED_FILES.update(hardened_files())


@pytest.fixture
def disk_factory(tmp_path: Path) -> Callable[[dict[str, str | bytes]], Path]:
    counter = iter(range(1000))

    def factory(files: dict[str, str | bytes], modes: dict[str, int] | None = None) -> Path:
        folder = tmp_path / f"disk{next(counter)}"
        folder.mkdir()
        return make_gpt_disk(folder, files, modes)

    return factory
