"""Lifecycle of published AMIs, by version: list, copy, deprecate, revoke, deregister (with snapshots).

    python -m imagefactory.aws_lifecycle list       --owner O [--region R]
    python -m imagefactory.aws_lifecycle copy       --version V --owner O --region R --to R2 [--to R3]
    python -m imagefactory.aws_lifecycle deprecate  --version V --owner O --region R --at 2027-01-01T00:00:00Z
    python -m imagefactory.aws_lifecycle revoke     --version V --owner O --region R --reason TEXT
    python -m imagefactory.aws_lifecycle deregister --version V --owner O --region R

Deregistering also deletes the AMI's EBS snapshots, which a plain deregistration (and Packer's
force_deregister) leaves behind and keeps billing. AWS credentials come from the usual
environment; nothing is logged. --endpoint-url points at an emulator for tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from imagefactory.errors import FactoryError
from imagefactory.lookup import REVOKED_TAG, find_ami


def client(region: str, endpoint_url: str | None):
    import boto3

    # A new session reads the credentials now (boto3's default session keeps the first it found)
    return boto3.session.Session().client("ec2", region_name=region, endpoint_url=endpoint_url)


def list_versions(ec2, owner: str) -> list[dict[str, Any]]:
    """Every AMI of `owner` that carries an ImageVersion tag, oldest first."""
    images = ec2.describe_images(Owners=[owner], Filters=[{"Name": "tag-key", "Values": ["ImageVersion"]}])["Images"]
    rows = []
    for image in images:
        tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
        rows.append(
            {
                "version": tags["ImageVersion"],
                "image_id": image["ImageId"],
                "created": image.get("CreationDate", ""),
                "deprecated": image.get("DeprecationTime", ""),
            }
        )
    return sorted(rows, key=lambda r: (r["created"], r["version"]))


def copy(
    source_region: str, regions: list[str], version: str, owner: str, endpoint_url: str | None = None
) -> dict[str, str]:
    """Copy the version's AMI to more regions, with its tags; regions that have it already are kept."""
    source = client(source_region, endpoint_url)
    image_id = find_ami(source, version, owner)
    image = source.describe_images(ImageIds=[image_id])["Images"][0]
    tags = [t for t in image.get("Tags", []) if not t["Key"].startswith("aws:")]
    result = {source_region: image_id}
    for region in regions:
        target = client(region, endpoint_url)
        try:
            result[region] = find_ami(target, version, owner)
            continue
        except FactoryError:
            pass
        copied = target.copy_image(
            Name=image["Name"],
            SourceImageId=image_id,
            SourceRegion=source_region,
            Description=image.get("Description", ""),
        )["ImageId"]
        target.create_tags(Resources=[copied], Tags=tags)
        result[region] = copied
    return result


def deprecate(ec2, version: str, owner: str, at: str) -> str:
    """Schedule the version's deprecation (EC2 hides deprecated AMIs from new launches by default)
    and record it in a DeprecateAt tag, which `list` shows."""
    image_id = find_ami(ec2, version, owner)
    ec2.create_tags(Resources=[image_id], Tags=[{"Key": "DeprecateAt", "Value": at}])
    ec2.enable_image_deprecation(ImageId=image_id, DeprecateAt=at)
    return image_id


def revoke(ec2, version: str, owner: str, reason: str, now: dt.datetime) -> dict[str, str]:
    """Never launch the version again: tag its AMI ImageRevoked=<reason> (lookups refuse it), then
    deprecate it at the next whole minute (EC2 takes no past time), which hides it from new launches."""
    reason = reason.strip()
    if not reason or len(reason) > 256:
        raise FactoryError(f"--reason has {len(reason)} characters; accepted: 1 to 256 (an EC2 tag value)")
    image_id = find_ami(ec2, version, owner, allow_revoked=True)
    at = (now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ec2.create_tags(
        Resources=[image_id],
        Tags=[{"Key": REVOKED_TAG, "Value": reason}, {"Key": "DeprecateAt", "Value": at}],
    )
    ec2.enable_image_deprecation(ImageId=image_id, DeprecateAt=at)
    return {"image_id": image_id, "revoked": reason, "deprecate_at": at}


def deprecate_now(ec2, image_id: str, now: dt.datetime) -> str:
    """Deprecate one AMI (by id) at the first whole minute at least a minute away (EC2 takes no past
    time, and the request takes a moment): what a revocation carried by `pulumi up` does in each
    region, where the stack already tags the AMI ImageRevoked."""
    at = (now.replace(second=0, microsecond=0) + dt.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ec2.enable_image_deprecation(ImageId=image_id, DeprecateAt=at)
    return at


def deregister(ec2, version: str, owner: str) -> dict[str, Any]:
    """Deregister the version's AMI, then delete the snapshots it was made of."""
    image_id = find_ami(ec2, version, owner)
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    snapshots = [
        m["Ebs"]["SnapshotId"]
        for m in image.get("BlockDeviceMappings", [])
        if "Ebs" in m and m["Ebs"].get("SnapshotId")
    ]
    ec2.deregister_image(ImageId=image_id)
    for snapshot in snapshots:
        ec2.delete_snapshot(SnapshotId=snapshot)
    return {"image_id": image_id, "deleted_snapshots": snapshots}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Lifecycle of published AMIs, by version.")
    parser.add_argument("command", choices=("list", "copy", "deprecate", "revoke", "deregister", "deprecate-now"))
    parser.add_argument("--owner", required=True, help="the account that owns the AMIs (always pinned)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--version")
    parser.add_argument("--to", action="append", default=[], help="copy: a destination region (repeatable)")
    parser.add_argument("--at", help="deprecate: RFC 3339 time, e.g. 2027-01-01T00:00:00Z")
    parser.add_argument("--reason", default="", help="revoke: why the version must never be launched again")
    parser.add_argument("--image-id", help="deprecate-now: the AMI to deprecate at the next minute")
    parser.add_argument("--endpoint-url")
    args = parser.parse_args(argv)
    try:
        if args.command == "deprecate-now":
            if not args.image_id:
                raise FactoryError("deprecate-now needs --image-id (e.g. ami-0123456789abcdef0)")
            at = deprecate_now(client(args.region, args.endpoint_url), args.image_id, dt.datetime.now(dt.UTC))
            print(json.dumps({"image_id": args.image_id, "deprecate_at": at}))
            return 0
        if args.command != "list" and not args.version:
            raise FactoryError(f"{args.command} needs --version (e.g. release-0.1.0)")
        ec2 = client(args.region, args.endpoint_url)
        if args.command == "list":
            output: Any = list_versions(ec2, args.owner)
        elif args.command == "copy":
            if not args.to:
                raise FactoryError("copy needs at least one --to region")
            output = copy(args.region, args.to, args.version, args.owner, args.endpoint_url)
        elif args.command == "deprecate":
            if not args.at:
                raise FactoryError("deprecate needs --at, an RFC 3339 time such as 2027-01-01T00:00:00Z")
            output = {"image_id": deprecate(ec2, args.version, args.owner, args.at), "deprecate_at": args.at}
        elif args.command == "revoke":
            output = revoke(ec2, args.version, args.owner, args.reason, dt.datetime.now(dt.UTC))
        else:
            output = deregister(ec2, args.version, args.owner)
    except FactoryError as exc:
        print(f"aws: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # botocore errors: say what AWS said, without a traceback
        if type(exc).__module__.startswith("botocore"):
            print(f"aws: {exc}", file=sys.stderr)
            return 1
        raise
    print(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
