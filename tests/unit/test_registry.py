"""Registry: publishing is atomic, releases are immutable, lookups name what exists."""

import json
from pathlib import Path

import pytest

from imagefactory import registry
from imagefactory.checksums import file_digest, format_sums
from imagefactory.errors import FactoryError


def staging(tmp_path: Path, version: str, payload: bytes = b"disk", commit: str = "a" * 40) -> Path:
    folder = tmp_path / f"stage-{version}-{payload.hex()[:8]}-{commit[:4]}"
    index = 0
    while folder.exists():
        index += 1
        folder = folder.with_name(f"{folder.name.split('#')[0]}#{index}")
    folder.mkdir()
    (folder / f"img-{version}.qcow2").write_bytes(payload)
    digest = file_digest(folder / f"img-{version}.qcow2")
    manifest = {
        "version": version,
        "commit": commit,
        "build_time": "2025-01-01T00:00:00Z",
        "upstream": {"source": "stage0:x", "sha256": "u" * 64},
        "formats": {"qcow2": {"file": f"img-{version}.qcow2", "bytes": len(payload), "sha256": digest}},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "SHA256SUMS").write_text(format_sums({f"img-{version}.qcow2": digest}))
    return folder


def test_publish_adds_the_version_and_lookup_finds_its_file(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    entry = registry.publish(reg, staging(tmp_path, "release-0.1.0"), "release-0.1.0")
    assert entry["formats"]["qcow2"]["path"] == str((reg / "release-0.1.0" / "img-release-0.1.0.qcow2").resolve())
    assert registry.lookup(reg, "release-0.1.0", "qcow2")["sha256"] == entry["formats"]["qcow2"]["sha256"]
    assert list(registry.read_index(reg)["versions"]) == ["release-0.1.0"]


def test_a_release_republished_with_other_content_is_refused(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    registry.publish(reg, staging(tmp_path, "release-0.1.0"), "release-0.1.0")
    before = (reg / "release-0.1.0" / "img-release-0.1.0.qcow2").read_bytes()
    with pytest.raises(FactoryError, match=r"immutable"):
        registry.publish(reg, staging(tmp_path, "release-0.1.0", b"other"), "release-0.1.0")
    assert (reg / "release-0.1.0" / "img-release-0.1.0.qcow2").read_bytes() == before


def test_the_same_release_published_twice_is_a_no_op(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    first = registry.publish(reg, staging(tmp_path, "release-0.1.0"), "release-0.1.0")
    second = registry.publish(reg, staging(tmp_path, "release-0.1.0", commit="a" * 40), "release-0.1.0")
    assert first == second


def test_a_dev_version_may_be_replaced(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    registry.publish(reg, staging(tmp_path, "dev-0123abc-dirty"), "dev-0123abc-dirty")
    entry = registry.publish(reg, staging(tmp_path, "dev-0123abc-dirty", b"new"), "dev-0123abc-dirty")
    assert Path(entry["formats"]["qcow2"]["path"]).read_bytes() == b"new"


def test_a_corrupted_staging_file_is_never_published(tmp_path: Path) -> None:
    folder = staging(tmp_path, "release-0.1.0")
    (folder / "img-release-0.1.0.qcow2").write_bytes(b"tampered")
    with pytest.raises(FactoryError, match="expected sha256"):
        registry.publish(tmp_path / "reg", folder, "release-0.1.0")
    assert not (tmp_path / "reg" / "release-0.1.0").exists()


def test_a_moved_tag_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    registry.publish(reg, staging(tmp_path, "release-0.1.0"), "release-0.1.0")
    registry.check_not_moved(reg, "release-0.1.0", "a" * 40)
    with pytest.raises(FactoryError, match=r"tag release-0\.1\.0 now points at bbbbbbbbbbbb"):
        registry.check_not_moved(reg, "release-0.1.0", "b" * 40)


def test_lookup_of_an_unknown_version_lists_the_published_ones(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    registry.publish(reg, staging(tmp_path, "release-0.1.0"), "release-0.1.0")
    with pytest.raises(FactoryError, match=r"published versions: release-0\.1\.0"):
        registry.lookup(reg, "release-9.9.9")
    with pytest.raises(FactoryError, match="has no vhd image; it has: qcow2"):
        registry.lookup(reg, "release-0.1.0", "vhd")


def test_a_release_is_deprecated_before_it_can_be_retired(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    registry.publish(reg, staging(tmp_path, "release-0.1.0"), "release-0.1.0")
    with pytest.raises(FactoryError, match="deprecate it first"):
        registry.retire(reg, "release-0.1.0")
    assert (reg / "release-0.1.0").is_dir()
    registry.deprecate(reg, "release-0.1.0", "2026-01-01T00:00:00Z")
    assert registry.lookup(reg, "release-0.1.0")["version"] == "release-0.1.0", "still launchable while deprecated"


def test_retire_removes_the_version_and_its_files(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    registry.publish(reg, staging(tmp_path, "release-0.1.0"), "release-0.1.0")
    registry.deprecate(reg, "release-0.1.0", "2026-01-01T00:00:00Z")
    registry.retire(reg, "release-0.1.0")
    assert registry.read_index(reg)["versions"] == {}
    assert not (reg / "release-0.1.0").exists()
    registry.retire(reg, "release-0.1.0", missing_ok=True)
    with pytest.raises(FactoryError, match="not in the registry"):
        registry.retire(reg, "release-0.1.0")
