"""The release gate on a real QEMU: a disk that does not boot stops it, naming the format and the
firmware (the unit tests show that nothing is then staged or published)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from imagefactory import bootcheck
from imagefactory.errors import FactoryError


def test_a_disk_with_no_boot_chain_stops_the_gate_naming_format_and_firmware(tmp_path: Path) -> None:
    vhd = tmp_path / "debian-12-dev-0123456.vhd"
    raw = tmp_path / "blank.raw"
    subprocess.run(["truncate", "-s", "64M", str(raw)], check=True)
    subprocess.run(["qemu-img", "convert", "-q", "-O", "vpc", "-o", "subformat=fixed", str(raw), str(vhd)], check=True)
    with pytest.raises(FactoryError) as caught:
        bootcheck.run({"vhd": vhd}, "dev-0123456", "all", "tcg", tmp_path / "work", deadline=45)
    assert str(caught.value).startswith(f"boot check: the VHD ({vhd.name}) under bios did not boot")
    left = subprocess.run(["pgrep", "-f", f"qemu-system.*{tmp_path / 'work'}"], capture_output=True, check=False)
    assert left.returncode == 1, "the guest that did not boot is stopped"
