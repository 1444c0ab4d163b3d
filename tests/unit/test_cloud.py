"""Cloud rules: owners are pinned, names and dates follow the release, bad settings are named."""

import pytest

from imagefactory import cloud
from imagefactory.errors import FactoryError


def test_an_ami_filter_without_an_owner_is_refused() -> None:
    with pytest.raises(FactoryError, match="must pin the owner"):
        cloud.require_owner("")
    with pytest.raises(FactoryError, match="12-digit account id"):
        cloud.require_owner("someone")
    assert cloud.require_owner("136693071363") == "136693071363"
    assert cloud.require_owner("amazon") == "amazon"


def test_the_gallery_version_is_the_release_semver() -> None:
    assert cloud.gallery_version_name("release-1.2.3") == "1.2.3"
    with pytest.raises(FactoryError, match="not a release tag"):
        cloud.gallery_version_name("dev-0123abc")
    with pytest.raises(FactoryError, match="pre-release"):
        cloud.gallery_version_name("release-1.2.3-rc.1")
    assert cloud.is_release_candidate("release-1.2.3-rc.1")


def test_every_image_is_tagged_with_its_version() -> None:
    tags = cloud.image_tags("release-0.1.0", "a" * 40, "sha256:" + "b" * 64, "debian-12")
    assert tags["ImageVersion"] == "release-0.1.0"
    assert tags["Name"] == "debian-12-release-0.1.0"
    assert tags["ImageCommit"] == "a" * 40


def test_deprecation_and_end_of_life_follow_the_build_time() -> None:
    assert cloud.deprecation_time("2025-01-01T10:20:30Z", 30) == "2025-01-31T10:20:00Z"
    assert cloud.end_of_life_date("2025-01-01T10:20:30Z", 365) == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"mode": "ami"}, "imagefactory:aws.mode is 'ami'; accepted values: import, native"),
        ({"bucket": "b", "region": "europe"}, "'europe' is not an AWS region"),
        ({"bucket": "b", "copyRegions": ["us-east-1"]}, "lists us-east-1, the build region"),
        ({}, "imagefactory:aws.bucket is empty"),
        ({"bucket": "b", "deprecateAfterDays": 0}, "deprecateAfterDays is 0"),
        ({"mode": "native", "sourceAmiOwner": ""}, "must pin the owner"),
    ],
)
def test_bad_aws_settings_are_named(raw: dict, message: str) -> None:
    with pytest.raises(FactoryError, match=message):
        cloud.aws_settings(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "imagefactory:azure.resourceGroup is empty"),
        (
            {"resourceGroup": "rg", "storageAccount": "s", "targetRegions": [{"name": "West Europe"}]},
            "is not an Azure region",
        ),
        (
            {"resourceGroup": "rg", "storageAccount": "s", "targetRegions": [{"name": "westeurope", "replicas": 0}]},
            "replicas of westeurope is 0",
        ),
        ({"resourceGroup": "rg", "mode": "native"}, "must pin a version"),
        ({"resourceGroup": "rg"}, "imagefactory:azure.storageAccount is empty"),
    ],
)
def test_bad_azure_settings_are_named(raw: dict, message: str) -> None:
    with pytest.raises(FactoryError, match=message):
        cloud.azure_settings(raw)
