"""Pure rules for the AWS and Azure targets: names, tags, owners, regions, dates.

Nothing here talks to a cloud; the components and the lifecycle commands use these rules so
that a unit test can check them directly.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from imagefactory.errors import FactoryError
from imagefactory.versions import DEFAULT_TAG_PREFIX, parse_release_tag

AWS_ACCOUNT = re.compile(r"^\d{12}$")
AWS_OWNER_ALIASES = ("amazon", "aws-marketplace")
AWS_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
AZURE_REGION = re.compile(r"^[a-z0-9]+$")
DEBIAN_AWS_OWNER = "136693071363"  # the Debian cloud team's AWS account

# The keys of imagefactory:aws and imagefactory:azure (README, "Cloud stacks").
AWS_KEYS = (
    "mode",
    "region",
    "copyRegions",
    "bucket",
    "importRole",
    "deprecateAfterDays",
    "sourceAmiOwner",
    "sourceAmiName",
    "instanceType",
)
AZURE_KEYS = (  # the string settings first, up to targetRegions
    "mode",
    "resourceGroup",
    "location",
    "storageAccount",
    "gallery",
    "imageDefinition",
    "publisher",
    "offer",
    "sku",
    "targetRegions",
    "endOfLifeDays",
    "marketplace",
)
MARKETPLACE_KEYS = ("publisher", "offer", "sku", "version")


@dataclass(frozen=True)
class AwsSettings:
    mode: str = "import"
    """import: upload the local release's RAW and import it (bit-for-bit the same image);
    native: Packer's amazon-ebs source builds in AWS from an owner-pinned AMI."""
    region: str = "us-east-1"
    copy_regions: tuple[str, ...] = ()
    bucket: str = ""
    """import: S3 bucket that receives the disk for the import."""
    import_role: str = "vmimport"
    deprecate_after_days: int = 365
    source_ami_owner: str = DEBIAN_AWS_OWNER
    source_ami_name: str = "debian-12-amd64-*"
    instance_type: str = "t3.small"


