"""The S3 registry's setting: every form accepted, every bad one named with what is accepted."""

import base64
import hashlib

import pytest

from imagefactory import aws_lifecycle, lookup, s3registry
from imagefactory.errors import FactoryError


def test_a_bucket_with_a_prefix_and_every_option() -> None:
    store = s3registry.parse(
        "s3://images/team/a?endpoint=http://127.0.0.1:8333/&region=eu-west-1&pathStyle=true"
        "&objectLock=compliance&retentionDays=30"
    )
    assert store == s3registry.Store(
        bucket="images",
        prefix="team/a",
        endpoint="http://127.0.0.1:8333",
        region="eu-west-1",
        path_style=True,
        lock_mode="COMPLIANCE",
        retention_days=30,
    )
    assert store.key("versions", "release-0.1.0.json") == "team/a/versions/release-0.1.0.json"
    assert store.url == "s3://images/team/a"


def test_a_bare_bucket_uses_aws_defaults() -> None:
    store = s3registry.parse("s3://images")
    assert (store.prefix, store.endpoint, store.region, store.path_style, store.lock_mode) == (
        "",
        "",
        "us-east-1",
        False,
        "",
    )
    assert store.key("blobs", "sha256", "ab") == "blobs/sha256/ab"


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("file:///tmp/x", "is not an S3 registry"),
        ("s3:///prefix", "is not an S3 registry"),
        ("s3://bkt?endpont=http://x", "unknown option(s) endpont"),
        ("s3://bkt?endpoint=127.0.0.1:9000", "is not an http(s) URL"),
        ("s3://bkt?pathStyle=yes", "pathStyle 'yes' is not true or false"),
        ("s3://bkt?objectLock=strict", "objectLock 'strict' is not none, governance or compliance"),
        ("s3://bkt?objectLock=governance", "retentionDays '0' is not accepted"),
        ("s3://bkt?objectLock=governance&retentionDays=-1", "retentionDays '-1' is not accepted"),
        ("s3://bkt?region=ab&region=cd", "gives region more than once"),
        ("s3://KEY:SECRET@bkt", "holds credentials before its bucket"),
        ("s3://Images_Bucket", "is not an S3 bucket name"),
        ("s3://ab", "is not an S3 bucket name"),
        ("s3://bkt?endpoint=http://", "is not an http(s) URL"),
        ("s3://bkt?region=eu%20west", "region 'eu west' is not a region name"),
        ("s3://bkt?retentionDays=30", "retentionDays is only for objectLock"),
    ],
)
def test_a_bad_setting_is_named_with_what_is_accepted(url: str, named: str) -> None:
    with pytest.raises(FactoryError) as caught:
        s3registry.parse(url)
    assert named in str(caught.value)
    assert "imagefactory:registry" in str(caught.value)
    assert ":SECRET@" not in str(caught.value) and "\n" not in str(caught.value)


def test_the_composite_checksum_is_the_digest_of_the_part_digests() -> None:
    parts = [hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()]
    expected = hashlib.sha256(hashlib.sha256(b"a").digest() + hashlib.sha256(b"b").digest()).digest()
    assert s3registry.composite(parts) == base64.b64encode(expected).decode() + "-2"


def test_a_bad_endpoint_is_one_line_when_the_client_is_made() -> None:
    store = s3registry.Store(bucket="bkt", prefix="", endpoint="http://[::1")
    with pytest.raises(FactoryError) as caught:
        s3registry.client(store)
    assert "the registry s3://bkt at http://[::1" in str(caught.value) and "\n" not in str(caught.value)


def test_a_pre_signed_url_lives_at_most_seven_days() -> None:
    with pytest.raises(FactoryError, match="--presign 604801 is not accepted"):
        s3registry.lookup(s3registry.parse("s3://bkt"), "release-0.1.0", presign=7 * 24 * 3600 + 1)


def test_uploads_end_with_the_sums_then_the_manifest() -> None:
    names = ["manifest.json", "SHA256SUMS", "x.raw", "packages.tsv", "x.qcow2"]
    assert s3registry.upload_order(names) == ["packages.tsv", "x.qcow2", "x.raw", "SHA256SUMS", "manifest.json"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: s3registry.client(s3registry.parse("s3://images?endpoint=http://127.0.0.1:9&pathStyle=true")),
        lambda: lookup.aws_client("us-east-1", "http://127.0.0.1:9"),
        lambda: aws_lifecycle.client("us-east-1", "http://127.0.0.1:9"),
    ],
    ids=["s3registry", "lookup", "aws_lifecycle"],
)
def test_each_client_takes_the_credentials_of_the_environment_it_is_made_in(make, monkeypatch) -> None:
    """boto3's default session keeps the first credentials it found: a registry client made after
    another test (or tool) had used other keys in the same process sent those keys, and the store
    refused them (403). Each client reads the environment of its own moment."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    credentials = []
    for key in ("first", "second"):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", f"{key}-key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", f"{key}-secret")
        credentials.append(make()._request_signer._credentials.access_key)
    assert credentials == ["first-key", "second-key"]


def _stubbed_check(second_write: dict | None) -> BaseException | None:
    """check() against a stubbed store whose second conditional write answers `second_write`
    (None: a 412, as a store that honours If-None-Match answers)."""
    import boto3
    from botocore.stub import ANY, Stubber

    store = s3registry.parse("s3://images/team?endpoint=http://127.0.0.1:1&pathStyle=true")
    s3 = boto3.session.Session().client(
        "s3", endpoint_url=store.endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    put = {"Bucket": "images", "Key": ANY, "Body": ANY, "IfNoneMatch": "*"}
    with Stubber(s3) as stub:
        stub.add_response("head_bucket", {}, {"Bucket": "images"})
        stub.add_response("put_object", {"VersionId": "v1"}, put)
        if second_write is None:
            stub.add_client_error("put_object", "PreconditionFailed", http_status_code=412, expected_params=put)
        else:
            stub.add_response("put_object", second_write, put)
            stub.add_response("delete_object", {}, {"Bucket": "images", "Key": ANY, "VersionId": "v1"})
            stub.add_response("delete_object", {}, {"Bucket": "images", "Key": ANY, "VersionId": "v2"})
        if second_write is None:
            stub.add_response("delete_object", {}, {"Bucket": "images", "Key": ANY, "VersionId": "v1"})
        caught = None
        try:
            s3registry.check(store, s3)
        except FactoryError as exc:
            caught = exc
        stub.assert_no_pending_responses()
    return caught


def test_a_store_that_honours_conditional_writes_passes_the_check_and_keeps_no_probe() -> None:
    caught = _stubbed_check(None)
    assert caught is None


def test_a_store_that_ignores_conditional_writes_is_refused_before_anything_is_built() -> None:
    caught = _stubbed_check({"VersionId": "v2"})
    assert caught is not None
    assert "does not honour conditional writes" in str(caught) and "s3://images/team at http://127.0.0.1:1" in str(
        caught
    )
