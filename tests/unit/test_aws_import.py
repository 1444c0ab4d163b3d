"""The AWS import's plan (imagefactory.aws_import): its requests against botocore's model of the AWS
API, the AwsImage component's resource inputs against the plan (Pulumi mocks), and the steps that
moto lacks (import-snapshot and its wait) with botocore's Stubber. No network."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import botocore.validate
import pulumi
import pytest
from botocore.stub import Stubber

from imagefactory import aws_import
from imagefactory.aws_import import ImageSpec, S3Object, SnapshotImport, layout, plan
from imagefactory.cloud import aws_settings, image_tags
from imagefactory.errors import FactoryError
from tests.helpers import ROOT

SETTINGS = aws_settings(
    {"bucket": "imports", "region": "eu-west-1", "copyRegions": ["eu-central-1", "us-east-1"], "deprecateAfterDays": 30}
)
DISK = b"sealed raw disk"
FACTS = {"upstream": "u" * 64, "raw_sha256": hashlib.sha256(DISK).hexdigest(), "build_time": "2025-01-01T00:00:00Z"}
PLAN = plan(SETTINGS, "release-0.1.0", "debian-12", "c" * 40, **FACTS)
SNAPSHOT = "snap-0123456789abcdef0"
AMI = "ami-0123456789abcdef0"


def tags_of(pairs: list[dict[str, str]]) -> dict[str, str]:
    return {pair["Key"]: pair["Value"] for pair in pairs}


def test_the_plan_holds_every_parameter_of_the_import() -> None:
    assert PLAN.region == "eu-west-1" and PLAN.copy_regions == ("eu-central-1", "us-east-1")
    assert PLAN.s3_object == S3Object("imports", "imagefactory/release-0.1.0/debian-12-release-0.1.0.raw", "SHA256")
    assert PLAN.snapshot == SnapshotImport("debian-12 release-0.1.0", "RAW", "vmimport")
    assert PLAN.tags == image_tags("release-0.1.0", "c" * 40, "u" * 64, "debian-12")
    assert PLAN.deprecate_at == "2025-01-31T00:00:00Z", "the build time plus deprecateAfterDays"
    assert PLAN.register_image_request(SNAPSHOT) == {
        "Name": "debian-12-release-0.1.0",
        "Description": f"debian-12 release-0.1.0 ({'c' * 12})",
        "Architecture": "x86_64",
        "BootMode": "uefi-preferred",
        "EnaSupport": True,
        "ImdsSupport": "v2.0",
        "VirtualizationType": "hvm",
        "RootDeviceName": "/dev/xvda",
        "BlockDeviceMappings": [
            {
                "DeviceName": "/dev/xvda",
                "Ebs": {"SnapshotId": SNAPSHOT, "VolumeType": "gp3", "DeleteOnTermination": True},
            }
        ],
    }
    assert PLAN.import_snapshot_request() == {
        "Description": "debian-12 release-0.1.0",
        "DiskContainer": {
            "Format": "RAW",
            "UserBucket": {"S3Bucket": "imports", "S3Key": "imagefactory/release-0.1.0/debian-12-release-0.1.0.raw"},
        },
        "RoleName": "vmimport",
        "TagSpecifications": [{"ResourceType": "import-snapshot-task", "Tags": PLAN.tag_list()}],
    }
    put = PLAN.put_object_request()
    assert base64.b64decode(put["ChecksumSHA256"]) == hashlib.sha256(DISK).digest()
    assert dict(urllib.parse.parse_qsl(put["Tagging"])) == PLAN.tags
    assert PLAN.copy_image_request(AMI) == {
        "Name": "debian-12-release-0.1.0",
        "SourceImageId": AMI,
        "SourceRegion": "eu-west-1",
    }
    assert PLAN.deprecation_request(AMI) == {"ImageId": AMI, "DeprecateAt": "2025-01-31T00:00:00Z"}


def test_the_layout_is_the_plan_without_the_build_facts() -> None:
    assert layout(SETTINGS, "release-0.1.0", "debian-12", "c" * 40) == dataclasses.replace(
        PLAN, tags={}, deprecate_at="", raw_sha256=""
    )
    assert PLAN.image == ImageSpec("debian-12-release-0.1.0", f"debian-12 release-0.1.0 ({'c' * 12})")


def test_the_plan_module_loads_neither_pulumi_nor_boto3() -> None:
    probe = "import sys, imagefactory.aws_import; print(sorted(m for m in ('pulumi', 'boto3') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_a_raw_digest_that_is_not_sha256_is_refused() -> None:
    with pytest.raises(FactoryError, match="64 hex digits"):
        dataclasses.replace(PLAN, raw_sha256="r" * 64).put_object_request()


# ---- the requests against botocore's model of the API (names, types, required, lengths, enums) ----

MODELS = botocore.session.get_session()


def enum_errors(shape: Any, value: Any, path: str) -> list[str]:
    """botocore's validation checks names, types, required members and lengths, not enums: this does."""
    if shape.type_name == "structure":
        return [e for key, item in value.items() for e in enum_errors(shape.members[key], item, f"{path}.{key}")]
    if shape.type_name == "list":
        return [e for i, item in enumerate(value) for e in enum_errors(shape.member, item, f"{path}[{i}]")]
    if shape.type_name == "string" and shape.enum and value not in shape.enum:
        return [f"{path} is {value!r}; the API accepts {shape.enum}"]
    return []


