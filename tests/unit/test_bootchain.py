"""The offline boot-chain check: a hybrid disk passes; each broken link is named, for BIOS and UEFI."""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imagefactory import bootchain, sealcheck
from tests.unit.conftest import BIOS_START, SEALED_FILES, fake_efi_binary, make_gpt_disk


@pytest.fixture
def disk(disk_factory: Callable[[dict], Path]) -> Path:
    return disk_factory(SEALED_FILES)


def esp_offset(disk: Path) -> int:
    return next(p for p in bootchain.read_partitions(disk) if p.type_guid == bootchain.EFI_SYSTEM).offset


def replace_esp_file(disk: Path, path: str, content: bytes | None, work: Path) -> None:
    target = f"{disk}@@{esp_offset(disk)}"
    if content is None:
        subprocess.run(["mdel", "-i", target, f"::{path}"], check=True)
        return
    local = work / "replacement"
    local.write_bytes(content)
    subprocess.run(["mcopy", "-o", "-i", target, str(local), f"::{path}"], check=True)


def test_a_hybrid_disk_has_a_whole_chain_for_both_firmwares(disk: Path) -> None:
    assert bootchain.check(disk) == []
    assert sealcheck.check_disk(disk, "release-0.1.0") == []


def test_a_disk_with_neither_chain_is_named_for_both(tmp_path: Path) -> None:
    """A disk with neither chain (no GRUB boot code, no files in the ESP) is named for both."""
    plain = make_gpt_disk(tmp_path, {"/etc/hostname": "x"}, boot_chain=False)
    assert bootchain.check(plain) == [
        ("boot-bios", "MBR", "its boot code is not GRUB's: a BIOS finds nothing to run"),
        ("boot-uefi", "ESP:/EFI/BOOT/BOOTX64.EFI", "missing"),  # this ESP holds no FAT at all
        ("boot-uefi", "ESP:/EFI/BOOT/grubx64.efi", "missing"),
        ("boot-uefi", "ESP:/EFI/debian/grub.cfg", "missing"),
    ]


def test_the_mbr_must_point_at_the_bios_boot_partition(disk: Path) -> None:
    with open(disk, "r+b") as handle:
        handle.seek(bootchain.KERNEL_SECTOR)
        handle.write(struct.pack("<Q", 2048))
    assert bootchain.check(disk) == [
        ("boot-bios", "MBR", f"points at sector 2048, not the BIOS boot partition ({BIOS_START})")
    ]


def test_an_empty_core_image_is_found(disk: Path) -> None:
    with open(disk, "r+b") as handle:
        handle.seek((BIOS_START + 1) * 512)
        handle.write(bytes(3 * 512))
    assert bootchain.check(disk) == [("boot-bios", "BIOS boot partition", "GRUB's core image is missing or empty")]


def test_a_missing_shim_and_an_unsigned_grub_are_named(disk: Path, tmp_path: Path) -> None:
    replace_esp_file(disk, "/EFI/BOOT/BOOTX64.EFI", None, tmp_path)
    replace_esp_file(disk, "/EFI/BOOT/grubx64.efi", fake_efi_binary(b"GRUB", b"Someone Else"), tmp_path)
    assert bootchain.check(disk) == [
        ("boot-uefi", "ESP:/EFI/BOOT/BOOTX64.EFI", "missing"),
        ("boot-secureboot", "ESP:/EFI/BOOT/grubx64.efi", "not signed by Debian Secure Boot"),
    ]
    findings = {(f.check, f.path) for f in sealcheck.check_disk(disk, "release-0.1.0")}
    assert ("boot-uefi", "ESP:/EFI/BOOT/BOOTX64.EFI") in findings, "the seal check blocks the release"


def test_a_grub_cfg_that_looks_for_another_root_is_found(disk: Path, tmp_path: Path) -> None:
    other = "search --no-floppy --fs-uuid --set=root 00000000-0000-0000-0000-000000000000\n"
    replace_esp_file(disk, "/EFI/BOOT/grub.cfg", other.encode(), tmp_path)
    [(check, where, problem)] = bootchain.check(disk)
    assert (check, where) == ("boot-uefi", "ESP:/EFI/BOOT/grub.cfg")
    assert problem.startswith("does not find the root filesystem 6f2d7c3e-")


def test_a_file_that_is_no_efi_binary_is_named(disk: Path, tmp_path: Path) -> None:
    replace_esp_file(disk, "/EFI/BOOT/BOOTX64.EFI", b"#!/bin/sh\n", tmp_path)
    assert bootchain.check(disk) == [("boot-uefi", "ESP:/EFI/BOOT/BOOTX64.EFI", "not a UEFI SHIM EFI binary")]


def test_grub_installs_layout_is_accepted_too(disk: Path, tmp_path: Path) -> None:
    """Debian's own cloud images (grub-install): the configuration under EFI/debian, which finds
    the root with search.fs_uuid."""
    replace_esp_file(disk, "/EFI/BOOT/grub.cfg", None, tmp_path)
    subprocess.run(["mmd", "-i", f"{disk}@@{esp_offset(disk)}", "::/EFI/debian"], check=True)
    config = b"search.fs_uuid 6f2d7c3e-5a41-4f0b-9d7e-1c2b3a4d5e6f root\nconfigfile ($root)/boot/grub/grub.cfg\n"
    replace_esp_file(disk, "/EFI/debian/grub.cfg", config, tmp_path)
    assert bootchain.check(disk) == []
    assert bootchain.firmwares(bootchain.check(disk)) == ["bios", "uefi", "secureboot"]


def test_a_shim_signed_by_microsofts_2023_ca_is_accepted(disk: Path, tmp_path: Path) -> None:
    replace_esp_file(disk, "/EFI/BOOT/BOOTX64.EFI", fake_efi_binary(b"UEFI SHIM", b"Microsoft UEFI CA 2023"), tmp_path)
    assert bootchain.check(disk) == []


def test_a_truncated_efi_binary_is_named_not_a_traceback(disk: Path, tmp_path: Path) -> None:
    replace_esp_file(disk, "/EFI/BOOT/grubx64.efi", fake_efi_binary(b"GRUB", b"Debian Secure Boot")[:0x90], tmp_path)
    assert bootchain.check(disk) == [("boot-uefi", "ESP:/EFI/BOOT/grubx64.efi", "not a GRUB EFI binary")]


def test_the_firmwares_a_disk_boots_under_follow_its_problems() -> None:
    assert bootchain.firmwares([("boot-bios", "MBR", "x")]) == ["uefi", "secureboot"]
    assert bootchain.firmwares([("boot-secureboot", "ESP:/EFI/BOOT/BOOTX64.EFI", "x")]) == ["bios", "uefi"]
    assert bootchain.firmwares([("boot-uefi", "GPT", "x")]) == ["bios"]
    assert bootchain.version_firmwares(None) == ("bios", "uefi", "secureboot")
    assert bootchain.version_firmwares({"formats": {}}) == ("uefi",), "published before the record: UEFI only"
