"""Upstream faults: only an unreachable network may fall back to stage-0; a wrong upstream is an
error that names it. Served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagefactory import upstream
from imagefactory.errors import FactoryError

IMAGE = b"a small upstream image"
DIGEST = hashlib.sha256(IMAGE).hexdigest()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "disk.qcow2").write_bytes(IMAGE)
    (root / "SHA256SUMS").write_text(f"{DIGEST}  disk.qcow2\n")
    (root / "OTHER_SUMS").write_text(f"{DIGEST}  other.qcow2\n")
    (root / "BROKEN_SUMS").write_text("this is not a checksum file\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]  # the base class's signature
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


@pytest.fixture
def no_stage0(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record a fall back to stage-0 instead of building it."""
    calls: list[Path] = []

    def fake(cache: Path) -> upstream.Upstream:
        calls.append(cache)
        return upstream.Upstream("/cache/stage0.qcow2", "s" * 64, "stage0:x", "sha256:" + "s" * 64, "stage0")

    monkeypatch.setattr(upstream, "build_stage0", fake)
    return calls


def test_a_served_upstream_is_downloaded_and_verified(server: str, tmp_path: Path, no_stage0: list[Path]) -> None:
    found = upstream.resolve_with_fallback(f"{server}/disk.qcow2", f"file:{server}/SHA256SUMS", "stage0", tmp_path)
    assert (found.sha256, found.via) == (DIGEST, "download")
    assert Path(found.path).read_bytes() == IMAGE
    assert no_stage0 == []


@pytest.mark.parametrize(
    ("url", "checksum", "message"),
    [
        ("{s}/missing.qcow2", "sha256:" + DIGEST, "{s}/missing.qcow2 answered HTTP 404"),
        ("{s}/disk.qcow2", "file:{s}/NO_SUMS", "{s}/NO_SUMS answered HTTP 404"),
        ("{s}/disk.qcow2", "file:{s}/BROKEN_SUMS", "checksum file {s}/BROKEN_SUMS: checksum file line 1"),
        ("{s}/disk.qcow2", "file:{s}/OTHER_SUMS", "checksum file {s}/OTHER_SUMS has no entry for disk.qcow2"),
        ("{s}/disk.qcow2", "sha256:" + "0" * 64, "checksum mismatch for disk.qcow2"),
        ("{tmp}/missing.qcow2", "sha256:" + DIGEST, "upstream image {tmp}/missing.qcow2 does not exist"),
        ("{tmp}/disk.qcow2", "file:{tmp}/NO_SUMS", "cannot read {tmp}/NO_SUMS"),
    ],
)
def test_a_wrong_upstream_is_an_error_never_a_fallback(
    server: str, tmp_path: Path, no_stage0: list[Path], url: str, checksum: str, message: str
) -> None:
    (tmp_path / "disk.qcow2").write_bytes(IMAGE)
    fill = {"s": server, "tmp": str(tmp_path)}
    with pytest.raises(FactoryError) as caught:
        upstream.resolve_with_fallback(url.format(**fill), checksum.format(**fill), "stage0", tmp_path / "cache")
    assert message.format(**fill) in str(caught.value)
    assert no_stage0 == [], "a wrong upstream never silently becomes the stage-0 image"


def test_only_an_unreachable_network_falls_back_and_only_when_allowed(tmp_path: Path, no_stage0: list[Path]) -> None:
    found = upstream.resolve_with_fallback(upstream.UNREACHABLE_URL, upstream.UNREACHABLE_SUMS, "stage0", tmp_path)
    assert found.via == "stage0" and no_stage0 == [tmp_path]
    with pytest.raises(FactoryError, match=r"cannot be fetched .*imagefactory:upstreamFallback is 'none'"):
        upstream.resolve_with_fallback(upstream.UNREACHABLE_URL, upstream.UNREACHABLE_SUMS, "none", tmp_path)


def write_stage0(out: Path) -> None:
    """What the stage-0 recipe leaves: the image, its SHA256SUMS and its package set."""
    from imagefactory import packages

    out.mkdir(parents=True)
    (out / upstream.STAGE0_IMAGE).write_bytes(IMAGE)
    (out / "SHA256SUMS").write_text(f"{DIGEST}  {upstream.STAGE0_IMAGE}\n")
    (out / packages.TSV_NAME).write_text("")


def test_two_releases_needing_the_stage0_image_at_once_build_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second waits for the first's image instead of building into the same folder."""
    runs: list[Path] = []

    def recipe(script: Path, record: Path, out: Path, cache: Path, repository: str = "") -> None:
        runs.append(out)
        threading.Event().wait(0.5)  # long enough for the other release to ask meanwhile
        write_stage0(out)

    monkeypatch.setattr(upstream, "run_stage0", recipe)
    found: list[upstream.Upstream] = []
    releases = [threading.Thread(target=lambda: found.append(upstream.build_stage0(tmp_path))) for _ in range(2)]
    for release in releases:
        release.start()
    for release in releases:
        release.join()
    assert len(runs) == 1
    assert [f.sha256 for f in found] == [DIGEST, DIGEST]


def test_a_cached_stage0_image_is_only_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No lock file is made when the image is there: a read-only cache still serves it."""
    folder = tmp_path / "upstream" / f"stage0-{upstream.stage0_recipe_digest()}"
    write_stage0(folder)
    monkeypatch.setattr(upstream, "run_stage0", lambda *args, **kwargs: pytest.fail("the cached image was rebuilt"))
    before = sorted(p.name for p in folder.parent.iterdir())
    assert upstream.build_stage0(tmp_path).sha256 == DIGEST
    assert sorted(p.name for p in folder.parent.iterdir()) == before
