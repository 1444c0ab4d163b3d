"""Fixtures for unit tests: small real disk images, made without root or mounts."""

from __future__ import annotations

import json
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
DISK_MIB = 40
REPO = Path(__file__).resolve().parents[2]


ROOT_UUID = "6f2d7c3e-5a41-4f0b-9d7e-1c2b3a4d5e6f"
BIOS_START = 34


def fake_efi_binary(mark: bytes, signer: bytes) -> bytes:
    """A PE32+ file with `mark` in its body and `signer` in its certificate table: the shape the
    boot-chain check reads (it checks no signature cryptographically)."""
    header = bytearray(0x200)
    header[:2] = b"MZ"
    struct.pack_into("<I", header, 0x3C, 0x80)
    header[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<H", header, 0x80 + 24, 0x20B)
    body = mark + bytes(16)
    certificate = b"0\x82" + signer + bytes(8)
    struct.pack_into("<II", header, 0x80 + 24 + 112 + 32, len(header) + len(body), len(certificate))
    return bytes(header) + body + certificate


def write_boot_chain(folder: Path, disk: Path, esp_kib: int) -> None:
    """What the stage-0 recipe gives a disk, in miniature: GRUB's boot code in the protective MBR
    pointing at a core image in the BIOS boot partition, and the ESP with shim, GRUB and grub.cfg."""
    esp = folder / "esp.img"
    subprocess.run(["mkfs.vfat", "-C", str(esp), str(esp_kib)], check=True, capture_output=True)
    (folder / "grub.cfg").write_text(f"search --no-floppy --fs-uuid --set=root {ROOT_UUID}\nlinux /vmlinuz\n")
    (folder / "BOOTX64.EFI").write_bytes(fake_efi_binary(b"UEFI SHIM", b"Microsoft Corporation UEFI CA 2011"))
    (folder / "grubx64.efi").write_bytes(fake_efi_binary(b"GRUB", b"Debian Secure Boot Signer 2022"))
    subprocess.run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], check=True)
    for name in ("BOOTX64.EFI", "grubx64.efi", "grub.cfg"):
        subprocess.run(["mcopy", "-i", str(esp), str(folder / name), f"::/EFI/BOOT/{name}"], check=True)
    subprocess.run(["dd", f"if={esp}", f"of={disk}", "bs=1M", "seek=1", "conv=notrunc", "status=none"], check=True)
    with open(disk, "r+b") as handle:
        boot = bytearray(440)
        boot[0x180:0x184] = b"GRUB"
        struct.pack_into("<Q", boot, 0x5C, BIOS_START)
        handle.write(boot)
        core = bytearray(4 * 512)
        struct.pack_into("<QHH", core, 512 - 12, BIOS_START + 1, 3, 0x820)
        core[512:520] = b"GRUBcore"
        handle.seek(BIOS_START * 512)
        handle.write(core)


def make_gpt_disk(
    folder: Path, files: dict[str, str | bytes], modes: dict[str, int] | None = None, boot_chain: bool = True
) -> Path:
    """A 40 MiB GPT disk: a BIOS boot partition, a small ESP and an ext4 root holding `files` (with
    `modes` for some of them: mke2fs -d copies them, setuid bits included), and (`boot_chain`) a
    hybrid boot chain in miniature."""
    tree = folder / "tree"
    for rel, content in files.items():
        path = tree / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    for rel, mode in (modes or {}).items():
        (tree / rel.lstrip("/")).chmod(mode)
    tree.mkdir(exist_ok=True)
    root = folder / "root.img"
    subprocess.run(
        ["mke2fs", "-q", "-t", "ext4", "-U", ROOT_UUID, "-d", str(tree), str(root), f"{DISK_MIB - 10}M"], check=True
    )
    disk = folder / "disk.raw"
    subprocess.run(["truncate", "-s", f"{DISK_MIB}M", str(disk)], check=True)
    table = (
        f"label: gpt\nunit: sectors\nfirst-lba: {BIOS_START}\n"
        "start=2048, size=14336, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
        f"start=16384, size={(DISK_MIB - 10) * 2048}, type={ROOT_TYPE}\n"
        f"start={BIOS_START}, size={2048 - BIOS_START}, type=21686148-6449-6E6F-744E-656564454649\n"
    )
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(disk)], input=table.encode(), check=True)
    subprocess.run(
        ["dd", f"if={root}", f"of={disk}", "bs=1M", "seek=8", "conv=notrunc,sparse", "status=none"], check=True
    )
    if boot_chain:
        write_boot_chain(folder, disk, 14336 // 2)
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
