"""Choose the QEMU accelerator by booting for real, never by trusting /dev/kvm.

On some hosts /dev/kvm exists but a KVM guest hangs right after the firmware. The probe boots
the actual upstream image under KVM (copy-on-write, nothing is written to it) and waits for
the kernel to hand over to init on the serial console. Only then is KVM used; otherwise TCG.
The answer is cached per host boot.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imagefactory.errors import FactoryError
from imagefactory.files import write_atomic
from imagefactory.host import OVMF_CODE, OVMF_VARS

MARKERS = (b"Freeing unused kernel", b"Run /init", b"systemd[1]")
PROBE_SECONDS = 20  # a working KVM reaches init in a few seconds; TCG needs about 8


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def probe_boot(image: Path, accel: str, seconds: int = PROBE_SECONDS) -> tuple[bool, float]:
    """Boot `image` read-only under `accel`; True when the kernel reached init within `seconds`."""
    with tempfile.TemporaryDirectory(prefix="accel-probe-") as tmp:
        serial = Path(tmp) / "serial.log"
        vars_copy = Path(tmp) / "vars.fd"
        shutil.copyfile(OVMF_VARS, vars_copy)
        args = [
            "qemu-system-x86_64",
            "-accel",
            accel,
            "-m",
            "512",
            "-smp",
            "1",
            "-snapshot",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-nic",
            "none",
            "-drive",
            f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive",
            f"if=pflash,format=raw,file={vars_copy}",
            "-drive",
            f"file={image},if=virtio,format={_format(image)}",
            "-serial",
            f"file:{serial}",
        ]
        start = time.monotonic()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while time.monotonic() - start < seconds:
                if proc.poll() is not None:
                    return False, time.monotonic() - start
                if serial.exists() and any(m in serial.read_bytes() for m in MARKERS):
                    return True, time.monotonic() - start
                time.sleep(0.5)
            return False, time.monotonic() - start
        finally:
            proc.kill()
            proc.wait()


def _format(image: Path) -> str:
    with open(image, "rb") as handle:
        return "qcow2" if handle.read(4) == b"QFI\xfb" else "raw"


def choose(requested: str, image: Path, cache: Path) -> str:
    """kvm or tcg for `requested` in (auto, kvm, tcg)."""
    if requested == "tcg":
        return "tcg"
    if requested == "kvm":
        if not kvm_usable():
            raise FactoryError(
                "imagefactory:accelerator is kvm but /dev/kvm is missing or not accessible; use auto or tcg"
            )
        return "kvm"
    if not kvm_usable():
        print("accelerator: /dev/kvm is not usable; using tcg", file=sys.stderr)
        return "tcg"
    record = cache / "accel-probe.json"
    try:
        cached = json.loads(record.read_text())
        if cached.get("boot_id") == _boot_id():
            # One write, line and all: the two builds of a reproducible pair say it at once.
            sys.stderr.write(f"accelerator: {cached['accelerator']} (probed earlier during this host boot)\n")
            return cached["accelerator"]
    except (OSError, ValueError, KeyError):
        pass
    ok, seconds = probe_boot(image, "kvm")
    choice = "kvm" if ok else "tcg"
    detail = f"the kernel reached init in {seconds:.1f}s" if ok else f"no init within {seconds:.0f}s"
    print(f"accelerator: probe boot under KVM: {detail}; using {choice}", file=sys.stderr)
    cache.mkdir(parents=True, exist_ok=True)
    write_atomic(record, json.dumps({"boot_id": _boot_id(), "accelerator": choice, "seconds": round(seconds, 1)}))
    return choice
