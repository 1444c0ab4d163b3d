"""The lookup command finds an AMI by its ImageVersion tag, against moto's EC2 over real HTTP.

The emulator is started on 127.0.0.1 by the test and stopped after it; no traffic leaves the host.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import pytest

from tests.helpers import ROOT

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def publish_ami(endpoint: str, version: str) -> tuple[str, str]:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
    source = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=source, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    image = ec2.create_image(InstanceId=instance, Name=f"debian-12-{version}")["ImageId"]
    ec2.create_tags(Resources=[image], Tags=[{"Key": "ImageVersion", "Value": version}])
    owner = ec2.describe_images(ImageIds=[image])["Images"][0]["OwnerId"]
    return image, owner


def lookup(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "imagefactory.lookup",
            "--target",
            "aws",
            "--region",
            REGION,
            "--endpoint-url",
            endpoint,
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        check=False,
    )


def test_lookup_prints_the_ami_of_the_version(moto_endpoint: str) -> None:
    image, owner = publish_ami(moto_endpoint, "release-0.1.0")
    publish_ami(moto_endpoint, "release-0.2.0")
    result = lookup(moto_endpoint, "--version", "release-0.1.0", "--owner", owner)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == image


def test_lookup_of_an_unknown_version_fails_clearly(moto_endpoint: str) -> None:
    result = lookup(moto_endpoint, "--version", "release-9.9.9", "--owner", "123456789012")
    assert result.returncode == 1
    assert "no AMI owned by 123456789012 is tagged ImageVersion=release-9.9.9" in result.stderr


def test_lookup_refuses_an_unpinned_owner(moto_endpoint: str) -> None:
    result = lookup(moto_endpoint, "--version", "release-0.1.0")
    assert result.returncode == 1
    assert "--owner is required" in result.stderr