def check_request(service: str, operation: str, request: dict[str, Any]) -> None:
    shape = MODELS.get_service_model(service).operation_model(operation).input_shape
    botocore.validate.validate_parameters(request, shape)
    assert enum_errors(shape, request, operation) == []


REQUESTS = [
    ("s3", "PutObject", PLAN.put_object_request()),
    ("s3", "CreateMultipartUpload", PLAN.create_multipart_upload_request()),
    ("ec2", "ImportSnapshot", PLAN.import_snapshot_request()),
    ("ec2", "RegisterImage", PLAN.register_image_request(SNAPSHOT)),
    ("ec2", "CopyImage", PLAN.copy_image_request(AMI)),
    ("ec2", "EnableImageDeprecation", PLAN.deprecation_request(AMI)),
    ("ec2", "CreateTags", PLAN.create_tags_request(AMI)),
]


@pytest.mark.parametrize(("service", "operation", "request_"), REQUESTS, ids=[r[1] for r in REQUESTS])
def test_every_request_of_the_plan_is_valid_for_the_aws_api(service: str, operation: str, request_: dict) -> None:
    check_request(service, operation, request_)


def test_the_model_check_catches_a_wrong_value() -> None:
    wrong = {**PLAN.register_image_request(SNAPSHOT), "BootMode": "UEFI", "ImdsSupport": "v2"}
    with pytest.raises(AssertionError, match="BootMode"):
        check_request("ec2", "RegisterImage", wrong)
    with pytest.raises(botocore.exceptions.ParamValidationError):
        check_request("ec2", "RegisterImage", {**wrong, "EnaSupport": "yes"})


# ---- the AwsImage component maps the plan, and nothing else ----

CAPTURED: dict[str, dict[str, Any]] = {}


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        CAPTURED[args.name] = {"type": args.typ, "inputs": args.inputs}
        ids = {"aws:ebs/snapshotImport:SnapshotImport": SNAPSHOT, "aws:ec2/ami:Ami": AMI}
        return ids.get(args.typ, f"{args.name}-id"), dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


@pytest.fixture
def mocked() -> None:
    CAPTURED.clear()
    pulumi.runtime.set_mocks(Mocks(), preview=False)


def expected_inputs(p: aws_import.AwsImportPlan) -> dict[str, dict[str, Any]]:
    """The plan's API requests in pulumi_aws's input names: what the component must register."""
    put = p.put_object_request()
    imported = p.import_snapshot_request()
    register = p.register_image_request(SNAPSHOT)
    (mapping,) = register["BlockDeviceMappings"]
    tags = tags_of(p.create_tags_request(AMI)["Tags"])
    deprecate_at = p.deprecation_request(AMI)["DeprecateAt"]
    expected = {
        "release-0.1.0-disk": {
            "bucket": put["Bucket"],
            "key": put["Key"],
            "checksumAlgorithm": put["ChecksumAlgorithm"],
            "tags": dict(urllib.parse.parse_qsl(put["Tagging"])),
            "region": p.region,
        },
        "release-0.1.0-snapshot": {
            "diskContainer": {
                "format": imported["DiskContainer"]["Format"],
                "userBucket": {
                    "s3Bucket": imported["DiskContainer"]["UserBucket"]["S3Bucket"],
                    "s3Key": imported["DiskContainer"]["UserBucket"]["S3Key"],
                },
            },
            "roleName": imported["RoleName"],
            "description": imported["Description"],
            "tags": tags_of(imported["TagSpecifications"][0]["Tags"]),
            "region": p.region,
        },
        "release-0.1.0-ami": {
            "name": register["Name"],
            "description": register["Description"],
            "architecture": register["Architecture"],
            "bootMode": register["BootMode"],
            "enaSupport": register["EnaSupport"],
            "imdsSupport": register["ImdsSupport"],
            "virtualizationType": register["VirtualizationType"],
            "rootDeviceName": register["RootDeviceName"],
            "ebsBlockDevices": [
                {
                    "deviceName": mapping["DeviceName"],
                    "snapshotId": mapping["Ebs"]["SnapshotId"],
                    "volumeType": mapping["Ebs"]["VolumeType"],
                    "deleteOnTermination": mapping["Ebs"]["DeleteOnTermination"],
                }
            ],
            "deprecationTime": deprecate_at,
            "tags": tags,
            "region": p.region,
        },
    }
    for region in p.copy_regions:
        copy = p.copy_image_request(AMI)
        expected[f"release-0.1.0-ami-{region}"] = {
            "name": copy["Name"],
            "sourceAmiId": copy["SourceImageId"],
            "sourceAmiRegion": copy["SourceRegion"],
            "deprecationTime": deprecate_at,
            "tags": tags,
            "region": region,
        }
    return expected


