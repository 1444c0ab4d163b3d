"""Registry: publishing is atomic, releases are immutable, lookups name what exists."""

import json
import shutil
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
    assert registry.lookup_file(reg, "release-0.1.0", "qcow2")["sha256"] == entry["formats"]["qcow2"]["sha256"]
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
        registry.lookup_entry(reg, "release-9.9.9")
    with pytest.raises(FactoryError, match="has no vhd image; it has: qcow2"):
        registry.lookup_file(reg, "release-0.1.0", "vhd")


def test_a_release_is_deprecated_before_it_can_be_retired(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    registry.publish(reg, staging(tmp_path, "release-0.1.0"), "release-0.1.0")
    with pytest.raises(FactoryError, match="deprecate it first"):
        registry.retire(reg, "release-0.1.0")
    assert (reg / "release-0.1.0").is_dir()
    registry.deprecate(reg, "release-0.1.0", "2026-01-01T00:00:00Z")
    assert registry.lookup_entry(reg, "release-0.1.0")["version"] == "release-0.1.0", (
        "still launchable while deprecated"
    )


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


def published(tmp_path: Path, version: str = "release-0.1.0") -> tuple[Path, Path]:
    reg = tmp_path / "reg"
    registry.publish(reg, staging(tmp_path, version), version)
    return reg, reg / version / f"img-{version}.qcow2"


def test_published_files_are_read_only(tmp_path: Path) -> None:
    reg, _ = published(tmp_path)
    for item in (reg / "release-0.1.0").iterdir():
        assert item.stat().st_mode & 0o222 == 0, f"{item} is writable"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda reg, image: image.chmod(0o644) or image.write_bytes(b"tampered"),
            r"img-release-0.1.0.qcow2: expected sha256:",
        ),
        (lambda reg, image: image.unlink(), r"img-release-0.1.0.qcow2 is missing"),
        (
            lambda reg, image: shutil.rmtree(reg / "release-0.1.0"),
            r"release-0.1.0 is missing: release-0.1.0 is in the index",
        ),
        (lambda reg, image: (reg / "release-0.1.0" / "SHA256SUMS").unlink(), r"SHA256SUMS is missing"),
        (
            lambda reg, image: (
                (reg / "release-0.1.0" / "manifest.json").chmod(0o644)
                or (reg / "release-0.1.0" / "manifest.json").write_text(
                    (reg / "release-0.1.0" / "manifest.json").read_text() + " "
                )
            ),
            r"manifest.json does not match the digest the index recorded",
        ),
    ],
)
def test_lookup_and_verify_name_a_tampered_or_missing_file(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]  # a lambda per case
    reg, image = published(tmp_path)
    damage(reg, image)
    for check in (lambda: registry.lookup_file(reg, "release-0.1.0", "qcow2"), lambda: registry.verify(reg)):
        with pytest.raises(FactoryError, match=message) as caught:
            check()
        assert "\n" not in str(caught.value), "one line"
    assert registry.main(["verify", "--registry", str(reg)]) == 1


def test_verify_passes_on_an_untouched_registry(tmp_path: Path) -> None:
    reg, _ = published(tmp_path)
    assert registry.verify(reg) == ["release-0.1.0"]
    assert registry.verify(reg, "release-0.1.0") == ["release-0.1.0"]


@pytest.mark.parametrize("lost", ["index", "folder", "both"])
def test_deleting_the_index_or_the_folder_never_lets_a_release_change(tmp_path: Path, lost: str) -> None:
    reg, _ = published(tmp_path)
    if lost in ("index", "both"):
        (reg / "index.json").unlink()
    if lost in ("folder", "both"):
        shutil.rmtree(reg / "release-0.1.0")
    with pytest.raises(FactoryError, match=r"published before with different content"):
        registry.publish(reg, staging(tmp_path, "release-0.1.0", b"other bytes"), "release-0.1.0")
    with pytest.raises(FactoryError, match=r"tag release-0.1.0 now points at"):
        registry.check_not_moved(reg, "release-0.1.0", "b" * 40)
    restored = registry.publish(reg, staging(tmp_path, "release-0.1.0"), "release-0.1.0")
    assert registry.verify(reg) == ["release-0.1.0"], "the same content may be published again"
    assert restored["version"] == "release-0.1.0"


def test_a_setting_that_would_change_a_published_release_is_refused_naming_both(tmp_path: Path) -> None:
    reg, _ = published(tmp_path)
    manifest = reg / "release-0.1.0" / "manifest.json"
    manifest.chmod(0o644)
    content = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**content, "disk_size_mib": 3072, "name": "img"}))
    same = {"diskSizeMiB": 3072, "formats": ["qcow2"], "imageName": "img"}
    registry.check_release_settings(reg, "release-0.1.0", same)
    for key, value in (("diskSizeMiB", 4096), ("formats", ["qcow2", "vhd"]), ("imageName", "other")):
        with pytest.raises(FactoryError, match=rf"release-0.1.0 was published with imagefactory:{key} .* now says"):
            registry.check_release_settings(reg, "release-0.1.0", {**same, key: value})
    registry.check_release_settings(reg, "release-0.2.0", {**same, "diskSizeMiB": 4096})  # not published yet
    # An OVA's manifest digest is part of its bytes: sha256 unless the manifest records another.
    ova = {"file": "img.ova", "sha256": "0" * 64, "bytes": 1}
    manifest.write_text(json.dumps({**content, "disk_size_mib": 3072, "name": "img", "formats": {"ova": ova}}))
    registry.check_release_settings(reg, "release-0.1.0", {"ovaManifest": "sha256"})
    with pytest.raises(
        FactoryError, match=r"published with imagefactory:ovaManifest 'sha256', and the stack now says 'sha1'"
    ):
        registry.check_release_settings(reg, "release-0.1.0", {"ovaManifest": "sha1"})
    manifest.write_text(json.dumps({**content, "formats": {"ova": {**ova, "manifest_digest": "sha1"}}}))
    registry.check_release_settings(reg, "release-0.1.0", {"ovaManifest": "sha1"})
