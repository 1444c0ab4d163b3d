"""Offline check of a disk's boot chain, for BIOS and for UEFI with Secure Boot, without booting.

What a hybrid disk needs, read from its bytes (GPT, MBR, the ESP through mtools, the root
filesystem's superblock):
- BIOS: a protective MBR whose boot code is GRUB's and points at the BIOS boot partition, and in
  that partition GRUB's core image, whose first sector points at the rest of it;
- UEFI: in the ESP, at the removable-media path, `EFI/BOOT/BOOTX64.EFI` (shim, signed by
  Microsoft's UEFI CA) and `grubx64.efi` (GRUB, signed by Debian), and the `grub.cfg` beside them,
  which finds the root filesystem this disk holds.
Each problem is one (check, where, what) triple; none means both firmwares find their way.
"""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
import uuid
from pathlib import Path

from imagefactory.gpt import EFI_SYSTEM, SECTOR, Partition, read_partitions, root_partition

__all__ = ["EFI_SYSTEM", "check", "read_partitions"]

BIOS_BOOT = "21686148-6449-6e6f-744e-656564454649"
KERNEL_SECTOR = 0x5C
"""Where GRUB's boot sector keeps the first sector of its core image."""
BLOCKLIST = SECTOR - 12
"""Where the core image's first sector keeps the start and length of the rest (start, len, segment)."""
SIGNERS = {
    "BOOTX64.EFI": (b"UEFI SHIM", (b"Microsoft Corporation UEFI CA", b"Microsoft UEFI CA 2023")),
    "grubx64.efi": (b"GRUB", (b"Debian Secure Boot",)),
}
"""Each EFI binary of the chain: a mark of what it is, and the signers its certificate table may name
(Microsoft's 2011 third-party UEFI CA, or its 2023 successor)."""
GRUB_CONFIGS = ("/EFI/debian/grub.cfg", "/EFI/BOOT/grub.cfg")
"""Where Debian's signed GRUB looks for its configuration, in its order: under its prefix
(grub-install's layout, as in Debian's own cloud images), else beside itself."""

Problem = tuple[str, str, str]


def certificates(binary: bytes) -> bytes | None:
    """The certificate table of a PE32+ binary (its Authenticode signatures), None if it is no PE."""
    if binary[:2] != b"MZ" or len(binary) < 0x40:
        return None
    pe = struct.unpack_from("<I", binary, 0x3C)[0]
    if binary[pe : pe + 4] != b"PE\0\0" or len(binary) < pe + 26:
        return None
    optional = pe + 24
    directories = optional + (112 if struct.unpack_from("<H", binary, optional)[0] == 0x20B else 96)
    try:
        offset, size = struct.unpack_from("<II", binary, directories + 4 * 8)  # entry 4: the security directory
    except struct.error:
        return None  # cut short: no PE
    return binary[offset : offset + size]


def check_bios(disk: Path, partitions: list[Partition]) -> list[Problem]:
    with open(disk, "rb") as handle:
        mbr = handle.read(SECTOR)
        bios = [p for p in partitions if p.type_guid == BIOS_BOOT]
        if mbr[510:] != b"\x55\xaa" or mbr[0x1BE + 4] != 0xEE:
            return [("boot-bios", "MBR", "not a protective MBR (boot signature 55AA, one partition of type EE)")]
        if b"GRUB" not in mbr[:440]:
            return [("boot-bios", "MBR", "its boot code is not GRUB's: a BIOS finds nothing to run")]
        if not bios:
            return [("boot-bios", "GPT", "no BIOS boot partition (type 21686148-6449-6E6F-744E-656564454649)")]
        partition = bios[0]
        pointed = struct.unpack_from("<Q", mbr, KERNEL_SECTOR)[0]
        if pointed != partition.first_lba:
            where = f"points at sector {pointed}, not the BIOS boot partition ({partition.first_lba})"
            return [("boot-bios", "MBR", where)]
        handle.seek(partition.offset)
        first = handle.read(SECTOR)
        start, length, _ = struct.unpack_from("<QHH", first, BLOCKLIST)
        if start != partition.first_lba + 1 or not 0 < length < partition.size // SECTOR:
            return [("boot-bios", "BIOS boot partition", f"GRUB's core image lists sectors {start}+{length}")]
        handle.seek(partition.offset + SECTOR)
        rest = handle.read(length * SECTOR)
        if len(rest) != length * SECTOR or not rest.strip(b"\0"):
            return [("boot-bios", "BIOS boot partition", "GRUB's core image is missing or empty")]
    return []