def component(raw_path: str = "/registry/x.raw"):  # type: ignore[no-untyped-def]  # a test helper; its callers pass whatever the mocked API takes
    from components.aws_image import AwsImage

    return AwsImage(
        "release-0.1.0",
        {
            "version": "release-0.1.0",
            "is_release": True,
            "commit": "c" * 40,
            "raw_path": raw_path,
            "image_name": "debian-12",
            "settings": SETTINGS,
            **FACTS,
        },
    )


@pulumi.runtime.test
def test_the_component_registers_exactly_the_plans_parameters(mocked: None):
    image = component()

    def check(amis: dict) -> None:
        assert amis == {
            "eu-west-1": AMI,
            "eu-central-1": "release-0.1.0-ami-eu-central-1-id",
            "us-east-1": ("release-0.1.0-ami-us-east-1-id"),
        }
        expected = expected_inputs(PLAN)
        registered = {n: r for n, r in CAPTURED.items() if r["type"].startswith("aws:")}
        assert set(registered) == set(expected)
        for name, wanted in expected.items():
            inputs = dict(registered[name]["inputs"])
            if name.endswith("-disk"):
                assert inputs.pop("source").path == "/registry/x.raw"
            assert inputs == wanted, f"{name}: the component's inputs differ from the plan's"

    return image.amis.apply(check)


# ---- the steps moto lacks, and the guards, with botocore's Stubber (which validates each request) ----


def stubbed(service: str):  # type: ignore[no-untyped-def]  # a test helper; its callers pass whatever the mocked API takes
    return boto3.client(service, region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")


def task(status: str, **detail: Any) -> dict[str, Any]:
    return {
        "ImportSnapshotTasks": [{"ImportTaskId": "import-snap-1", "SnapshotTaskDetail": {"Status": status, **detail}}]
    }


def test_the_snapshot_import_waits_for_the_task_and_returns_its_snapshot() -> None:
    ec2, slept = stubbed("ec2"), []
    with Stubber(ec2) as stub:
        stub.add_response("import_snapshot", {"ImportTaskId": "import-snap-1"}, PLAN.import_snapshot_request())
        stub.add_response(
            "describe_import_snapshot_tasks", task("active", Progress="42"), {"ImportTaskIds": ["import-snap-1"]}
        )
        stub.add_response(
            "describe_import_snapshot_tasks",
            task("completed", SnapshotId=SNAPSHOT),
            {"ImportTaskIds": ["import-snap-1"]},
        )
        assert aws_import.import_snapshot_task(ec2, PLAN, poll_seconds=7, sleep=slept.append) == SNAPSHOT
        stub.assert_no_pending_responses()
    assert slept == [7]


def test_a_failed_snapshot_import_names_the_task_and_the_reason() -> None:
    ec2 = stubbed("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("import_snapshot", {"ImportTaskId": "import-snap-1"}, PLAN.import_snapshot_request())
        stub.add_response(
            "describe_import_snapshot_tasks",
            task("deleted", StatusMessage="ClientError: Disk validation failed"),
            {"ImportTaskIds": ["import-snap-1"]},
        )
        with pytest.raises(FactoryError, match=r"import-snap-1 .* ended deleted: ClientError: Disk validation failed"):
            aws_import.import_snapshot_task(ec2, PLAN, sleep=lambda _: None)


def test_a_snapshot_import_that_outlives_the_timeout_stops_waiting() -> None:
    ec2, now = stubbed("ec2"), iter([0.0, 5.0, 11.0])
    with Stubber(ec2) as stub:
        stub.add_response("import_snapshot", {"ImportTaskId": "import-snap-1"}, PLAN.import_snapshot_request())
        for _ in range(2):
            stub.add_response("describe_import_snapshot_tasks", task("active", Progress="3"), None)
        with pytest.raises(FactoryError, match=r"still active after 10 s \(3% done\)"):
            aws_import.import_snapshot_task(
                ec2, PLAN, timeout_seconds=10, sleep=lambda _: None, clock=lambda: next(now)
            )


def test_a_file_that_is_not_the_planned_raw_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(DISK + b"changed")
    s3 = stubbed("s3")
    with Stubber(s3), pytest.raises(FactoryError, match=r"not the .* of the release; nothing was uploaded"):
        aws_import.upload(s3, PLAN, raw)


def test_execute_needs_the_full_plan(tmp_path: Path) -> None:
    with pytest.raises(FactoryError, match=r"plan\(\), not layout\(\)"):
        aws_import.execute(layout(SETTINGS, "release-0.1.0", "debian-12", "c" * 40), tmp_path / "x.raw", stubbed)


def test_the_part_size_keeps_any_allowed_disk_within_s3s_10000_parts() -> None:
    assert aws_import.part_size_for(6 * 1024**3) == aws_import.PART_SIZE
    assert aws_import.part_size_for(6 * 1024**3, 1024) == aws_import.MIN_PART_SIZE
    terabyte = 1024 * 1024**3  # the largest diskSizeMiB
    size = aws_import.part_size_for(terabyte)
    assert size % 1024**2 == 0 and -(-terabyte // size) <= aws_import.MAX_PARTS
