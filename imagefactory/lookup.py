"""Find an image by its version: the `aws ec2 describe-images --filters tag:ImageVersion=…` of
this project, for people and scripts.

    python -m imagefactory.lookup --version release-0.1.0                      # local registry: qcow2 path
    python -m imagefactory.lookup --version release-0.1.0 --format vhd
    python -m imagefactory.lookup --target aws --version release-0.1.0 --region eu-west-1 --owner 123456789012

AWS credentials come from the usual environment (profile, role, variables); nothing is logged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imagefactory.errors import FactoryError, run_step

REVOKED_TAG = "ImageRevoked"


def find_ami(client, version: str, owner: str, allow_revoked: bool = False) -> str:
    """The one AMI of `owner` tagged ImageVersion=`version`; refuse none or several, and a revoked
    one (tagged ImageRevoked=<reason>) unless allow_revoked."""
    response = client.describe_images(Owners=[owner], Filters=[{"Name": "tag:ImageVersion", "Values": [version]}])
    images = response.get("Images", [])
    if not images:
        raise FactoryError(f"no AMI owned by {owner} is tagged ImageVersion={version}")
    if len(images) > 1:
        ids = ", ".join(sorted(i["ImageId"] for i in images))
        raise FactoryError(f"{len(images)} AMIs owned by {owner} are tagged ImageVersion={version}: {ids}")
    tags = {t["Key"]: t["Value"] for t in images[0].get("Tags", [])}
    if REVOKED_TAG in tags and not allow_revoked:
        raise FactoryError(
            f"{version} ({images[0]['ImageId']}) is revoked: {tags[REVOKED_TAG]}; it must never be launched again "
            "(--allow-revoked reads it anyway)"
        )
    return images[0]["ImageId"]


def aws_client(region: str, endpoint_url: str | None):
    import boto3

    # A new session reads the credentials now (boto3's default session keeps the first it found)
    return boto3.session.Session().client("ec2", region_name=region, endpoint_url=endpoint_url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the image ID or file of an image version.")
    parser.add_argument("--version", required=True)
    parser.add_argument("--target", choices=("local", "aws"), default="local")
    parser.add_argument("--registry", type=Path, default=Path(".state/registry"))
    parser.add_argument("--format", default="qcow2")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--owner", help="AWS account that owns the AMI (required for aws: never trust any owner)")
    parser.add_argument("--endpoint-url", help="an EC2 endpoint other than AWS's, e.g. a local emulator")
    parser.add_argument("--allow-revoked", action="store_true", help="find a revoked version anyway")
    args = parser.parse_args(argv)
    return run_step("lookup", lambda: print(find(args)))


def find(args: argparse.Namespace) -> str:
    if args.target == "aws":
        if not args.owner:
            raise FactoryError("--owner is required for aws: an AMI is only trusted from a pinned owner")
        return find_ami(aws_client(args.region, args.endpoint_url), args.version, args.owner, args.allow_revoked)
    from imagefactory.registry import lookup_file

    return lookup_file(args.registry, args.version, args.format, args.allow_revoked)["path"]


if __name__ == "__main__":
    sys.exit(main())
