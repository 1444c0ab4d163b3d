"""Read a GPT partition table from a raw disk image, without tools and without root."""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from imagefactory.errors import FactoryError

SECTOR = 512
LINUX_ROOT_X86_64 = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
LINUX_FILESYSTEM = "0fc63daf-8483-4772-8e79-3d69d8477de4"
EFI_SYSTEM = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"


@dataclass(frozen=True)
class Partition:
    number: int
    type_guid: str
    guid: str
    first_lba: int
    last_lba: int
    name: str

    @property
    def offset(self) -> int:
        return self.first_lba * SECTOR

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR


def read_partitions(disk: Path) -> list[Partition]:
    """Partitions of a GPT disk, in table order."""
    with open(disk, "rb") as handle:
        handle.seek(SECTOR)
        header = handle.read(92)
        if header[:8] != b"EFI PART":
            raise FactoryError(f"{disk.name} has no GPT partition table (no 'EFI PART' signature at LBA 1)")
        entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
        handle.seek(entries_lba * SECTOR)
        table = handle.read(count * entry_size)
    partitions = []
    for index in range(count):
        entry = table[index * entry_size : (index + 1) * entry_size]
        type_guid = uuid.UUID(bytes_le=entry[:16])
        if type_guid.int == 0:
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        name = entry[56:128].decode("utf-16-le").rstrip("\x00")
        partitions.append(
            Partition(index + 1, str(type_guid), str(uuid.UUID(bytes_le=entry[16:32])), first, last, name)
        )
    return partitions


def root_partition(disk: Path) -> Partition:
    """The Linux root partition: the x86-64 root type, else the largest Linux filesystem partition."""
    partitions = read_partitions(disk)
    for part in partitions:
        if part.type_guid == LINUX_ROOT_X86_64:
            return part
    linux = [p for p in partitions if p.type_guid == LINUX_FILESYSTEM]
    if not linux:
        raise FactoryError(f"{disk.name} has no Linux root partition in its GPT")
    return max(linux, key=lambda p: p.size)
