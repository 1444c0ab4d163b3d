"""The deprecate and revoke calls, checked with botocore's Stubber (moto does not implement
EnableImageDeprecation)."""

import boto3
import pytest
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


def test_revoke_tags_the_reason_and_deprecates_at_the_next_minute() -> None:
    import datetime as dt

    ec2 = boto3.client("ec2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_images",
            {"Images": [{"ImageId": "ami-0123456789abcdef0", "Tags": [{"Key": "ImageVersion", "Value": "v"}]}]},
            {"Owners": ["123456789012"], "Filters": [{"Name": "tag:ImageVersion", "Values": ["release-0.2.0"]}]},
        )
        stub.add_response(
            "create_tags",
            {},
            {
                "Resources": ["ami-0123456789abcdef0"],
                "Tags": [
                    {"Key": "ImageRevoked", "Value": "CVE-1 in openssh"},
                    {"Key": "DeprecateAt", "Value": "2026-11-28T10:16:00Z"},
                ],
            },
        )
        stub.add_response(
            "enable_image_deprecation",
            {"Return": True},
            {"ImageId": "ami-0123456789abcdef0", "DeprecateAt": "2026-11-28T10:16:00Z"},
        )
        now = dt.datetime(2026, 11, 28, 10, 15, 42, tzinfo=dt.UTC)
        done = aws_lifecycle.revoke(ec2, "release-0.2.0", "123456789012", " CVE-1 in openssh ", now)
        stub.assert_no_pending_responses()
    assert done == {
        "image_id": "ami-0123456789abcdef0",
        "revoked": "CVE-1 in openssh",
        "deprecate_at": "2026-11-28T10:16:00Z",
    }


def test_a_revoked_ami_is_not_found_unless_asked_for() -> None:
    import pytest

    from imagefactory.errors import FactoryError
    from imagefactory.lookup import find_ami

    ec2 = boto3.client("ec2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    revoked = {"Images": [{"ImageId": "ami-0a", "Tags": [{"Key": "ImageRevoked", "Value": "bad kernel"}]}]}
    with Stubber(ec2) as stub:
        stub.add_response("describe_images", revoked)
        stub.add_response("describe_images", revoked)
        with pytest.raises(FactoryError, match=r"release-0\.2\.0 \(ami-0a\) is revoked: bad kernel"):
            find_ami(ec2, "release-0.2.0", "123456789012")
        assert find_ami(ec2, "release-0.2.0", "123456789012", allow_revoked=True) == "ami-0a"


def test_a_revocation_needs_a_reason_that_fits_a_tag() -> None:
    import datetime as dt

    import pytest

    from imagefactory.errors import FactoryError

    ec2 = boto3.client("ec2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    for reason in ("", "x" * 257):
        with Stubber(ec2), pytest.raises(FactoryError, match=r"--reason has \d+ characters; accepted: 1 to 256"):
            aws_lifecycle.revoke(ec2, "release-0.2.0", "1", reason, dt.datetime.now(dt.UTC))


def test_deprecate_now_deprecates_one_ami_by_id_at_the_next_minute() -> None:
    """What the stack's `pulumi up` runs in each region once a version is revoked."""
    import datetime as dt

    ec2 = boto3.client("ec2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(ec2) as stub:
        stub.add_response(
            "enable_image_deprecation",
            {"Return": True},
            {"ImageId": "ami-0123456789abcdef0", "DeprecateAt": "2026-11-28T10:17:00Z"},
        )
        at = aws_lifecycle.deprecate_now(
            ec2, "ami-0123456789abcdef0", dt.datetime(2026, 11, 28, 10, 15, 59, tzinfo=dt.UTC)
        )
        stub.assert_no_pending_responses()
    assert at == "2026-11-28T10:17:00Z", "a whole minute, at least one minute after the request"


def test_deprecate_now_without_an_image_id_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert aws_lifecycle.main(["deprecate-now", "--owner", "self"]) == 1
    assert capsys.readouterr().err.strip() == "aws: deprecate-now needs --image-id (e.g. ami-0123456789abcdef0)"
