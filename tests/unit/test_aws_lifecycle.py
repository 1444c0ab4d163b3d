"""The deprecate call, checked with botocore's Stubber (moto does not implement it)."""

import boto3
from botocore.stub import Stubber

from imagefactory import aws_lifecycle


def test_deprecate_tags_the_version_and_schedules_ec2_deprecation() -> None:
    ec2 = boto3.client("ec2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_images",
            {"Images": [{"ImageId": "ami-0123456789abcdef0"}]},
            {"Owners": ["123456789012"], "Filters": [{"Name": "tag:ImageVersion", "Values": ["release-0.1.0"]}]},
        )
        stub.add_response(
            "create_tags",
            {},
            {"Resources": ["ami-0123456789abcdef0"], "Tags": [{"Key": "DeprecateAt", "Value": "2027-01-01T00:00:00Z"}]},
        )
        stub.add_response(
            "enable_image_deprecation",
            {"Return": True},
            {"ImageId": "ami-0123456789abcdef0", "DeprecateAt": "2027-01-01T00:00:00Z"},
        )
        image = aws_lifecycle.deprecate(ec2, "release-0.1.0", "123456789012", "2027-01-01T00:00:00Z")
        stub.assert_no_pending_responses()
    assert image == "ami-0123456789abcdef0"
