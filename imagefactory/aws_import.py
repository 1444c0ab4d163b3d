"""The AWS import of one version, as data: the S3 object, the snapshot import, the AMI, its copies.

`plan()` is pure (no Pulumi, no boto3): it holds every request parameter of the import, and the
`*_request` methods give them in the AWS API's own names. Two consumers use the very same plan:

- components/aws_image.py maps it to pulumi_aws resources
  (BucketObjectv2 -> ebs.SnapshotImport -> ec2.Ami -> ec2.AmiCopy);
- `execute()` sends the requests with boto3: S3 upload with a SHA256 checksum read back,
  import-snapshot and its wait, register-image, copy-image, enable-image-deprecation, create-tags.

tests/unit/test_aws_import.py checks the requests against botocore's model of the API and the
component's resource inputs against the plan; tests/integration/test_aws_import.py runs
`execute()` against moto's server on 127.0.0.1 (README, "Run the AWS stack").
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagefactory.cloud import AwsSettings, deprecation_time, image_tags
from imagefactory.errors import FactoryError

SINGLE_PUT_LIMIT = 5 * 1024**3
"""S3 takes at most 5 GiB in one PUT; a larger disk goes up in parts."""
MIN_PART_SIZE = 5 * 1024**2
"""S3's smallest part (all but the last)."""
MAX_PARTS = 10_000
PART_SIZE = 64 * 1024**2
READ_CHUNK = 8 * 1024**2

Connect = Callable[[str, str], Any]
"""(service, region) -> a boto3 client."""


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str
    checksum_algorithm: str = "SHA256"


@dataclass(frozen=True)
class SnapshotImport:
    description: str
    disk_format: str
    role_name: str


@dataclass(frozen=True)
class ImageSpec:
    """The register-image parameters, without the snapshot (the import makes it)."""

    name: str
    description: str
    architecture: str = "x86_64"
    boot_mode: str = "uefi-preferred"
    """uefi-preferred for a disk that boots under both (UEFI where the instance type offers it, else
    legacy BIOS); uefi for a version published as a UEFI-only disk (boot_mode_for)."""
    ena_support: bool = True
    imds_support: str = "v2.0"
    virtualization_type: str = "hvm"
    root_device_name: str = "/dev/xvda"
    volume_type: str = "gp3"
    delete_on_termination: bool = True


