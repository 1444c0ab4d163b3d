"""Boot a released image under QEMU and talk to it over SSH (health checks, tests, local launch).

The guest gets its login through a NoCloud seed (the same way any cloud would give it one):
the sealed image has no account and no key of its own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from imagefactory.errors import FactoryError
from imagefactory.host import OVMF_CODE, OVMF_VARS
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
        fmt = "qcow2" if self.image.read_bytes()[:4] == b"QFI\xfb" else "raw"
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
        vars_fd = self.folder / "vars.fd"
        if not vars_fd.exists():
            shutil.copyfile(OVMF_VARS, vars_fd)
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
            "-drive",
            f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive",
            f"if=pflash,format=raw,file={vars_fd}",
            "-drive",
            f"file={overlay},if=virtio,format=qcow2",
            "-drive",
            f"file={seed},media=cdrom,readonly=on",
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