def read_esp_file(disk: Path, esp: Partition, path: str, work: Path) -> bytes | None:
    """A file of the ESP (FAT), read with mtools at the partition's offset; None when absent."""
    out = work / Path(path).name
    result = subprocess.run(
        ["mcopy", "-n", "-i", f"{disk}@@{esp.offset}", f"::{path}", str(out)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )
    return out.read_bytes() if result.returncode == 0 and out.is_file() else None


def root_uuid(disk: Path) -> str:
    """The ext4 UUID of the root filesystem (superblock at 1024, UUID at 0x68)."""
    root = root_partition(disk)
    with open(disk, "rb") as handle:
        handle.seek(root.offset + 1024 + 0x68)
        return str(uuid.UUID(bytes=handle.read(16)))


def check_uefi(disk: Path, partitions: list[Partition]) -> list[Problem]:
    esps = [p for p in partitions if p.type_guid == EFI_SYSTEM]
    if not esps:
        return [("boot-uefi", "GPT", "no EFI system partition")]
    problems: list[Problem] = []
    with tempfile.TemporaryDirectory(prefix="bootchain-") as tmp:
        for name, (mark, signers) in SIGNERS.items():
            path = f"/EFI/BOOT/{name}"
            binary = read_esp_file(disk, esps[0], path, Path(tmp))
            if binary is None:
                problems.append(("boot-uefi", f"ESP:{path}", "missing"))
                continue
            table = certificates(binary)
            if table is None or mark not in binary:
                problems.append(("boot-uefi", f"ESP:{path}", f"not a {mark.decode()} EFI binary"))
            elif not any(signer in table for signer in signers):
                named = " or ".join(signer.decode() for signer in signers)
                problems.append(("boot-secureboot", f"ESP:{path}", f"not signed by {named}"))
        configs = {path: read_esp_file(disk, esps[0], path, Path(tmp)) for path in GRUB_CONFIGS}
    found = [(path, text) for path, text in configs.items() if text is not None]
    if not found:
        problems.append(("boot-uefi", f"ESP:{GRUB_CONFIGS[0]}", "missing"))
    elif root_uuid(disk) not in found[0][1].decode(errors="replace"):
        where = f"ESP:{found[0][0]}"
        problems.append(("boot-uefi", where, f"does not find the root filesystem {root_uuid(disk)}"))
    return problems


NEW_VERSION_FIRMWARES = ("bios", "uefi", "secureboot")
"""What a version not yet published will boot under: the seal check admits no other disk."""


def firmwares(problems: list[Problem]) -> list[str]:
    """The firmwares a disk boots under, from its problems (recorded in every manifest)."""
    checks = {check for check, _, _ in problems}
    found = [] if "boot-bios" in checks else ["bios"]
    if "boot-uefi" not in checks:
        found += ["uefi"] if "boot-secureboot" in checks else ["uefi", "secureboot"]
    return found


def version_firmwares(manifest: dict | None) -> tuple[str, ...]:
    """What a version's cloud descriptors may claim. A version published before manifests recorded
    `firmwares` is a UEFI-only disk of the former stage-0 recipe: its AMI and gallery definition
    keep what they were registered with; a version not published yet will be hybrid."""
    if manifest is None:
        return NEW_VERSION_FIRMWARES
    recorded = manifest.get("firmwares") or ("uefi",)
    return tuple(str(firmware) for firmware in recorded) if isinstance(recorded, list | tuple) else ("uefi",)


def check(disk: Path) -> list[Problem]:
    """Every problem of the disk's BIOS and UEFI boot chains."""
    partitions = read_partitions(disk)
    return check_bios(disk, partitions) + check_uefi(disk, partitions)
