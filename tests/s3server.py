"""A real S3-compatible server for tests: SeaweedFS (`weed mini`, built by tools/setup.sh), on
127.0.0.1 only, with its data in a temporary folder. Each test that needs one starts its own and
stops it; nothing is left running.

SeaweedFS reports anonymous statistics to its project by default: `-master.telemetry=false`.
Every port it would open is chosen here (its admin, WebDAV, Iceberg and Lance servers are off or
moved), so two servers and any other test can run side by side.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCESS_KEY = "imagefactorytest"
SECRET_KEY = "imagefactory-test-secret-key"  # a throwaway credential of a server that lives for one test


def weed_binary() -> str:
    binary = os.environ.get("WEED_BIN", "")
    if not binary or not Path(binary).is_file():
        raise RuntimeError(f"SeaweedFS is not installed (WEED_BIN={binary!r}): run tools/setup.sh (make setup)")
    return binary


def free_ports(count: int) -> list[int]:
    """Ports free now on 127.0.0.1 (every gRPC port is given too, so no default offset applies)."""
    ports: list[int] = []
    sockets = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            port = sock.getsockname()[1]
            if port not in ports:
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


@dataclass
class S3Server:
    folder: Path
    ports: list[int] = field(default_factory=lambda: free_ports(11))
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    @property
    def env(self) -> dict[str, str]:
        """What a client of this server needs in its environment."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def registry(self, bucket: str, prefix: str = "images", **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"endpoint": self.endpoint, "pathStyle": "true", **options}.items())
        return f"s3://{bucket}/{prefix}?{query}"

    def start(self) -> S3Server:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.folder / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "registry",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        s3, master, volume, filer, admin, *grpc = self.ports
        command = [
            weed_binary(),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={config}",
            "-master.telemetry=false",
            f"-s3.port={s3}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-admin.port={admin}",
            f"-s3.port.grpc={grpc[0]}",
            f"-master.port.grpc={grpc[1]}",
            f"-volume.port.grpc={grpc[2]}",
            f"-filer.port.grpc={grpc[3]}",
            f"-admin.port.grpc={grpc[4]}",
            "-admin.port.legacy=0",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        log = open(self.folder / "weed.log", "ab")  # noqa: SIM115 - the server keeps it open while it runs
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"SeaweedFS exited with {self.process.returncode}: {self.log_tail()}")
                try:
                    socket.create_connection(("127.0.0.1", s3), timeout=0.5).close()
                    self._wait_for_s3()
                    return self
                except OSError:
                    time.sleep(0.1)
            raise RuntimeError(f"SeaweedFS did not answer on {self.endpoint} within 60 s: {self.log_tail()}")
        except BaseException:
            self.stop()  # never left running, whatever failed
            raise

    def _wait_for_s3(self) -> None:
        """The port opens before the filer behind it is ready: wait for a real answer."""
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + 60
        while True:
            try:
                self.client().list_buckets()
                return
            except (ClientError, BotoCoreError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def log_tail(self) -> str:
        path = self.folder / "weed.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def bucket(self, name: str, object_lock: bool = False) -> str:
        self.client().create_bucket(Bucket=name, **({"ObjectLockEnabledForBucket": True} if object_lock else {}))
        return name

    def kill(self) -> None:
        """The server dies at once (SIGKILL), as in a crash."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
