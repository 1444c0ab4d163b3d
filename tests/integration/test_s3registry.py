"""The shared registry in S3-compatible storage, against a real server (SeaweedFS on 127.0.0.1,
started and stopped by each test): publishing, lookups from anywhere, immutability, two builders at
once, a server killed mid-upload, and clear one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagefactory import s3registry
from imagefactory.errors import FactoryError
from tests.helpers import pulumi
from tests.s3server import S3Server
from tests.unit.test_registry import staging

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    running = S3Server(tmp_path / "server").start()
    for key, value in running.env.items():
        monkeypatch.setenv(key, value)
    try:
        yield running
    finally:
        running.stop()
    assert running.process is not None and running.process.poll() is not None, "the server is stopped"


def push_process(server: S3Server, registry: str, folder: Path) -> subprocess.Popen[str]:
    """A second builder: `python -m imagefactory.s3registry push`, as the pipeline's step runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "imagefactory.s3registry", "push", "--registry", registry, "--folder", str(folder)],
        cwd=ROOT,
        env={**os.environ, **server.env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_version_is_published_then_found_fetched_and_downloaded_by_url(
    server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3registry, "PART", 5 * 1024 * 1024)  # a 12 MiB image: three parts
    payload = os.urandom(12 * 1024 * 1024)
    folder = staging(tmp_path, "release-0.1.0", payload)
    store = s3registry.parse(server.registry(server.bucket("images")))
    messages: list[str] = []
    published = s3registry.push(store, folder, messages.append)
    # Three parts, each checked by the store, and the composite it reports matches ours.
    assert "img-release-0.1.0.qcow2: store" in [
        m.replace("uploaded, SHA-256 checked by the store", "store") for m in messages
    ]
    item = published["formats"]["qcow2"]
    assert item["url"] == f"s3://images/images/blobs/sha256/{item['sha256']}"
    assert s3registry.versions(store) == ["release-0.1.0"]
    # Published again with the same content: nothing is uploaded, the version is verified.
    assert s3registry.push(store, folder)["formats"] == published["formats"]

    found = s3registry.lookup(store, "release-0.1.0", "qcow2", presign=300)
    url = found["formats"]["qcow2"]["presigned"]
    assert url.startswith(server.endpoint + "/images/images/blobs/sha256/")
    downloaded = tmp_path / "curl.qcow2"  # as a hypervisor fetches it: no credentials, only the URL
    subprocess.run(["curl", "-fsS", "--max-time", "60", "-o", str(downloaded), url], check=True, env={})
    assert downloaded.read_bytes() == payload
    fetched = s3registry.fetch(store, "release-0.1.0", "qcow2", tmp_path / "download")
    assert fetched.read_bytes() == payload and fetched.name == "img-release-0.1.0.qcow2"

    # The same through make, as a user on another machine types it.
    registry = server.registry("images")
    make = {**os.environ, **server.env, "REGISTRY": registry}
    looked = subprocess.run(
        ["make", "-s", "lookup", "VERSION=release-0.1.0", "FORMAT=qcow2", "PRESIGN=60"],
        cwd=ROOT,
        env=make,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(looked.stdout)["presigned"].startswith(server.endpoint)
    subprocess.run(
        ["make", "-s", "fetch", "VERSION=release-0.1.0", "FORMAT=qcow2", f"DEST={tmp_path / 'make'}"],
        cwd=ROOT,
        env=make,
        capture_output=True,
        text=True,
        check=True,
    )
    assert (tmp_path / "make" / "img-release-0.1.0.qcow2").read_bytes() == payload

    with pytest.raises(FactoryError, match=re.escape("version release-9.9.9 is not published in s3://images/images; ")):
        s3registry.lookup(store, "release-9.9.9")
    with pytest.raises(FactoryError, match=re.escape("release-0.1.0 has no vhd image; it has: qcow2")):
        s3registry.fetch(store, "release-0.1.0", "vhd", tmp_path / "download")


def test_a_release_is_never_published_again_with_other_bytes(server: S3Server, tmp_path: Path) -> None:
    store = s3registry.parse(server.registry(server.bucket("images")))
    s3registry.push(store, staging(tmp_path, "release-0.1.0", b"first"))
    other = staging(tmp_path, "release-0.1.0", b"second", commit="b" * 40)
    with pytest.raises(FactoryError, match="releases are immutable"):
        s3registry.push(store, other)
    # Even with its version object deleted by hand, the ledger keeps the release's content.
    server.client().delete_object(Bucket="images", Key="images/versions/release-0.1.0.json")
    with pytest.raises(
        FactoryError,
        match=re.escape(
            "published to s3://images/images before from commit aaaaaaaaaaaa with other content than this build (commit bbbbbbbbbbbb)"
        ),
    ):
        s3registry.push(store, other)
    # A development version may be replaced.
    s3registry.push(store, staging(tmp_path, "dev-0123456789ab", b"one"))
    replaced = s3registry.push(store, staging(tmp_path, "dev-0123456789ab", b"two", commit="c" * 40))
    assert s3registry.lookup(store, "dev-0123456789ab")["commit"] == "c" * 40 == replaced["commit"]


def test_files_already_in_the_store_are_checked_not_sent_again_and_a_damaged_one_is_never_trusted(
    server: S3Server, tmp_path: Path
) -> None:
    store = s3registry.parse(server.registry(server.bucket("images")))
    payload = os.urandom(256 * 1024)
    s3registry.push(store, staging(tmp_path, "dev-0123456789ab", payload))
    messages: list[str] = []
    s3registry.push(store, staging(tmp_path, "release-0.1.0", payload), messages.append)
    # The release's image has the development build's bytes: the store holds them, checked, not sent again.
    assert "img-release-0.1.0.qcow2: present" in messages, messages
    digest = s3registry.lookup(store, "release-0.1.0", "qcow2")["formats"]["qcow2"]["sha256"]
    server.client().put_object(Bucket="images", Key=f"images/blobs/sha256/{digest}", Body=os.urandom(len(payload)))
    with pytest.raises(FactoryError, match="does not hold its published bytes"):
        s3registry.lookup(store, "release-0.1.0", "qcow2")
    with pytest.raises(FactoryError, match=r"holds other bytes than .* a published object is never overwritten"):
        s3registry.push(store, staging(tmp_path, "release-0.2.0", payload))
    assert s3registry.versions(store) == ["dev-0123456789ab", "release-0.1.0"], "0.2.0 was not published"


def test_a_conditional_write_lets_exactly_one_writer_create_a_key(server: S3Server) -> None:
    """What two builders racing on one version rely on, without the timing: the second
    If-None-Match write of a key loses, and a stale If-Match loses too."""
    store = s3registry.parse(server.registry(server.bucket("images")))
    s3 = s3registry.client(store)
    assert s3registry._put_json(s3, store, "images/versions/x.json", {"n": 1}, False, IfNoneMatch="*")
    assert not s3registry._put_json(s3, store, "images/versions/x.json", {"n": 2}, False, IfNoneMatch="*")
    etag = s3.head_object(Bucket="images", Key="images/versions/x.json")["ETag"]
    assert s3registry._put_json(s3, store, "images/versions/x.json", {"n": 3}, False, IfMatch=etag)
    assert not s3registry._put_json(s3, store, "images/versions/x.json", {"n": 4}, False, IfMatch=etag)
    assert json.loads(s3.get_object(Bucket="images", Key="images/versions/x.json")["Body"].read()) == {"n": 3}


def test_a_revocation_reaches_the_store_and_lookups_there_refuse_the_version(server: S3Server, tmp_path: Path) -> None:
    """`make revoke`, then the next `pulumi up` re-runs the push with the revocation (the step's
    REVOCATION input, as the program sets it): the store's lookups and downloads refuse it."""
    registry = server.registry(server.bucket("images"))
    folder = staging(tmp_path, "release-0.1.0", b"bad image")
    assert push_process(server, registry, folder).wait(timeout=120) == 0
    revocation = json.dumps({"at": "2026-11-28T10:00:00Z", "reason": "CVE-2026-0001 in openssh"})
    again = subprocess.run(
        [sys.executable, "-m", "imagefactory.s3registry", "push", "--registry", registry, "--folder", str(folder)],
        cwd=ROOT,
        env={**os.environ, **server.env, "PYTHONPATH": str(ROOT), "REVOCATION": revocation},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "release-0.1.0 is revoked in s3://images/images: CVE-2026-0001 in openssh" in again.stderr
    store = s3registry.parse(registry)
    expected = "release-0.1.0 is revoked since 2026-11-28T10:00:00Z: CVE-2026-0001 in openssh"
    with pytest.raises(FactoryError, match=re.escape(expected)):
        s3registry.lookup(store, "release-0.1.0", "qcow2")
    with pytest.raises(FactoryError, match=re.escape(expected)):
        s3registry.fetch(store, "release-0.1.0", "qcow2", tmp_path / "download")
    assert not (tmp_path / "download").exists() or list((tmp_path / "download").iterdir()) == []
    assert s3registry.lookup(store, "release-0.1.0", "qcow2", allow_revoked=True)["version"] == "release-0.1.0"
    refused = cli(server, "lookup", "--registry", registry, "--version", "release-0.1.0")
    assert refused.returncode == 1 and expected in refused.stderr and "Traceback" not in refused.stderr
    make = {**os.environ, **server.env, "REGISTRY": registry}
    fetch = ["make", "-s", "fetch", "VERSION=release-0.1.0", "FORMAT=qcow2", f"DEST={tmp_path / 'make'}"]
    assert subprocess.run(fetch, cwd=ROOT, env=make, capture_output=True, text=True).returncode != 0
    subprocess.run([*fetch, "ALLOW_REVOKED=1"], cwd=ROOT, env=make, capture_output=True, text=True, check=True)
    assert (tmp_path / "make" / "img-release-0.1.0.qcow2").read_bytes() == b"bad image"


def test_a_changed_object_fails_the_download_and_nothing_is_kept(server: S3Server, tmp_path: Path) -> None:
    store = s3registry.parse(server.registry(server.bucket("images")))
    item = s3registry.push(store, staging(tmp_path, "release-0.1.0", b"the real image"))["formats"]["qcow2"]
    key = f"images/blobs/sha256/{item['sha256']}"
    server.client().put_object(Bucket="images", Key=key, Body=b"the real imagE")  # same size, other bytes
    with pytest.raises(FactoryError) as caught:
        s3registry.fetch(store, "release-0.1.0", "qcow2", tmp_path / "download")
    assert f"expected sha256:{item['sha256']}, received sha256:" in str(caught.value)
    assert list((tmp_path / "download").iterdir()) == [], "no file, not even a partial one"


def test_two_builders_publishing_different_versions_at_once_both_succeed(server: S3Server, tmp_path: Path) -> None:
    registry = server.registry(server.bucket("images"))
    folders = [staging(tmp_path, f"release-0.{n}.0", os.urandom(1024 * 1024)) for n in range(1, 5)]
    builders = [push_process(server, registry, folder) for folder in folders]
    results = [(builder.wait(timeout=120), builder.stderr.read() if builder.stderr else "") for builder in builders]
    assert [code for code, _ in results] == [0, 0, 0, 0], results
    store = s3registry.parse(registry)
    assert s3registry.versions(store) == ["release-0.1.0", "release-0.2.0", "release-0.3.0", "release-0.4.0"]
    for n in range(1, 5):
        s3registry.fetch(store, f"release-0.{n}.0", "qcow2", tmp_path / "check")  # each verified


def test_two_builders_publishing_one_version_one_wins_and_the_other_verifies_or_stops(
    server: S3Server, tmp_path: Path
) -> None:
    registry = server.registry(server.bucket("images"))
    payload = os.urandom(1024 * 1024)
    same = [staging(tmp_path, "release-0.1.0", payload) for _ in range(2)]  # a reproducible build, twice
    builders = [push_process(server, registry, folder) for folder in same]
    outcomes = [(b.wait(timeout=120), b.stderr.read() if b.stderr else "") for b in builders]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    assert sum("published release-0.1.0 in" in err for _, err in outcomes) == 1, "one wins; the other verifies"

    different = [staging(tmp_path, "release-0.2.0", os.urandom(1024), commit=c * 40) for c in "de"]
    builders = [push_process(server, registry, folder) for folder in different]
    outcomes = [(b.wait(timeout=120), b.stderr.read() if b.stderr else "") for b in builders]
    assert sorted(code for code, _ in outcomes) == [0, 1], outcomes
    loser = next(err for code, err in outcomes if code == 1)
    assert "Traceback" not in loser, loser
    # Said three ways, by when the loser met the winner's version: in the ledger, as the version
    # object, or as the failed conditional write of its own.
    last = loser.strip().splitlines()[-1]
    assert re.search(
        r"release-0\.2\.0 (was published to .* before from commit .* with other content|is already published in .* other content)"
        r"|another builder published release-0\.2\.0 .* with other content",
        last,
    ), loser
    winner = s3registry.lookup(s3registry.parse(registry), "release-0.2.0")
    assert winner["commit"] in ("d" * 40, "e" * 40)


def test_a_server_killed_mid_upload_leaves_no_version_and_the_next_run_completes(
    server: S3Server, tmp_path: Path
) -> None:
    registry = server.registry(server.bucket("images"))
    store = s3registry.parse(registry)
    folder = staging(tmp_path, "release-0.1.0", b"")
    image = next(folder.glob("*.qcow2"))
    with open(image, "wb") as handle:  # 320 MiB: five parts of 64 MiB
        for _ in range(320):
            handle.write(os.urandom(1024 * 1024))
    from imagefactory.checksums import file_digest, format_sums

    digest = file_digest(image)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["formats"]["qcow2"].update(sha256=digest, bytes=image.stat().st_size)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "SHA256SUMS").write_text(format_sums({image.name: digest}))

    builder = push_process(server, registry, folder)
    client, deadline = server.client(), time.monotonic() + 300
    while not client.list_multipart_uploads(Bucket="images").get("Uploads"):
        assert builder.poll() is None and time.monotonic() < deadline, "the upload never started"
        time.sleep(0.05)
    server.kill()
    assert builder.wait(timeout=300) == 1
    error = builder.stderr.read() if builder.stderr else ""
    assert server.endpoint in error and "Traceback" not in error, error

    server.start()  # the same data, the same ports
    assert s3registry.versions(store) == [], "an interrupted publish leaves no visible version"
    with pytest.raises(FactoryError, match=re.escape("version release-0.1.0 is not published")):
        s3registry.lookup(store, "release-0.1.0")
    s3registry.push(store, folder)
    assert s3registry.fetch(store, "release-0.1.0", "qcow2", tmp_path / "download").stat().st_size == 320 << 20


def test_object_lock_is_applied_and_a_bucket_without_it_is_refused(server: S3Server, tmp_path: Path) -> None:
    locked = s3registry.parse(
        server.registry(server.bucket("locked", object_lock=True), objectLock="compliance", retentionDays="1")
    )
    item = s3registry.push(locked, staging(tmp_path, "release-0.1.0", b"kept"))["formats"]["qcow2"]
    client = server.client()
    head = client.head_object(Bucket="locked", Key=f"images/blobs/sha256/{item['sha256']}")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):  # the store itself refuses: no one can delete a locked release
        client.delete_object(Bucket="locked", Key=f"images/blobs/sha256/{item['sha256']}", VersionId=head["VersionId"])

    # A file the store already held unlocked (a development build with the same bytes) gets the
    # release's lock when the release finds it there.
    shared = os.urandom(4096)
    s3registry.push(locked, staging(tmp_path, "dev-0123456789ab", shared))
    digest = s3registry.lookup(locked, "dev-0123456789ab", "qcow2")["formats"]["qcow2"]["sha256"]
    assert "ObjectLockMode" not in client.head_object(Bucket="locked", Key=f"images/blobs/sha256/{digest}")
    s3registry.push(locked, staging(tmp_path, "release-0.2.0", shared))
    assert client.head_object(Bucket="locked", Key=f"images/blobs/sha256/{digest}")["ObjectLockMode"] == "COMPLIANCE"

    unlocked = s3registry.parse(server.registry(server.bucket("plain"), objectLock="governance", retentionDays="7"))
    with pytest.raises(FactoryError, match="asks for Object Lock \\(governance\\), but bucket 'plain'"):
        s3registry.push(unlocked, staging(tmp_path, "release-0.1.0", b"kept"))
    assert s3registry.versions(s3registry.parse(server.registry("plain"))) == []


def cli(server: S3Server, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagefactory.s3registry", *args],
        cwd=ROOT,
        env={**os.environ, **server.env, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_wrong_endpoint_or_bad_credentials_is_one_line_naming_the_endpoint(server: S3Server) -> None:
    server.bucket("images")
    closed = "s3://images?endpoint=http://127.0.0.1:9&pathStyle=true"
    for result, endpoint in (
        (cli(server, "check", "--registry", closed), "http://127.0.0.1:9"),
        (cli(server, "list", "--registry", server.registry("images"), AWS_SECRET_ACCESS_KEY="wrong"), server.endpoint),
        (cli(server, "check", "--registry", server.registry("missing")), server.endpoint),
    ):
        assert result.returncode == 1
        assert endpoint in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (
        "refused the credentials"
        in cli(server, "list", "--registry", server.registry("images"), AWS_SECRET_ACCESS_KEY="wrong").stderr
    )


def test_the_release_stops_before_building_when_the_store_cannot_keep_its_promise(
    server: S3Server, tmp_path: Path
) -> None:
    """The real program: a bucket without Object Lock where it was asked for, bad credentials, a
    closed endpoint: `pulumi preview` stops with one line naming the store; nothing is built."""
    from tests.integration.conftest import new_project

    project = new_project(tmp_path / "project")
    project.env.update(server.env)
    server.bucket("plain")
    cases = [
        (server.registry("plain", objectLock="compliance", retentionDays="30"), {}, "has none: create the bucket"),
        (server.registry("plain"), {"AWS_SECRET_ACCESS_KEY": "wrong"}, "refused the credentials"),
        ("s3://plain?endpoint=http://127.0.0.1:9&pathStyle=true", {}, "at http://127.0.0.1:9 cannot be reached"),
    ]
    for registry, env, message in cases:
        project.config("registry", registry)
        result = pulumi(project.path, "preview", "--stack", project.stack, env={**project.env, **env}, check=False)
        assert result.returncode != 0
        assert message in result.stdout and "Traceback" not in result.stdout, result.stdout[-2000:]
    assert not (project.path / ".state" / "work").exists(), "nothing was built"