@dataclass(frozen=True)
class AwsImportPlan:
    region: str
    copy_regions: tuple[str, ...]
    s3_object: S3Object
    snapshot: SnapshotImport
    image: ImageSpec
    tags: dict[str, str] = field(default_factory=dict)
    """On the S3 object, the snapshot, the AMI and every copy."""
    deprecate_at: str = ""
    raw_sha256: str = ""
    """Hex SHA-256 of the sealed RAW; the S3 object's checksum."""

    def tag_list(self) -> list[dict[str, str]]:
        return [{"Key": key, "Value": value} for key, value in self.tags.items()]

    def checksum_sha256(self) -> str:
        """The RAW's SHA-256 in the form S3 takes and returns it (base64 of the 32 bytes)."""
        try:
            digest = bytes.fromhex(self.raw_sha256)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise FactoryError(f"the RAW's sha256 is {self.raw_sha256!r}; accepted: 64 hex digits")
        return base64.b64encode(digest).decode()

    def tagging(self) -> str:
        return urllib.parse.urlencode(self.tags, quote_via=urllib.parse.quote)

    def put_object_request(self) -> dict[str, Any]:
        """PutObject without the body: S3 refuses the upload if the body's SHA-256 differs."""
        return {
            "Bucket": self.s3_object.bucket,
            "Key": self.s3_object.key,
            "ChecksumAlgorithm": self.s3_object.checksum_algorithm,
            "ChecksumSHA256": self.checksum_sha256(),
            "Tagging": self.tagging(),
        }

    def create_multipart_upload_request(self) -> dict[str, Any]:
        return {
            "Bucket": self.s3_object.bucket,
            "Key": self.s3_object.key,
            "ChecksumAlgorithm": self.s3_object.checksum_algorithm,
            "Tagging": self.tagging(),
        }

    def import_snapshot_request(self) -> dict[str, Any]:
        return {
            "Description": self.snapshot.description,
            "DiskContainer": {
                "Format": self.snapshot.disk_format,
                "UserBucket": {"S3Bucket": self.s3_object.bucket, "S3Key": self.s3_object.key},
            },
            "RoleName": self.snapshot.role_name,
            "TagSpecifications": [{"ResourceType": "import-snapshot-task", "Tags": self.tag_list()}],
        }

    def register_image_request(self, snapshot_id: str) -> dict[str, Any]:
        image = self.image
        return {
            "Name": image.name,
            "Description": image.description,
            "Architecture": image.architecture,
            "BootMode": image.boot_mode,
            "EnaSupport": image.ena_support,
            "ImdsSupport": image.imds_support,
            "VirtualizationType": image.virtualization_type,
            "RootDeviceName": image.root_device_name,
            "BlockDeviceMappings": [
                {
                    "DeviceName": image.root_device_name,
                    "Ebs": {
                        "SnapshotId": snapshot_id,
                        "VolumeType": image.volume_type,
                        "DeleteOnTermination": image.delete_on_termination,
                    },
                }
            ],
        }

    def copy_image_request(self, source_image_id: str) -> dict[str, Any]:
        """Sent in the destination region. Tags go on with create_tags, as on the other resources."""
        return {"Name": self.image.name, "SourceImageId": source_image_id, "SourceRegion": self.region}

    def deprecation_request(self, image_id: str) -> dict[str, Any]:
        return {"ImageId": image_id, "DeprecateAt": self.deprecate_at}

    def create_tags_request(self, resource_id: str) -> dict[str, Any]:
        return {"Resources": [resource_id], "Tags": self.tag_list()}


def boot_mode_for(firmwares: tuple[str, ...]) -> str:
    """The AMI's boot mode for the firmwares the version's disk boots under."""
    if "bios" in firmwares and "uefi" in firmwares:
        return "uefi-preferred"
    return "uefi" if "uefi" in firmwares else "legacy-bios"


def layout(
    settings: AwsSettings, version: str, image_name: str, commit: str, firmwares: tuple[str, ...] = ("bios", "uefi")
) -> AwsImportPlan:
    """The plan before the build: every field the build's outputs (upstream digest, RAW digest,
    build time) do not decide. The component reads these as plain values, so that names and
    other replace-on-change inputs stay known in a preview while the build is still to run."""
    full_name = f"{image_name}-{version}"
    return AwsImportPlan(
        region=settings.region,
        copy_regions=tuple(settings.copy_regions),
        s3_object=S3Object(bucket=settings.bucket, key=f"imagefactory/{version}/{full_name}.raw"),
        snapshot=SnapshotImport(
            description=f"{image_name} {version}", disk_format="RAW", role_name=settings.import_role
        ),
        image=ImageSpec(
            name=full_name, description=f"{image_name} {version} ({commit[:12]})", boot_mode=boot_mode_for(firmwares)
        ),
    )


def plan(
    settings: AwsSettings,
    version: str,
    image_name: str,
    commit: str,
    upstream: str,
    raw_sha256: str,
    build_time: str,
    firmwares: tuple[str, ...] = ("bios", "uefi"),
) -> AwsImportPlan:
    """Every request parameter of the import of one version."""
    return dataclasses.replace(
        layout(settings, version, image_name, commit, firmwares),
        tags=image_tags(version, commit, upstream, image_name),
        deprecate_at=deprecation_time(build_time, settings.deprecate_after_days),
        raw_sha256=raw_sha256,
    )


# ---- execution with boto3 ---------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    snapshot_id: str
    amis: dict[str, str]
    """region -> AMI id, the import region first."""


