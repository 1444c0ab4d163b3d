"""The release gate: each converted format boots, under the firmware its platforms use, before the
version is published.

A QEMU guest runs on a copy-on-write overlay of the published file itself (QEMU reads the VMDK
with its vmdk driver, the fixed VHD with its vpc driver), must answer on SSH with the login a
NoCloud seed gives it, and must report the version in /etc/release. Under Secure Boot it must also
report Secure Boot enabled. The OVA's disk is the VMDK (the same bytes, checked by digest), so the
VMDK's boot is the OVA's.

`imagefactory:bootCheck`: `none`, `qcow2` (the QCOW2 under UEFI only) or `all` (the matrix).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from imagefactory import vm
from imagefactory.checksums import file_digest
from imagefactory.errors import FactoryError
from imagefactory.stamp import parse_stamp

BOOT_CHECKS = ("none", "qcow2", "all")
MATRIX: dict[str, tuple[str, ...]] = {
    "qcow2": ("uefi",),  # KVM hosts, OpenStack, Proxmox with OVMF
    "vhd": ("bios", "secureboot"),  # Azure Gen1 and Hyper-V Gen1; Azure Gen2 with Trusted Launch
    "vmdk": ("bios",),  # VMware's and VirtualBox's default VM
}
"""Each format with a boot of its own, and the firmwares that matter for it."""


def default_mode(is_release: bool) -> str:
    return "all" if is_release else "qcow2"


def plan(formats: list[str], mode: str) -> list[tuple[str, str]]:
    """(format, firmware) pairs to boot, in order."""
    if mode not in BOOT_CHECKS:
        raise FactoryError(f"imagefactory:bootCheck is {mode!r}; accepted: {', '.join(BOOT_CHECKS)}")
    chosen = [] if mode == "none" else ["qcow2"] if mode == "qcow2" else list(MATRIX)
    return [(fmt, firmware) for fmt in chosen if fmt in formats for firmware in MATRIX[fmt]]


def ova_disk(ova: Path, dest: Path | None = None) -> str:
    """The SHA-256 of the VMDK inside an OVA; with `dest`, the VMDK is written there too."""
    with tarfile.open(ova) as archive:
        member = next((m for m in archive.getmembers() if m.name.endswith(".vmdk")), None)
        extracted = archive.extractfile(member) if member is not None else None
        if extracted is None:
            raise FactoryError(f"{ova.name} holds no VMDK")
        digest = hashlib.sha256()
        with open(dest, "wb") if dest else open("/dev/null", "wb") as out:
            while chunk := extracted.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()


def boot(
    path: Path, fmt: str, firmware: str, version: str, accelerator: str, work: Path, deadline: int
) -> dict[str, object]:
    """Boot one file under one firmware; the record of what it reported, or a FactoryError."""
    what = f"the {fmt.upper()} ({path.name}) under {firmware}"
    started = time.monotonic()
    guest = vm.Guest(path, work, accelerator, disk_format=vm.QEMU_FORMATS.get(fmt, "vmdk"), firmware=firmware)
    try:
        try:
            guest.start()
            guest.wait_ready(deadline)
        except (FactoryError, subprocess.SubprocessError, OSError) as exc:
            raise FactoryError(f"boot check: {what} did not boot: {exc}") from None
        stamp = guest.ssh("cat /etc/release")
        reported = parse_stamp(stamp.stdout).get("IMAGE_VERSION") if stamp.returncode == 0 else None
        if reported != version:
            raise FactoryError(f"boot check: {what} reports IMAGE_VERSION {reported!r}, expected {version!r}")
        record: dict[str, object] = {"format": fmt, "firmware": firmware, "version": reported}
        seen = guest.ssh("test -d /sys/firmware/efi && echo uefi || echo bios").stdout.strip()
        if seen != ("bios" if firmware == "bios" else "uefi"):
            raise FactoryError(f"boot check: {what} came up under {seen!r} firmware")
        record["firmware_seen"] = seen
        if firmware != "bios":
            state = guest.ssh("sudo -n mokutil --sb-state").stdout.strip()
            if firmware == "secureboot" and "SecureBoot enabled" not in state:
                raise FactoryError(f"boot check: {what} booted without Secure Boot enforced ({state!r})")
            record["secure_boot"] = state
        record["seconds"] = round(time.monotonic() - started, 1)
        return record
    except subprocess.TimeoutExpired as exc:  # an SSH command that never answered
        raise FactoryError(f"boot check: {what} stopped answering: {exc}") from None
    finally:
        guest.stop()


def run(
    files: dict[str, Path], version: str, mode: str, accelerator: str, work: Path, deadline: int = 600
) -> list[dict]:
    """Boot every (format, firmware) of the plan; stop at the first that fails, naming it."""
    try:
        return _run(files, version, mode, accelerator, work, deadline)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the guests' overlays and logs, whatever happened


def _run(files: dict[str, Path], version: str, mode: str, accelerator: str, work: Path, deadline: int) -> list[dict]:
    records = []
    for number, (fmt, firmware) in enumerate(plan(list(files), mode)):
        print(f"boot check: {fmt} under {firmware}", file=sys.stderr, flush=True)
        folder = work / f"{number}-{fmt}-{firmware}"
        records.append(boot(files[fmt], fmt, firmware, version, accelerator, folder, deadline))
    if mode == "all" and "ova" in files:
        if "vmdk" in files:  # the OVA carries the VMDK that booted: the same bytes
            if ova_disk(files["ova"]) != file_digest(files["vmdk"]):
                raise FactoryError(f"boot check: the disk inside {files['ova'].name} is not the VMDK that booted")
            records.append({"format": "ova", "firmware": "bios", "same_disk_as": "vmdk"})
        else:  # no VMDK published beside it: boot the OVA's own disk
            work.mkdir(parents=True, exist_ok=True)
            disk = work / "ova-disk.vmdk"
            try:
                ova_disk(files["ova"], disk)
                records.append(boot(disk, "ova", "bios", version, accelerator, work / "ova-bios", deadline))
            finally:
                disk.unlink(missing_ok=True)
    return records
