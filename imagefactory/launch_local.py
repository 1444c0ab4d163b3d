"""Launch a released image as a local QEMU VM, health-check it, and tear it down.

    python -m imagefactory.launch_local create   (inputs in the environment, see below)
    python -m imagefactory.launch_local delete   (reads PULUMI_COMMAND_STDOUT of the create)

The VM runs on a copy-on-write overlay of the released QCOW2, which stays untouched. The
health check logs in over SSH (the login comes from a NoCloud seed, as on any cloud) and reads
/etc/release; a VM that does not report the requested version is stopped and the step fails.

Environment of `create`: IMAGE_PATH, IMAGE_SHA256, IMAGE_VERSION, VM_NAME, STATE_DIR, and
optionally ACCELERATOR (auto|kvm|tcg), MEMORY_MIB, HEALTH_TIMEOUT.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from imagefactory import accel, host
from imagefactory.checksums import file_digest
from imagefactory.errors import FactoryError, last_json, run_step
from imagefactory.stamp import parse_stamp
from imagefactory.steps import LaunchRequest
from imagefactory.vm import Guest


def create(env: dict[str, str]) -> dict[str, object]:
    request = LaunchRequest.parse([], env)
    image = request.image_path
    version = request.version
    if not image.is_file():
        raise FactoryError(f"image {image} of {version} does not exist; is the version still published?")
    if file_digest(image) != request.image_sha256:
        raise FactoryError(f"{image} does not match the digest the image stack published for {version}")
    cache = host.cache_dir()
    accelerator = accel.choose(request.accelerator, image, cache)
    folder = request.state_dir.resolve() / f"{request.vm_name}-{version}-{os.urandom(3).hex()}"
    guest = Guest(image, folder, accelerator, int(env.get("MEMORY_MIB", "1024")), user="health").start()
    try:
        print(f"launch: {request.vm_name} booting {version} ({accelerator}); waiting for SSH", file=sys.stderr)
        guest.wait_ready(int(env.get("HEALTH_TIMEOUT", "600")))
        result = guest.ssh("cat /etc/release")
        reported = parse_stamp(result.stdout).get("IMAGE_VERSION")
        if reported != version:
            raise FactoryError(f"health check failed: the VM reports {reported!r}, not {version!r}")
    except BaseException:
        guest.stop()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    print(f"launch: {request.vm_name} is healthy and reports {version}", file=sys.stderr)
    return {
        "version": version,
        "pid": guest.process.pid if guest.process else 0,
        "ssh_port": guest.port,
        "dir": str(folder),
        "accelerator": accelerator,
        "reported_version": reported,
    }


def delete(previous_stdout: str) -> None:
    record = last_json(previous_stdout)
    if not record:
        return
    folder = Path(record.get("dir", ""))
    pid = int(record.get("pid", 0))
    if pid and _is_our_qemu(pid, folder):
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.2)
    if folder.name and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    print(f"launch: stopped the VM of {record.get('version')}", file=sys.stderr)


def _is_our_qemu(pid: int, folder: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "qemu-system" in cmdline and str(folder) in cmdline


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["create"]:
        return run_step("launch", lambda: create(dict(os.environ)))
    if args == ["delete"]:
        return run_step("launch", lambda: delete(os.environ.get("PULUMI_COMMAND_STDOUT", "")))
    print("usage: python -m imagefactory.launch_local create|delete", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
