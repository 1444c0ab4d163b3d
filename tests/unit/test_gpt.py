"""GPT: partitions are read from the disk itself, without tools or root."""

from collections.abc import Callable
from pathlib import Path

import pytest

from imagefactory import gpt
from imagefactory.bootchain import BIOS_BOOT
from imagefactory.errors import FactoryError


def test_the_root_partition_is_found_by_type(disk_factory: Callable[[dict], Path]) -> None:
    disk = disk_factory({"/etc/hostname": "x"})
    parts = gpt.read_partitions(disk)
    assert [p.type_guid for p in parts] == [gpt.EFI_SYSTEM, gpt.LINUX_ROOT_X86_64, BIOS_BOOT]
    root = gpt.root_partition(disk)
    assert root.offset == 16384 * 512


def test_a_disk_without_gpt_is_refused(tmp_path: Path) -> None:
    disk = tmp_path / "blank.raw"
    disk.write_bytes(b"\0" * 4096)
    with pytest.raises(FactoryError, match="no GPT partition table"):
        gpt.read_partitions(disk)
