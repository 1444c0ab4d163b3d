"""The fixed-VHD upload against Azurite, the Azure Storage emulator, over real HTTP on 127.0.0.1:
a page blob, verified by reading it back; a killed upload is never taken as complete and the
next run finishes it; the same version again sends nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagefactory import azure_upload
from imagefactory.checksums import file_digest
from imagefactory.vm import free_port
from tests.helpers import ROOT

# Azurite's documented development account (a public, well-known key, not a secret).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = Path(os.environ.get("AZURITE_BIN", "")) / "azurite-blob"
    if not binary.exists():
        pytest.fail("azurite is not installed: run tools/setup.sh (make test does)")
    port = free_port()
    folder = tmp_path_factory.mktemp("azurite")
    server = subprocess.Popen(
        [
            str(binary),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(folder),
            "--skipApiVersionCheck",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: node and whatever it starts stop together
    )
    deadline = time.monotonic() + 60
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert server.poll() is None and time.monotonic() < deadline, "azurite did not start"
        time.sleep(0.2)
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )
    from azure.storage.blob import BlobServiceClient

    BlobServiceClient.from_connection_string(connection).create_container("imagefactory")
    yield connection
    # Azurite may keep serving an idle keep-alive connection after SIGTERM: ask, then insist.
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


def vhd(folder: Path, name: str, seed: bytes) -> Path:
    """A small disk: data, a run of zero pages (sparse), data again; a whole number of MiB."""
    path = folder / name
    with open(path, "wb") as handle:
        handle.write(seed * (MIB // len(seed)) * 2)
        handle.truncate(12 * MIB)
        handle.seek(11 * MIB)
        handle.write(seed * (MIB // len(seed)))
    return path


def env_for(connection: str, disk: Path, blob: str) -> dict[str, str]:
    return {
        "AZURE_STORAGE_CONNECTION_STRING": connection,
        "VHD_PATH": str(disk),
        "VHD_SHA256": file_digest(disk),
        "STORAGE_ACCOUNT": ACCOUNT,
        "CONTAINER": "imagefactory",
        "BLOB_NAME": blob,
    }


class Crash(Exception):
    pass


def crashing_after(blob, pages: int):  # type: ignore[no-untyped-def]  # wraps azure's BlobClient
    real = blob.upload_page
    count = {"n": 0}

    def upload_page(*args, **kwargs):  # type: ignore[no-untyped-def]  # a test helper; its callers pass whatever the mocked API takes
        count["n"] += 1
        if count["n"] > pages:
            raise Crash("killed half-way")
        return real(*args, **kwargs)

    blob.upload_page = upload_page
    return blob


def test_the_step_uploads_a_page_blob_and_verifies_it_by_reading_it_back(azurite: str, tmp_path: Path) -> None:
    disk = vhd(tmp_path, "a.vhd", b"release-0.1.0 ")
    env = env_for(azurite, disk, "debian-12-release-0.1.0.vhd")
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python3"), "-P", "-m", "imagefactory.azure_upload"],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["sha256"] == env["VHD_SHA256"]
    blob = azure_upload.blob_client(env)
    props = blob.get_blob_properties()
    assert props.blob_type == "PageBlob" and props.size == disk.stat().st_size
    assert props.metadata == {"sha256": env["VHD_SHA256"]}
    assert azure_upload.blob_digest(blob, props.size) == env["VHD_SHA256"]
    sparse = [(p.start, p.end) for p in blob.list_page_ranges() if not p.cleared]
    assert sum(end - start + 1 for start, end in sparse) < disk.stat().st_size, "zero pages are not sent"


def test_a_killed_upload_is_never_taken_as_complete_and_the_next_run_finishes_it(azurite: str, tmp_path: Path) -> None:
    disk = vhd(tmp_path, "b.vhd", b"release-0.2.0 ")
    env = env_for(azurite, disk, "debian-12-release-0.2.0.vhd")
    # An earlier attempt, of other bytes of the same size, killed after its first page.
    other = vhd(tmp_path, "other.vhd", b"something else")
    with pytest.raises(Crash):
        azure_upload.upload(other, file_digest(other), crashing_after(azure_upload.blob_client(env), 1))
    with pytest.raises(Crash):
        azure_upload.upload(disk, env["VHD_SHA256"], crashing_after(azure_upload.blob_client(env), 1))
    blob = azure_upload.blob_client(env)
    assert "sha256" not in (blob.get_blob_properties().metadata or {}), "a half-made blob carries no digest"
    result = azure_upload.upload(disk, env["VHD_SHA256"], blob)
    assert result.uploaded is True
    assert azure_upload.blob_digest(blob, disk.stat().st_size) == env["VHD_SHA256"]
    assert blob.get_blob_properties().metadata == {"sha256": env["VHD_SHA256"]}


def test_uploading_the_same_version_again_sends_nothing(azurite: str, tmp_path: Path) -> None:
    disk = vhd(tmp_path, "c.vhd", b"release-0.3.0 ")
    env = env_for(azurite, disk, "debian-12-release-0.3.0.vhd")
    assert azure_upload.upload(disk, env["VHD_SHA256"], azure_upload.blob_client(env)).uploaded is True
    again = azure_upload.upload(disk, env["VHD_SHA256"], crashing_after(azure_upload.blob_client(env), 0))
    assert (again.sha256, again.uploaded) == (env["VHD_SHA256"], False)
