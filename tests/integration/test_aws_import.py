"""The AWS import's boto3 calls (imagefactory.aws_import.execute) against moto's server over HTTP.

moto's server is started by this module on 127.0.0.1 and stopped after it; every client goes to
it (endpoint_url, and AWS_ENDPOINT_URL for any other), with fake credentials: no traffic leaves
the host. The plan sent is the very one components/aws_image.py maps to pulumi_aws resources.

moto 5.2.5 lacks some of the calls (README, "Run the AWS stack"); the test says which:
- ImportSnapshot and DescribeImportSnapshotTasks: a snapshot of a new volume (create_volume +
  create_snapshot) stands in for the import of the S3 object;
- EnableImageDeprecation: a stand-in records the requests in place of sending them;
- RegisterImage keeps only Name and Description: the test reads the other parameters from the
  request as moto received it, and an expected failure (strict) asserts what describe_images
  should show, so that it fails once moto keeps them;
- PutObject and UploadPart store a ChecksumSHA256 as sent, unchecked: the test reads the object
  back and hashes it itself.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from imagefactory import aws_import
from imagefactory.aws_import import AwsImportPlan, ImportResult
from imagefactory.cloud import aws_settings

REGION = "eu-west-1"
COPY_REGION = "us-east-1"
BUCKET = "imagefactory-imports"
MIB = 1024**2
NO_RETRIES = Config(retries={"mode": "standard", "max_attempts": 1})


@pytest.fixture(scope="module")
def moto_endpoint(moto_server: str) -> Iterator[str]:
    """moto's server, and an environment in which every AWS client goes to it with test keys."""
    with pytest.MonkeyPatch.context() as env:
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
            env.delenv(key, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_CONFIG_FILE", os.devnull)
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        env.setenv("AWS_ENDPOINT_URL", moto_server)  # a client made without endpoint_url goes to moto too
        env.setenv("NO_PROXY", "127.0.0.1")
        yield moto_server


@dataclass
class Moto:
    endpoint: str
    sent: dict[str, list[dict[str, list[str]]]] = field(default_factory=dict)
    """Operation name -> the query parameters of each request as it went to moto's server."""

    def client(self, service: str, region: str = REGION) -> Any:
        made = boto3.client(service, region_name=region, endpoint_url=self.endpoint, config=NO_RETRIES)
        made.meta.events.register("before-send.ec2.*", self._record)
        return made

    def _record(self, request: Any, **_: Any) -> None:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
        params = urllib.parse.parse_qs(body)
        self.sent.setdefault(params["Action"][0], []).append(params)


@pytest.fixture(scope="module")
def moto(moto_endpoint: str) -> Moto:
    emulator = Moto(moto_endpoint)
    emulator.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return emulator


def release(folder: Path, version: str, mib: int) -> tuple[AwsImportPlan, Path]:
    """A small real RAW file (a GPT-less disk of random bytes) and the plan of its import."""
    raw = folder / f"debian-12-{version}.raw"
    raw.write_bytes(os.urandom(mib * MIB))
    settings = aws_settings(
        {"bucket": BUCKET, "region": REGION, "copyRegions": [COPY_REGION], "deprecateAfterDays": 30}
    )
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    return aws_import.plan(settings, version, "debian-12", "c" * 40, "u" * 64, digest, "2025-01-01T00:00:00Z"), raw


def snapshot_from_volume(moto: Moto, raw: Path):  # type: ignore[no-untyped-def]  # a test helper; its callers pass whatever the mocked API takes
    """moto 5.2.5 has no ImportSnapshot: a snapshot of a new volume of the RAW's size stands in for
    the import of the uploaded object (which must exist, as the import needs it)."""

    def stand_in(ec2: Any, plan: AwsImportPlan) -> str:
        request = plan.import_snapshot_request()
        source = request["DiskContainer"]["UserBucket"]
        moto.client("s3").head_object(Bucket=source["S3Bucket"], Key=source["S3Key"])
        volume = ec2.create_volume(
            Size=max(1, math.ceil(raw.stat().st_size / 1024**3)), AvailabilityZone=f"{plan.region}a", VolumeType="gp3"
        )
        return ec2.create_snapshot(VolumeId=volume["VolumeId"], Description=request["Description"])["SnapshotId"]

    return stand_in


@dataclass
class Imported:
    plan: AwsImportPlan
    raw: Path
    result: ImportResult
    deprecations: list[dict[str, Any]]


@pytest.fixture(scope="module")
def imported(moto: Moto, tmp_path_factory: pytest.TempPathFactory) -> Imported:
    plan, raw = release(tmp_path_factory.mktemp("raw"), "release-0.1.0", 3)
    deprecations: list[dict[str, Any]] = []  # moto 5.2.5 has no EnableImageDeprecation

    def connect(service: str, region: str) -> Any:
        return moto.client(service, region)

    result = aws_import.execute(
        plan,
        raw,
        connect,
        import_snapshot=snapshot_from_volume(moto, raw),
        deprecate=lambda _ec2, request: deprecations.append(request),
        poll_seconds=1,
    )
    return Imported(plan, raw, result, deprecations)


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", resource.get("TagSet", []))}


def test_the_raw_is_in_s3_with_its_sha256_checksum_and_tags(moto: Moto, imported: Imported) -> None:
    s3, obj = moto.client("s3"), imported.plan.s3_object
    digest = hashlib.sha256(imported.raw.read_bytes())
    head = s3.head_object(Bucket=obj.bucket, Key=obj.key, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(digest.digest()).decode()
    assert head["ContentLength"] == imported.raw.stat().st_size
    stored = s3.get_object(Bucket=obj.bucket, Key=obj.key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == digest.hexdigest() == imported.plan.raw_sha256
    assert tags_of(s3.get_object_tagging(Bucket=obj.bucket, Key=obj.key)) == imported.plan.tags


def test_the_ami_is_registered_from_the_snapshot_with_the_plans_parameters(moto: Moto, imported: Imported) -> None:
    plan, result = imported.plan, imported.result
    ec2 = moto.client("ec2")
    (image,) = ec2.describe_images(ImageIds=[result.amis[REGION]])["Images"]
    assert image["Name"] == plan.image.name and image["Description"] == plan.image.description
    assert image["State"] == "available"
    assert tags_of(image) == plan.tags, "the AMI carries ImageVersion and the other tags"
    (snapshot,) = ec2.describe_snapshots(SnapshotIds=[result.snapshot_id])["Snapshots"]
    assert tags_of(snapshot) == plan.tags, "the snapshot carries them too"
    # What moto's server received and answered with an ImageId (it keeps only Name and Description):
    (sent,) = moto.sent["RegisterImage"]
    assert {key: value[0] for key, value in sent.items() if key not in ("Action", "Version")} == {
        "Name": plan.image.name,
        "Description": plan.image.description,
        "Architecture": "x86_64",
        "BootMode": "uefi-preferred",
        "EnaSupport": "true",
        "ImdsSupport": "v2.0",
        "VirtualizationType": "hvm",
        "RootDeviceName": "/dev/xvda",
        "BlockDeviceMapping.1.DeviceName": "/dev/xvda",
        "BlockDeviceMapping.1.Ebs.SnapshotId": result.snapshot_id,
        "BlockDeviceMapping.1.Ebs.VolumeType": "gp3",
        "BlockDeviceMapping.1.Ebs.DeleteOnTermination": "true",
    }


@pytest.mark.xfail(strict=True, reason="moto 5.2.5 RegisterImage keeps only Name and Description")
def test_describe_images_shows_uefi_ena_imdsv2_and_the_root_device(moto: Moto, imported: Imported) -> None:
    (image,) = moto.client("ec2").describe_images(ImageIds=[imported.result.amis[REGION]])["Images"]
    assert image["BootMode"] == "uefi-preferred"
    assert image["RootDeviceName"] == "/dev/xvda"
    assert image["BlockDeviceMappings"][0]["DeviceName"] == "/dev/xvda"
    ebs = image["BlockDeviceMappings"][0]["Ebs"]
    assert (ebs["SnapshotId"], ebs["VolumeType"], ebs["DeleteOnTermination"]) == (
        imported.result.snapshot_id,
        "gp3",
        True,
    )
    assert image.get("EnaSupport") is True
    assert image.get("ImdsSupport") == "v2.0"
    assert image.get("DeprecationTime", "").startswith(imported.plan.deprecate_at[:16])


def test_the_copy_in_the_other_region_exists_with_the_tags(moto: Moto, imported: Imported) -> None:
    plan, amis = imported.plan, imported.result.amis
    assert list(amis) == [REGION, COPY_REGION]
    (copy,) = moto.client("ec2", COPY_REGION).describe_images(ImageIds=[amis[COPY_REGION]])["Images"]
    assert copy["Name"] == plan.image.name
    assert tags_of(copy) == plan.tags
    (sent,) = moto.sent["CopyImage"]
    assert sent["SourceImageId"] == [amis[REGION]] and sent["SourceRegion"] == [REGION]


def test_the_ami_and_its_copy_are_deprecated_at_the_planned_time(imported: Imported) -> None:
    at = imported.plan.deprecate_at
    assert at == "2025-01-31T00:00:00Z"
    assert imported.deprecations == [
        {"ImageId": imported.result.amis[REGION], "DeprecateAt": at},
        {"ImageId": imported.result.amis[COPY_REGION], "DeprecateAt": at},
    ]


def test_a_disk_over_the_single_put_limit_goes_up_in_parts(moto: Moto, tmp_path: Path) -> None:
    plan, raw = release(tmp_path, "release-0.2.0", 11)
    s3, obj = moto.client("s3"), plan.s3_object
    stated = aws_import.upload(s3, plan, raw, part_size=5 * MIB, single_put_limit=5 * MIB)
    data = raw.read_bytes()
    parts = [hashlib.sha256(data[i : i + 5 * MIB]).digest() for i in range(0, len(data), 5 * MIB)]
    composite = base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
    assert len(parts) == 3 and stated in (f"{composite}-3", composite)
    stored = s3.get_object(Bucket=obj.bucket, Key=obj.key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == plan.raw_sha256
    assert tags_of(s3.get_object_tagging(Bucket=obj.bucket, Key=obj.key)) == plan.tags


def test_a_changed_raw_is_not_uploaded(moto: Moto, tmp_path: Path) -> None:
    from imagefactory.errors import FactoryError

    plan, raw = release(tmp_path, "release-0.3.0", 1)
    raw.write_bytes(b"not the release")
    with pytest.raises(FactoryError, match="nothing was uploaded"):
        aws_import.execute(plan, raw, lambda service, region: moto.client(service, region))
    with pytest.raises(ClientError, match="404"):
        moto.client("s3").head_object(Bucket=BUCKET, Key=plan.s3_object.key)


def test_what_moto_lacks(moto: Moto, imported: Imported) -> None:
    """The README's list. A failure here means moto gained the call: use it and update the README."""
    plan, ec2 = imported.plan, moto.client("ec2")
    missing = {
        "ImportSnapshot": lambda: aws_import.import_snapshot_task(ec2, plan, sleep=lambda _: None),
        "DescribeImportSnapshotTasks": lambda: ec2.describe_import_snapshot_tasks(ImportTaskIds=["import-snap-1"]),
        "EnableImageDeprecation": lambda: aws_import.enable_deprecation(
            ec2, plan.deprecation_request(imported.result.amis[REGION])
        ),
    }
    for name, call in missing.items():
        with pytest.raises((ClientError, ResponseParserError), match="500"):
            call()
        assert name in moto.sent, f"{name} went to moto's server (botocore validated it)"
    # PutObject stores a ChecksumSHA256 as sent, without checking it against the body.
    wrong = base64.b64encode(b"\0" * 32).decode()
    moto.client("s3").put_object(
        Bucket=BUCKET, Key="unchecked", Body=b"x", ChecksumAlgorithm="SHA256", ChecksumSHA256=wrong
    )
