"""The package cache and the local repository a rebuild serves: kept by digest, served to real apt,
and every missing package named before anything builds."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from imagefactory import aptrepo
from imagefactory.errors import FactoryError
from imagefactory.packages import Package

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")


def make_deb(folder: Path, name: str, version: str) -> Path:
    root = folder / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr" / "share" / name).mkdir(parents=True)
    (root / "usr" / "share" / name / "README").write_text(f"{name} {version}\n")
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.invalid>\n"
        f"Description: test package {name}\n a second line of its description\n"
    )
    deb = folder / f"{name}_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)], check=True, capture_output=True
    )
    return deb


def stanza_for(deb: Path, name: str, version: str) -> str:
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    return (
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.invalid>\n"
        f"Description: test package {name}\n a second line of its description\n"
        f"Filename: pool/main/{name[0]}/{name}/{deb.name}\nSize: {deb.stat().st_size}\nSHA256: {digest}\n"
    )


@pytest.fixture
def export(tmp_path: Path) -> tuple[Path, list[Package]]:
    """An export as the seal role writes it: packages.index and the downloaded .deb files."""
    folder = tmp_path / "export"
    (folder / "debs").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    recorded, entries = [], []
    for name, version in (("alpha", "1.0-1"), ("beta", "2:0.5-3+deb12u1")):
        deb = make_deb(tmp_path / "src", name, version)
        shutil.copy(deb, folder / "debs" / deb.name)
        entries.append(stanza_for(deb, name, version))
        recorded.append(Package(name, version, "all", hashlib.sha256(deb.read_bytes()).hexdigest()))
    (folder / aptrepo.INDEX_NAME).write_text("\n".join(entries))
    return folder, recorded


def test_an_export_is_kept_by_digest_with_its_index_entries(export: tuple[Path, list[Package]], tmp_path: Path) -> None:
    folder, recorded = export
    cache = tmp_path / "cache"
    kept = aptrepo.ingest(folder, cache)
    assert (kept.debs, kept.new_debs, kept.stanzas, kept.unmatched) == (2, 2, 2, [])
    for package in recorded:
        deb = cache / "packages" / "debs" / f"{package.sha256}.deb"
        assert hashlib.sha256(deb.read_bytes()).hexdigest() == package.sha256
        assert f"Package: {package.name}\n" in (cache / "packages" / "stanzas" / package.sha256).read_text()
    assert aptrepo.ingest(folder, cache).new_debs == 0, "kept once"


def test_a_deb_no_index_entry_vouches_for_is_not_kept(export: tuple[Path, list[Package]], tmp_path: Path) -> None:
    folder, _ = export
    tampered = next((folder / "debs").glob("alpha_*.deb"))
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    kept = aptrepo.ingest(folder, tmp_path / "cache")
    assert kept.unmatched == [tampered.name]
    assert kept.debs == 1


def test_an_export_tar_is_read_like_its_folder(export: tuple[Path, list[Package]], tmp_path: Path) -> None:
    folder, recorded = export
    tar = tmp_path / aptrepo.EXPORT_TAR
    with tarfile.open(tar, "w") as archive:
        archive.add(folder / aptrepo.INDEX_NAME, arcname=aptrepo.INDEX_NAME)
        archive.add(folder / "debs", arcname="debs")
    kept = aptrepo.ingest_tar(tar, tmp_path / "cache")
    assert (kept.debs, kept.stanzas) == (2, 2)
    assert all((tmp_path / "cache/packages/debs" / f"{p.sha256}.deb").is_file() for p in recorded)
    with tarfile.open(tar, "a") as archive:
        evil = tarfile.TarInfo("../outside.deb")
        evil.size = 1
        archive.addfile(evil, io.BytesIO(b"x"))
    with pytest.raises(FactoryError, match=r"holds '\.\./outside\.deb'; accepted: plain files"):
        aptrepo.ingest_tar(tar, tmp_path / "cache")
    assert not (tmp_path / "outside.deb").exists()


def store_without_second_deb(export: tuple[Path, list[Package]], tmp_path: Path) -> tuple[list[Package], Path]:
    """The export kept in a store, then the second package's .deb lost (its index entry stays)."""
    folder, recorded = export
    cache = tmp_path / "cache"
    aptrepo.ingest(folder, cache)
    (cache / "packages" / "debs" / f"{recorded[1].sha256}.deb").unlink()
    return recorded, cache


