"""A native cloud build's result is what LaunchTemplate launches: AMIs by region, or the
gallery image version the azure-arm build published."""

import pytest

from imagefactory.build_cloud import parse_artifact
from imagefactory.errors import FactoryError

MANAGED = "/subscriptions/1111-2222/resourceGroups/rg-images/providers/Microsoft.Compute/images/debian-12-release-0.1.0"
VARIABLES = {
    "azure_resource_group": "rg-images",
    "azure_gallery": "imagefactory",
    "azure_image_definition": "debian-12",
    "azure_gallery_version": "0.1.0",
}


def test_an_azure_native_build_names_the_gallery_image_version_it_published() -> None:
    result = parse_artifact("azure", {"builds": [{"name": "azure", "artifact_id": MANAGED}]}, VARIABLES)
    assert result["gallery_image_version_id"] == (
        "/subscriptions/1111-2222/resourceGroups/rg-images/providers/Microsoft.Compute/galleries/imagefactory/"
        "images/debian-12/versions/0.1.0"
    )
    assert result["managed_image_id"] == MANAGED


def test_aws_amis_are_read_by_region() -> None:
    manifest = {"builds": [{"name": "aws", "artifact_id": "eu-west-1:ami-0a,us-east-1:ami-0b"}]}
    assert parse_artifact("aws", manifest) == {"amis": {"eu-west-1": "ami-0a", "us-east-1": "ami-0b"}}


def test_an_unexpected_artifact_is_refused() -> None:
    with pytest.raises(FactoryError, match="unexpected azure-arm artifact"):
        parse_artifact("azure", {"builds": [{"name": "azure", "artifact_id": "image-123"}]}, VARIABLES)
