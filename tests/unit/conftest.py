"""Fixtures for unit tests: small real disk images, made without root or mounts."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
DISK_MIB = 40


def make_gpt_disk(folder: Path, files: dict[str, str | bytes]) -> Path:
    """A 40 MiB GPT disk: a small ESP-typed partition and an ext4 root holding `files`."""
    tree = folder / "tree"
    for rel, content in files.items():
        path = tree / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    tree.mkdir(exist_ok=True)
    root = folder / "root.img"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(tree), str(root), f"{DISK_MIB - 10}M"], check=True)
    disk = folder / "disk.raw"
    subprocess.run(["truncate", "-s", f"{DISK_MIB}M", str(disk)], check=True)
    table = (
        "label: gpt\nunit: sectors\n"
        "start=2048, size=14336, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
        f"start=16384, size={(DISK_MIB - 10) * 2048}, type={ROOT_TYPE}\n"
    )
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(disk)], input=table.encode(), check=True)
    subprocess.run(
        ["dd", f"if={root}", f"of={disk}", "bs=1M", "seek=8", "conv=notrunc,sparse", "status=none"], check=True
    )
    return disk


SEALED_FILES: dict[str, str | bytes] = {
    "/etc/machine-id": "",
    "/etc/release": "IMAGE_VERSION=release-0.1.0\nIMAGE_COMMIT=abc\n",
    "/etc/os-release": 'NAME="Debian GNU/Linux"\nIMAGE_VERSION=release-0.1.0\n',
    "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\nappsvc:x:999:999::/srv/appsvc:/usr/sbin/nologin\n",
    "/etc/ssh/sshd_config": "PermitRootLogin no\n",
    "/var/log/apt/history.log": "",
    "/root/.profile": "# profile\n",
}


@pytest.fixture
def disk_factory(tmp_path: Path) -> Callable[[dict[str, str | bytes]], Path]:
    counter = iter(range(1000))

    def factory(files: dict[str, str | bytes]) -> Path:
        folder = tmp_path / f"disk{next(counter)}"
        folder.mkdir()
        return make_gpt_disk(folder, files)

    return factory