@dataclass(frozen=True)
class AzureSettings:
    mode: str = "import"
    resource_group: str = ""
    location: str = "westeurope"
    gallery: str = "imagefactory"
    image_definition: str = "debian-12"
    publisher: str = "imagefactory"
    offer: str = "debian"
    sku: str = "12"
    target_regions: tuple[tuple[str, int], ...] = (("westeurope", 1),)
    end_of_life_days: int = 365
    storage_account: str = ""
    marketplace: dict[str, str] = field(
        default_factory=lambda: {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": ""}
    )


def require_owner(owner: str) -> str:
    """An AMI filter without a pinned owner would accept anyone's image: refuse it, as Packer does."""
    if not owner:
        raise FactoryError(
            "imagefactory:aws.sourceAmiOwner is empty; an AMI filter must pin the owner "
            "(an account id such as 136693071363, or amazon / aws-marketplace)"
        )
    if not (AWS_ACCOUNT.match(owner) or owner in AWS_OWNER_ALIASES):
        raise FactoryError(
            f"imagefactory:aws.sourceAmiOwner is {owner!r}; accepted: a 12-digit account id, "
            f"{' or '.join(AWS_OWNER_ALIASES)}"
        )
    return owner


def _strings(prefix: str, raw: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in raw and not isinstance(raw[key], str):
            raise FactoryError(f"{prefix}{key} is {raw[key]!r}; accepted: a string")


def _days(key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 3650:
        raise FactoryError(f"{key} is {value!r}; accepted: a whole number of days from 1 to 3650")
    return value


def aws_settings(raw: dict[str, Any]) -> AwsSettings:
    from imagefactory.settings import check_known_keys, string_list

    check_known_keys("imagefactory:aws.", raw, AWS_KEYS)
    _strings("imagefactory:aws.", raw, ("mode", "region", "bucket", "importRole", "sourceAmiName", "instanceType"))
    mode = raw.get("mode", "import")
    if mode not in ("import", "native"):
        raise FactoryError(f"imagefactory:aws.mode is {mode!r}; accepted values: import, native")
    region = raw.get("region", "us-east-1")
    copies = tuple(string_list("imagefactory:aws.copyRegions", raw.get("copyRegions", []), "[eu-central-1, us-east-1]"))
    for name in (region, *copies):
        if not AWS_REGION.match(name):
            raise FactoryError(f"imagefactory:aws region {name!r} is not an AWS region name such as eu-west-1")
    if region in copies:
        raise FactoryError(f"imagefactory:aws.copyRegions lists {region}, the build region; list only the others")
    days = _days("imagefactory:aws.deprecateAfterDays", raw.get("deprecateAfterDays", 365))
    if mode == "import" and not raw.get("bucket"):
        raise FactoryError("imagefactory:aws.bucket is empty; the import mode uploads the disk to this S3 bucket")
    return AwsSettings(
        mode=mode,
        region=region,
        copy_regions=copies,
        bucket=raw.get("bucket", ""),
        import_role=raw.get("importRole", "vmimport"),
        deprecate_after_days=days,
        source_ami_owner=require_owner(str(raw.get("sourceAmiOwner", DEBIAN_AWS_OWNER))),
        source_ami_name=raw.get("sourceAmiName", "debian-12-amd64-*"),
        instance_type=raw.get("instanceType", "t3.small"),
    )


def azure_settings(raw: dict[str, Any]) -> AzureSettings:
    from imagefactory.settings import check_known_keys

    check_known_keys("imagefactory:azure.", raw, AZURE_KEYS)
    _strings("imagefactory:azure.", raw, AZURE_KEYS[: AZURE_KEYS.index("targetRegions")])
    mode = raw.get("mode", "import")
    if mode not in ("import", "native"):
        raise FactoryError(f"imagefactory:azure.mode is {mode!r}; accepted values: import, native")
    if not raw.get("resourceGroup"):
        raise FactoryError("imagefactory:azure.resourceGroup is empty; name the resource group of the gallery")
    regions = []
    listed = raw.get("targetRegions", [{"name": raw.get("location", "westeurope"), "replicas": 1}])
    if not isinstance(listed, list) or not listed:
        raise FactoryError(
            f"imagefactory:azure.targetRegions is {listed!r}; accepted: a non-empty list such as "
            "[{name: westeurope, replicas: 2}]"
        )
    for item in listed:
        if not isinstance(item, dict):
            raise FactoryError(
                f"imagefactory:azure.targetRegions: {item!r} is not an object; "
                "accepted: {name: westeurope, replicas: 2}"
            )
        check_known_keys("imagefactory:azure.targetRegions[].", item, ("name", "replicas"))
        name, replicas = item.get("name", ""), item.get("replicas", 1)
        if not isinstance(name, str):
            name = repr(name)
        if not AZURE_REGION.match(name):
            raise FactoryError(f"imagefactory:azure.targetRegions: {name!r} is not an Azure region such as westeurope")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or not 1 <= replicas <= 100:
            raise FactoryError(f"imagefactory:azure.targetRegions: replicas of {name} is {replicas!r}; accepted: 1-100")
        regions.append((name, replicas))
    given = raw.get("marketplace", {})
    if not isinstance(given, dict):
        raise FactoryError(
            f"imagefactory:azure.marketplace is {given!r}; accepted: an object "
            "{publisher: Debian, offer: debian-12, sku: 12-gen2, version: <pinned version>}"
        )
    check_known_keys("imagefactory:azure.marketplace.", given, MARKETPLACE_KEYS)
    _strings("imagefactory:azure.marketplace.", given, MARKETPLACE_KEYS)
    marketplace = {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "", **given}
    if mode == "native" and (not marketplace["version"] or marketplace["version"] == "latest"):
        raise FactoryError(
            "imagefactory:azure.marketplace.version must pin a version (not latest) for a reproducible native build"
        )
    if mode == "import" and not raw.get("storageAccount"):
        raise FactoryError("imagefactory:azure.storageAccount is empty; the import mode uploads the VHD there")
    return AzureSettings(
        mode=mode,
        resource_group=raw["resourceGroup"],
        location=raw.get("location", "westeurope"),
        gallery=raw.get("gallery", "imagefactory"),
        image_definition=raw.get("imageDefinition", "debian-12"),
        publisher=raw.get("publisher", "imagefactory"),
        offer=raw.get("offer", "debian"),
        sku=raw.get("sku", "12"),
        target_regions=tuple(regions),
        end_of_life_days=_days("imagefactory:azure.endOfLifeDays", raw.get("endOfLifeDays", 365)),
        storage_account=raw.get("storageAccount", ""),
        marketplace=marketplace,
    )


def image_tags(version: str, commit: str, upstream: str, name: str, revoked: str = "") -> dict[str, str]:
    """Tags on every AMI and snapshot: how people and scripts find an image by its version; a
    revoked version also carries ImageRevoked=<reason>, which the lookups refuse."""
    tags = {
        "Name": f"{name}-{version}",
        "ImageVersion": version,
        "ImageCommit": commit,
        "ImageUpstream": upstream[:255],
        "ManagedBy": "imagefactory",
    }
    if revoked:
        tags["ImageRevoked"] = revoked[:256]
    return tags


def gallery_version_name(version: str, prefix: str = DEFAULT_TAG_PREFIX) -> str:
    """release-X.Y.Z -> X.Y.Z, the only form a Compute Gallery version name takes."""
    major, minor, patch, pre = parse_release_tag(version, prefix)
    if pre:
        raise FactoryError(
            f"{version} has a pre-release part; Azure gallery versions are X.Y.Z only "
            "(publish release candidates as X.Y.Z with exclude_from_latest)"
        )
    return f"{major}.{minor}.{patch}"


def stage_image_definition(definition: str, stage: str) -> str:
    """The gallery image definition of a parent stage in a native Azure chain: the stack's
    definition named after the stage (debian-12 -> debian-12-base); the top stage keeps the stack's."""
    return f"{definition}-{stage}"


def is_release_candidate(version: str, prefix: str = DEFAULT_TAG_PREFIX) -> bool:
    return bool(parse_release_tag(version, prefix)[3])


def deprecation_time(build_time: str, days: int) -> str:
    """RFC 3339 time `days` after the build, at a whole minute (EC2 accepts no seconds)."""
    built = dt.datetime.strptime(build_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return (built + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:00Z")


def end_of_life_date(build_time: str, days: int) -> str:
    built = dt.datetime.strptime(build_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return (built + dt.timedelta(days=days)).strftime("%Y-%m-%dT00:00:00Z")
