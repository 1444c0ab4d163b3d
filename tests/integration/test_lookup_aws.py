"""Lookup and lifecycle of AMIs by their ImageVersion tag, against moto's EC2 over real HTTP.

The emulator is started on 127.0.0.1 by the test and stopped after it; no traffic leaves the host.
"""

from __future__ import annotations

import os
import subprocess
import sys

import boto3
import pytest

from tests.helpers import ROOT

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto_endpoint(moto_server: str) -> str:
    return moto_server


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


def test_lookup_refuses_a_revoked_ami_naming_the_reason(moto_endpoint: str) -> None:
    image, owner = publish_ami(moto_endpoint, "release-0.4.0")
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint)
    # What `aws_lifecycle revoke` tags (its EnableImageDeprecation call is checked with a Stubber).
    ec2.create_tags(Resources=[image], Tags=[{"Key": "ImageRevoked", "Value": "CVE-2026-0001"}])
    result = lookup(moto_endpoint, "--version", "release-0.4.0", "--owner", owner)
    assert result.returncode == 1
    assert f"release-0.4.0 ({image}) is revoked: CVE-2026-0001" in result.stderr and "Traceback" not in result.stderr
    allowed = lookup(moto_endpoint, "--version", "release-0.4.0", "--owner", owner, "--allow-revoked")
    assert allowed.returncode == 0 and allowed.stdout.strip() == image


def lifecycle(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagefactory.aws_lifecycle", *args, "--endpoint-url", endpoint],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        check=False,
    )


def test_list_copy_deprecate_and_deregister_a_version(moto_endpoint: str) -> None:
    import json

    image, owner = publish_ami(moto_endpoint, "release-0.3.0")
    listed = lifecycle(moto_endpoint, "list", "--owner", owner, "--region", REGION)
    assert listed.returncode == 0, listed.stderr
    assert "release-0.3.0" in {row["version"] for row in json.loads(listed.stdout)}

    copied = lifecycle(
        moto_endpoint, "copy", "--version", "release-0.3.0", "--owner", owner, "--region", REGION, "--to", "us-east-1"
    )
    assert copied.returncode == 0, copied.stderr
    copies = json.loads(copied.stdout)
    assert copies[REGION] == image and copies["us-east-1"].startswith("ami-")
    east = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    east_tags = {
        t["Key"]: t["Value"] for t in east.describe_images(ImageIds=[copies["us-east-1"]])["Images"][0]["Tags"]
    }
    assert east_tags["ImageVersion"] == "release-0.3.0", "the copy carries the version tag"
    again = json.loads(
        lifecycle(
            moto_endpoint,
            "copy",
            "--version",
            "release-0.3.0",
            "--owner",
            owner,
            "--region",
            REGION,
            "--to",
            "us-east-1",
        ).stdout
    )
    assert again == copies, "copying again reuses the existing copy"

    # moto 5.2.5 answers EnableImageDeprecation with a 500; tests/unit/test_aws_lifecycle.py checks that call.

    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint)
    snapshots = [
        m["Ebs"]["SnapshotId"]
        for m in ec2.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"]
        if "Ebs" in m
    ]
    assert snapshots
    gone = lifecycle(moto_endpoint, "deregister", "--version", "release-0.3.0", "--owner", owner, "--region", REGION)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout)["deleted_snapshots"] == snapshots
    assert (
        ec2.describe_images(Owners=[owner], Filters=[{"Name": "tag:ImageVersion", "Values": ["release-0.3.0"]}])[
            "Images"
        ]
        == []
    )
    remaining = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=[owner])["Snapshots"]}
    assert not remaining & set(snapshots), "the AMI's snapshots are deleted with it"


def test_lifecycle_commands_name_what_is_missing(moto_endpoint: str) -> None:
    result = lifecycle(moto_endpoint, "deprecate", "--owner", "123456789012", "--version", "release-0.1.0")
    assert result.returncode == 1 and "deprecate needs --at" in result.stderr
    result = lifecycle(moto_endpoint, "deregister", "--owner", "123456789012", "--version", "release-7.7.7")
    assert (
        result.returncode == 1 and "no AMI owned by 123456789012 is tagged ImageVersion=release-7.7.7" in result.stderr
    )
