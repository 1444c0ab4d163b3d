"""Boot a released image under QEMU and talk to it over SSH (health checks, tests, local launch).

The guest gets its login through a NoCloud seed (the same way any cloud would give it one):
the sealed image has no account and no key of its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from imagefactory.errors import FactoryError
from imagefactory.host import FIRMWARES, OVMF_CODE, OVMF_MS_VARS, OVMF_SECBOOT_CODE, OVMF_VARS
from imagefactory.stamp import parse_stamp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_seed(folder: Path, instance_id: str, user: str, public_key: str, hostname: str = "imagefactory-vm") -> Path:
    """A NoCloud seed ISO (label cidata) that creates `user` with `public_key` and passwordless
    sudo, as a cloud's default user gets it."""
    seed = folder / "seed"
    seed.mkdir(parents=True, exist_ok=True)
    (seed / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n")
    (seed / "user-data").write_text(
        "#cloud-config\n"
        "users:\n"
        f"  - name: {user}\n"
        "    shell: /bin/bash\n"
        "    lock_passwd: true\n"
        "    sudo: ALL=(ALL) NOPASSWD:ALL\n"
        "    ssh_authorized_keys:\n"
        f"      - {public_key}\n"
    )
    iso = folder / "seed.iso"
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-r", "-o", str(iso), str(seed)],
        check=True,
        capture_output=True,
    )
    return iso


QEMU_FORMATS = {"raw": "raw", "qcow2": "qcow2", "vhd": "vpc", "vmdk": "vmdk", "vhdx": "vhdx"}
"""This project's format names -> QEMU's driver names."""


def disk_format(image: Path) -> str:
    """QEMU's name for an image's format, from its first bytes (a fixed VHD's footer is at its end)."""
    with open(image, "rb") as handle:
        head = handle.read(4)
        handle.seek(-512, os.SEEK_END)
        footer = handle.read(8)
    if head == b"QFI\xfb":
        return "qcow2"
    if head == b"KDMV":
        return "vmdk"
    if footer == b"conectix":
        return "vpc"
    return "raw"


@dataclass
class Guest:
    """A running guest: a copy-on-write overlay of an image, reachable on a local SSH port."""

    image: Path
    folder: Path
    accelerator: str = "tcg"
    memory_mib: int = 1024
    user: str = "probe"
    port: int = 0
    process: subprocess.Popen | None = None
    standalone: bool = False
    """A full copy of the image instead of a copy-on-write overlay of it."""
    firmware: str = "uefi"
    """bios, uefi or secureboot (host.FIRMWARES)."""
    disk_format: str = ""
    """The image's format as QEMU names it (qcow2, raw, vmdk, vpc); found from the file when empty."""
    key: Path = field(init=False)

    @classmethod
    def attach(cls, folder: Path, port: int, user: str) -> Guest:
        """The guest a launch left running in `folder` (its key is there), reachable on `port`."""
        guest = cls(folder / "overlay.qcow2", folder, user=user, port=port)
        guest.key = folder / "id_ed25519"
        return guest

    def start(self) -> Guest:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = self.folder / "id_ed25519"
        if not self.key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        overlay = self.folder / "overlay.qcow2"
        if self.firmware not in FIRMWARES:
            raise FactoryError(f"firmware {self.firmware!r} is not one of: {', '.join(FIRMWARES)}")
        fmt = self.disk_format or disk_format(self.image)
        if not overlay.exists() and self.standalone:
            # A machine upgraded in place outlives its first image: its disk must not lean on a
            # registry file that retiring the version deletes.
            subprocess.run(
                ["qemu-img", "convert", "-q", "-f", fmt, "-O", "qcow2", str(self.image), str(overlay)], check=True
            )
        elif not overlay.exists():
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.image.resolve()), "-F", fmt, str(overlay)],
                check=True,
            )
        seed = make_seed(self.folder, f"vm-{self.folder.name}", self.user, (self.folder / "id_ed25519.pub").read_text())
        self.port = self.port or free_port()
        args = [
            "qemu-system-x86_64",
            "-accel",
            self.accelerator,
            "-m",
            str(self.memory_mib),
            "-smp",
            "2",
            "-display",
            "none",
            "-monitor",
            "none",
            *self._firmware_args(),
            "-drive",
            f"file={overlay},if=virtio,format=qcow2",
            "-drive",
            # q35's only CD-ROM bus is AHCI, which Debian's cloud kernel does not drive: there the
            # seed is a virtio disk (NoCloud finds it by its label either way).
            f"file={seed},format=raw,if=virtio,readonly=on"
            if self.firmware == "secureboot"
            else f"file={seed},media=cdrom,readonly=on",
            "-netdev",
            f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.port}-:22",
            "-device",
            "virtio-net-pci,netdev=net0",
            # A host-fed RNG: without it the guest's first /dev/urandom read can spin for minutes
            # under TCG (a cloud-init stuck in the kernel's jitter-entropy loop).
            "-object",
            "rng-random,id=rng0,filename=/dev/urandom",
            "-device",
            "virtio-rng-pci,rng=rng0",
            "-serial",
            f"file:{self.folder / 'serial.log'}",
            "-pidfile",
            str(self.folder / "qemu.pid"),
        ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        return self

    def _firmware_args(self) -> list[str]:
        """SeaBIOS is QEMU's default; OVMF gets its code and a private copy of its variables."""
        if self.firmware == "bios":
            return []
        secure = self.firmware == "secureboot"
        vars_fd = self.folder / ("vars-secureboot.fd" if secure else "vars.fd")
        if not vars_fd.exists():
            shutil.copyfile(OVMF_MS_VARS if secure else OVMF_VARS, vars_fd)
        code = OVMF_SECBOOT_CODE if secure else OVMF_CODE
        # Secure Boot's variables are guarded by SMM: a q35 machine with SMM and a secure flash.
        machine = ["-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on"]
        return [
            *(machine if secure else []),
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={vars_fd}",
        ]

    def ssh(self, command: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "ssh",
                "-i",
                str(self.key),
                "-p",
                str(self.port),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "BatchMode=yes",
                f"{self.user}@127.0.0.1",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def wait_ready(self, deadline_seconds: int = 600) -> None:
        start = time.monotonic()
        while time.monotonic() - start < deadline_seconds:
            if self.process is not None and self.process.poll() is not None:
                raise FactoryError(f"the VM exited with code {self.process.returncode}; see {self.folder}/serial.log")
            try:
                if self.ssh("true", timeout=30).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(3)
        raise FactoryError(f"the VM did not answer on SSH within {deadline_seconds}s; see {self.folder}/serial.log")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def read_release(image: Path, accelerator: str = "tcg") -> dict[str, str]:
    """Boot `image` (copy-on-write), read /etc/release from the running guest, shut it down."""
    with tempfile.TemporaryDirectory(prefix="imagefactory-vm-") as tmp:
        guest = Guest(image, Path(tmp), accelerator).start()
        try:
            guest.wait_ready()
            result = guest.ssh("cat /etc/release")
            if result.returncode != 0:
                raise FactoryError(f"reading /etc/release failed: {result.stderr.strip()}")
            return parse_stamp(result.stdout)
        finally:
            guest.stop()