def test_a_missing_package_is_named_and_no_repository_is_written(
    export: tuple[Path, list[Package]], tmp_path: Path
) -> None:
    recorded, cache = store_without_second_deb(export, tmp_path)
    ghost = Package("gamma", "3.0", "amd64", "ab" * 32)
    repo = tmp_path / "repo"
    with pytest.raises(FactoryError) as caught:
        aptrepo.write_repo(repo, [*recorded, ghost], [], cache, "release-0.1.0")
    message = str(caught.value)
    assert "2 package(s) recorded by release-0.1.0" in message
    assert f"beta 2:0.5-3+deb12u1 all sha256:{recorded[1].sha256}\n" in message
    assert "gamma 3.0 amd64" in message and "(no index entry)" in message
    assert "alpha" not in message
    assert not repo.exists()
    listing = tmp_path / "repo-missing.txt"
    assert f"(all of them in {listing})" in message
    assert [line.split()[0] for line in listing.read_text().splitlines()] == ["beta", "gamma"]


def test_a_package_the_image_below_had_needs_only_its_index_entry(
    export: tuple[Path, list[Package]], tmp_path: Path
) -> None:
    recorded, cache = store_without_second_deb(export, tmp_path)
    unrecorded = Package("delta", "1", "all", "-")
    counts = aptrepo.write_repo(tmp_path / "repo", [*recorded, unrecorded], [recorded[1]], cache, "v")
    assert counts == {"entries": 2, "debs": 1}
    assert [p.name for p in (tmp_path / "repo" / "pool").iterdir()] == [f"{recorded[0].sha256}.deb"]
    index = (tmp_path / "repo" / "Packages").read_text()
    assert f"Filename: pool/{recorded[0].sha256}.deb" in index and "delta" not in index
    assert "pool/main" not in index


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt-get is not installed")
def test_real_apt_reads_the_repository_and_checks_what_it_downloads(
    export: tuple[Path, list[Package]], tmp_path: Path
) -> None:
    folder, recorded = export
    cache = tmp_path / "cache"
    aptrepo.ingest(folder, cache)
    repo = tmp_path / "repo"
    aptrepo.write_repo(repo, recorded, [], cache, "v")
    state = tmp_path / "apt"
    for sub in ("etc/apt/sources.list.d", "etc/apt/preferences.d", "lists/partial", "cache/archives/partial", "status"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "dpkg-status").write_text("")
    with aptrepo.serve(repo) as server:
        (state / "etc/apt/sources.list").write_text(f"deb [trusted=yes] http://127.0.0.1:{server.port}/ ./\n")
        options = [
            f"-oDir::Etc={state}/etc/apt",
            f"-oDir::State::Lists={state}/lists",
            f"-oDir::State::status={state}/dpkg-status",
            f"-oDir::Cache={state}/cache",
            "-oDebug::NoLocking=1",
            "-oAPT::Architecture=amd64",
            "-oAcquire::Languages=none",
        ]
        subprocess.run(["apt-get", *options, "update"], check=True, capture_output=True)
        shown = subprocess.run(["apt-cache", *options, "policy", "beta"], check=True, capture_output=True, text=True)
        assert "Candidate: 2:0.5-3+deb12u1" in shown.stdout
        subprocess.run(["apt-get", *options, "download", "alpha"], check=True, capture_output=True, cwd=tmp_path)
        assert any(line.startswith("GET /pool/") for line in server.served)
        # A file that does not match the index's digest is refused by apt.
        pooled = repo / "pool" / f"{recorded[1].sha256}.deb"
        pooled.unlink()
        pooled.write_bytes(b"not the recorded package")
        failed = subprocess.run(["apt-get", *options, "download", "beta"], capture_output=True, text=True, cwd=tmp_path)
        assert failed.returncode != 0
    assert (tmp_path / "alpha_1.0-1_all.deb").is_file()