def session_clients(session: Any = None, endpoint_url: str | None = None) -> Connect:
    """Clients from a boto3 session (credentials from the usual environment), one per service and region."""
    import boto3

    session = session or boto3.Session()
    made: dict[tuple[str, str], Any] = {}

    def connect(service: str, region: str) -> Any:
        if (service, region) not in made:
            made[service, region] = session.client(service, region_name=region, endpoint_url=endpoint_url)
        return made[service, region]

    return connect


def _digests(path: Path, part_size: int) -> tuple[str, list[bytes]]:
    """The file's hex SHA-256 and the SHA-256 of each part of `part_size` bytes, in one read."""
    whole = hashlib.sha256()
    parts: list[bytes] = []
    with path.open("rb") as disk:
        while True:
            part = hashlib.sha256()
            left = part_size
            while left:
                chunk = disk.read(min(READ_CHUNK, left))
                if not chunk:
                    break
                whole.update(chunk)
                part.update(chunk)
                left -= len(chunk)
            if left == part_size:
                break
            parts.append(part.digest())
    return whole.hexdigest(), parts


def part_size_for(size: int, wanted: int = PART_SIZE) -> int:
    """The part size for a disk of `size` bytes: `wanted`, raised to whole MiB so that at most
    10,000 parts (S3's limit) hold the disk."""
    needed = -(-size // MAX_PARTS)
    return max(wanted, MIN_PART_SIZE, -(-needed // 1024**2) * 1024**2)


def upload(
    s3: Any,
    plan: AwsImportPlan,
    raw_path: Path,
    part_size: int = PART_SIZE,
    single_put_limit: int = SINGLE_PUT_LIMIT,
) -> str:
    """Upload the RAW with its SHA-256 checksum and read the checksum back; returns it as S3 states it.

    Up to `single_put_limit` (5 GiB, S3's limit) in one PUT whose checksum is the RAW's SHA-256;
    above, in parts, each with its own SHA-256, and S3's checksum of the object is the SHA-256 of
    the parts' digests with the part count ("…=-N"). The file must hash to the plan's raw_sha256
    before anything is sent."""
    size = raw_path.stat().st_size
    multipart = size > single_put_limit
    part_size = part_size_for(size, part_size) if multipart else max(size, 1)
    digest, parts = _digests(raw_path, part_size)
    if digest != plan.raw_sha256:
        raise FactoryError(
            f"{raw_path} has sha256 {digest}, not the {plan.raw_sha256} of the release; nothing was uploaded"
        )
    obj = plan.s3_object
    if not multipart:
        expected = plan.checksum_sha256()
        with raw_path.open("rb") as body:
            s3.put_object(**plan.put_object_request(), Body=body, ContentLength=size)
    else:
        expected = f"{base64.b64encode(hashlib.sha256(b''.join(parts)).digest()).decode()}-{len(parts)}"
        upload_id = s3.create_multipart_upload(**plan.create_multipart_upload_request())["UploadId"]
        try:
            done = []
            with raw_path.open("rb") as disk:
                for number, part_digest in enumerate(parts, start=1):
                    checksum = base64.b64encode(part_digest).decode()
                    answer = s3.upload_part(
                        Bucket=obj.bucket,
                        Key=obj.key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=disk.read(part_size),
                        ChecksumAlgorithm=obj.checksum_algorithm,
                        ChecksumSHA256=checksum,
                    )
                    done.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum})
            s3.complete_multipart_upload(
                Bucket=obj.bucket, Key=obj.key, UploadId=upload_id, MultipartUpload={"Parts": done}
            )
        except BaseException:
            s3.abort_multipart_upload(Bucket=obj.bucket, Key=obj.key, UploadId=upload_id)
            raise
    head = s3.head_object(Bucket=obj.bucket, Key=obj.key, ChecksumMode="ENABLED")
    stated = head.get("ChecksumSHA256", "")
    # S3 states a multipart object's checksum with its part count; moto 5.2.5 states it without.
    accepted = {expected, expected.rsplit("-", 1)[0]} if multipart else {expected}
    if head.get("ContentLength") != size or stated not in accepted:
        raise FactoryError(
            f"s3://{obj.bucket}/{obj.key} reads back as {head.get('ContentLength')} bytes with sha256 checksum "
            f"{stated or 'none'}; uploaded {size} bytes with {expected}"
        )
    return stated


def import_snapshot_task(
    ec2: Any,
    plan: AwsImportPlan,
    poll_seconds: float = 15.0,
    timeout_seconds: float = 4 * 3600,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """import_snapshot of the S3 object, then describe_import_snapshot_tasks until the task completes;
    returns the snapshot id."""
    task = ec2.import_snapshot(**plan.import_snapshot_request())["ImportTaskId"]
    deadline = clock() + timeout_seconds
    while True:
        tasks = ec2.describe_import_snapshot_tasks(ImportTaskIds=[task])["ImportSnapshotTasks"]
        detail = tasks[0].get("SnapshotTaskDetail", {}) if tasks else {}
        status = detail.get("Status", "")
        if status == "completed":
            return str(detail["SnapshotId"])
        if status in ("deleting", "deleted", "error"):
            raise FactoryError(
                f"import-snapshot task {task} of s3://{plan.s3_object.bucket}/{plan.s3_object.key} ended "
                f"{status}: {detail.get('StatusMessage', 'no message')}"
            )
        if clock() >= deadline:
            raise FactoryError(
                f"import-snapshot task {task} still {status or 'unknown'} after {timeout_seconds:.0f} s "
                f"({detail.get('Progress', '?')}% done); it keeps running in AWS"
            )
        sleep(poll_seconds)


def enable_deprecation(ec2: Any, request: dict[str, Any]) -> None:
    ec2.enable_image_deprecation(**request)


def wait_available(ec2: Any, image_id: str, poll_seconds: float = 15.0, timeout_seconds: float = 3 * 3600) -> None:
    attempts = max(1, int(timeout_seconds // max(poll_seconds, 1)))
    ec2.get_waiter("image_available").wait(
        ImageIds=[image_id], WaiterConfig={"Delay": poll_seconds, "MaxAttempts": attempts}
    )


def execute(
    plan: AwsImportPlan,
    raw_path: Path,
    connect: Connect | None = None,
    *,
    import_snapshot: Callable[[Any, AwsImportPlan], str] = import_snapshot_task,
    deprecate: Callable[[Any, dict[str, Any]], None] = enable_deprecation,
    poll_seconds: float = 15.0,
) -> ImportResult:
    """Perform the plan with boto3. `import_snapshot` and `deprecate` are the steps that an emulator
    may lack (moto 5.2.5 has neither ImportSnapshot nor EnableImageDeprecation); a test passes
    stand-ins, everything else is the same code path."""
    if not (plan.tags and plan.deprecate_at and plan.raw_sha256):
        raise FactoryError("execute needs a complete plan (plan(), not layout()): tags, deprecate_at and raw_sha256")
    connect = connect or session_clients()
    s3 = connect("s3", plan.region)
    ec2 = connect("ec2", plan.region)
    upload(s3, plan, Path(raw_path))
    snapshot_id = import_snapshot(ec2, plan)
    ec2.create_tags(**plan.create_tags_request(snapshot_id))
    image_id = ec2.register_image(**plan.register_image_request(snapshot_id))["ImageId"]
    ec2.create_tags(**plan.create_tags_request(image_id))
    wait_available(ec2, image_id, poll_seconds)
    deprecate(ec2, plan.deprecation_request(image_id))
    amis = {plan.region: image_id}
    for region in plan.copy_regions:
        target = connect("ec2", region)
        copy_id = target.copy_image(**plan.copy_image_request(image_id))["ImageId"]
        target.create_tags(**plan.create_tags_request(copy_id))
        wait_available(target, copy_id, poll_seconds)
        deprecate(target, plan.deprecation_request(copy_id))
        amis[region] = copy_id
    return ImportResult(snapshot_id=snapshot_id, amis=amis)
