"""Formats: every file is a checked, identical conversion of the RAW, with its digest."""

import json
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from imagefactory import formats, registry
from imagefactory.checksums import file_digest, parse_sums
from imagefactory.errors import FactoryError
from tests.unit.conftest import SEALED_FILES

Factory = Callable[[dict[str, str | bytes]], Path]


def host_facts(folder: Path, monkeypatch: pytest.MonkeyPatch, **facts: str) -> None:
    """The step runs in `folder`, with these host facts (as the program writes them)."""
    (folder / ".state").mkdir(parents=True, exist_ok=True)
    (folder / ".state" / "host.json").write_text(json.dumps(facts))
    monkeypatch.chdir(folder)


@pytest.fixture
def no_boot_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """These small disks boot nothing: the gate is switched off, as `bootCheck: none` does."""
    host_facts(tmp_path / "project", monkeypatch, boot_check="none")


def qemu_info(path: Path, fmt: str) -> dict:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "-f", fmt, str(path)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def test_each_format_is_read_back_by_qemu_img_with_the_raw_size(disk_factory: Factory, tmp_path: Path) -> None:
    raw = disk_factory(SEALED_FILES)
    out = tmp_path / "out"
    result = formats.produce(raw, out, "debian-12", "release-0.1.0", ["raw", "qcow2", "vhd", "vmdk", "vhdx"], 0)
    assert set(result) == {"raw", "qcow2", "vhd", "vmdk", "vhdx"}
    for fmt, entry in result.items():
        path = out / entry["file"]
        assert entry["sha256"] == file_digest(path), fmt
        info = qemu_info(path, formats.FORMATS[fmt].qemu_format)
        assert info["virtual-size"] == raw.stat().st_size, fmt
    assert qemu_info(out / result["vmdk"]["file"], "vmdk")["format-specific"]["data"]["create-type"] == (
        "streamOptimized"
    )
    assert not list(out.glob(".*partial"))


def test_the_vhd_is_fixed_with_a_whole_number_of_mib(disk_factory: Factory, tmp_path: Path) -> None:
    raw = disk_factory(SEALED_FILES)
    result = formats.produce(raw, tmp_path / "o", "n", "dev-abc1234", ["vhd"], 0)
    vhd = tmp_path / "o" / result["vhd"]["file"]
    footer = vhd.read_bytes()[-512:]
    assert footer[:8] == b"conectix"
    assert int.from_bytes(footer[60:64], "big") == 2, "disk type 2 is a fixed VHD"
    assert vhd.stat().st_size == raw.stat().st_size + 512
    assert raw.stat().st_size % (1024 * 1024) == 0


def test_the_ova_is_ustar_with_descriptor_manifest_then_disk(disk_factory: Factory, tmp_path: Path) -> None:
    raw = disk_factory(SEALED_FILES)
    result = formats.produce(raw, tmp_path / "o", "debian-12", "release-0.1.0", ["ova"], 1700000000)
    assert set(result) == {"ova"}, "an OVA-only request leaves no separate VMDK behind"
    ova = tmp_path / "o" / result["ova"]["file"]
    with tarfile.open(ova) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == ["debian-12-release-0.1.0.ovf", "debian-12-release-0.1.0.mf", "debian-12-release-0.1.0.vmdk"]
        assert all(m.mtime == 1700000000 and m.uid == 0 for m in members)
        manifest = tar.extractfile(names[1]).read().decode()  # type: ignore[union-attr]  # both members are regular files, so extractfile is never None
        vmdk = tar.extractfile(names[2]).read()  # type: ignore[union-attr]  # both members are regular files, so extractfile is never None
    import hashlib

    assert f"SHA256(debian-12-release-0.1.0.vmdk)= {hashlib.sha256(vmdk).hexdigest()}" in manifest
    assert ova.read_bytes()[257:262] == b"ustar"


def cot_info(ova: Path) -> subprocess.CompletedProcess[str]:
    """The Common OVF Tool (PyPI cot, an independent OVF 1.x reader) loading the OVA."""
    cot = Path(sys.executable).parent / "cot"
    assert cot.is_file(), "cot is a dev requirement (requirements-dev.txt); run make setup"
    return subprocess.run([str(cot), "info", str(ova)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("digest", ["sha256", "sha1"])
def test_the_ova_manifest_digest_is_a_setting_and_both_are_verified(
    disk_factory: Factory, tmp_path: Path, digest: str
) -> None:
    raw = disk_factory(SEALED_FILES)
    result = formats.produce(raw, tmp_path / "o", "debian-12", "release-0.1.0", ["ova"], 0, ova_manifest=digest)
    ova = tmp_path / "o" / result["ova"]["file"]
    # Our own reader checks every member against the manifest, whichever digest it uses.
    assert formats.verify_ova(ova) == {
        "debian-12-release-0.1.0.ovf": digest,
        "debian-12-release-0.1.0.vmdk": digest,
    }
    assert result["ova"].get("manifest_digest", "sha256") == digest
    loaded = cot_info(ova)
    assert loaded.returncode == 0, loaded.stderr
    tampered = "may have been tampered with" in loaded.stderr + loaded.stdout
    # An OVF 1.x reader takes every manifest line for SHA-1: the sha1 mode is what it accepts; the
    # sha256 default is what it reports as tampered (why the setting exists).
    assert tampered == (digest == "sha256"), loaded.stderr


def test_a_changed_member_of_an_ova_fails_its_manifest(disk_factory: Factory, tmp_path: Path) -> None:
    raw = disk_factory(SEALED_FILES)
    result = formats.produce(raw, tmp_path / "o", "debian-12", "release-0.1.0", ["ova"], 0, ova_manifest="sha1")
    ova = tmp_path / "o" / result["ova"]["file"]
    data = bytearray(ova.read_bytes())
    with tarfile.open(ova) as tar:
        disk = tar.getmember("debian-12-release-0.1.0.vmdk")
    data[disk.offset_data + 100] ^= 0xFF
    ova.write_bytes(bytes(data))
    with pytest.raises(FactoryError, match=r"debian-12-release-0\.1\.0\.vmdk does not match its sha1 in the manifest"):
        formats.verify_ova(ova)


def test_an_unknown_ova_manifest_digest_is_refused_naming_the_accepted_ones(tmp_path: Path) -> None:
    (tmp_path / "x.vmdk").write_bytes(b"disk")
    with pytest.raises(ValueError, match="manifest digest 'md5' is not one of sha256, sha1"):
        formats.make_ova(tmp_path / "x.vmdk", tmp_path / "x.ova", "n", "v", 1, 0, "md5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.vmdk"], "no OVA and no parts are left"


def test_a_raw_that_is_not_whole_mib_is_refused(tmp_path: Path) -> None:
    raw = tmp_path / "odd.raw"
    raw.write_bytes(b"\0" * 1000)
    with pytest.raises(FactoryError, match="whole number of MiB"):
        formats.produce(raw, tmp_path / "o", "n", "dev-abc1234", ["qcow2"], 0)


def test_the_command_writes_sums_and_manifest_and_refuses_a_changed_raw(
    disk_factory: Factory, tmp_path: Path, capsys, no_boot_check
) -> None:
    raw = disk_factory(SEALED_FILES)
    common = [
        "--raw",
        str(raw),
        "--out-base",
        str(tmp_path / "stage"),
        "--version",
        "release-0.1.0",
        "--commit",
        "a" * 40,
        "--upstream-source",
        "stage0:x",
        "--upstream-sha256",
        "b" * 64,
        "--build-time",
        "2025-01-01T00:00:00Z",
        "--build-epoch",
        "1735689600",
        "--formats",
        "raw,qcow2",
    ]
    assert formats.main([*common, "--raw-sha256", "0" * 64]) == 1
    assert "changed since it was sealed" in capsys.readouterr().err
    assert formats.main([*common, "--raw-sha256", file_digest(raw)]) == 0
    manifest = json.loads(capsys.readouterr().out)
    folder = Path(manifest["dir"])
    sums = parse_sums((folder / "SHA256SUMS").read_text())
    assert set(sums) == {manifest["formats"]["raw"]["file"], manifest["formats"]["qcow2"]["file"]}
    for name, (_, digest) in sums.items():
        assert file_digest(folder / name) == digest
    assert json.loads((folder / "manifest.json").read_text())["commit"] == "a" * 40


def test_the_same_raw_converts_to_identical_files_in_every_format(disk_factory: Factory, tmp_path: Path) -> None:
    raw = disk_factory(SEALED_FILES)
    fmts = ["raw", "qcow2", "vhd", "vmdk", "ova"]
    first = formats.produce(raw, tmp_path / "a", "debian-12", "release-0.1.0", fmts, 1735689600)
    second = formats.produce(raw, tmp_path / "b", "debian-12", "release-0.1.0", fmts, 1735689600)
    assert {f: e["sha256"] for f, e in first.items()} == {f: e["sha256"] for f, e in second.items()}
    other = formats.produce(raw, tmp_path / "c", "debian-12", "release-0.2.0", ["vhd"], 1735689600)
    assert other["vhd"]["sha256"] != first["vhd"]["sha256"], "the VHD's identity follows the version"


def test_the_vmdk_names_its_published_file_and_a_stable_cid(disk_factory: Factory, tmp_path: Path) -> None:
    raw = disk_factory(SEALED_FILES)
    result = formats.produce(raw, tmp_path / "o", "debian-12", "release-0.1.0", ["vmdk"], 0)
    head = (tmp_path / "o" / result["vmdk"]["file"]).read_bytes()[:4096]
    assert b'"debian-12-release-0.1.0.vmdk"' in head
    assert b"partial" not in head
    from imagefactory.remaster import derived_uuid

    assert f"CID={derived_uuid('release-0.1.0', 'vmdk-cid').hex[:8]}".encode() in head


def test_the_vhd_footer_carries_the_commit_time_and_a_valid_checksum(disk_factory: Factory, tmp_path: Path) -> None:
    raw = disk_factory(SEALED_FILES)
    result = formats.produce(raw, tmp_path / "o", "n", "release-0.1.0", ["vhd"], 1735689600)
    footer = bytearray((tmp_path / "o" / result["vhd"]["file"]).read_bytes()[-512:])
    assert int.from_bytes(footer[24:28], "big") == 1735689600 - formats.VHD_EPOCH
    stored = int.from_bytes(footer[64:68], "big")
    footer[64:68] = b"\0\0\0\0"
    assert stored == ~sum(footer) & 0xFFFFFFFF


def test_a_disk_smaller_than_the_upstream_is_refused_before_anything_boots(tmp_path) -> None:  # type: ignore[no-untyped-def]  # pytest fixture
    from imagefactory.build import check_disk_size
    from imagefactory.errors import FactoryError

    image = tmp_path / "upstream.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "2G"], check=True)
    check_disk_size(image, 2048)
    with pytest.raises(
        FactoryError,
        match=r"imagefactory:diskSizeMiB is 1024, smaller than the upstream image upstream.qcow2 \(2048 MiB\)",
    ):
        check_disk_size(image, 1024)


def test_the_recorded_package_set_is_published_as_tsv_and_sbom_under_the_sums(
    disk_factory: Factory, tmp_path: Path, capsys, no_boot_check
) -> None:
    record = "bash\t5.2.15-2+b7\tamd64\t" + "c" * 64 + "\nzlib1g\t1:1.2.13.dfsg-1\tamd64\t-\n"
    raw = disk_factory({**SEALED_FILES, "/usr/share/imagefactory/packages.tsv": record})
    args = ["--raw", str(raw), "--raw-sha256", file_digest(raw), "--out-base", str(tmp_path / "stage")]
    args += ["--version", "release-0.1.0", "--commit", "a" * 40, "--upstream-source", "stage0:x"]
    args += ["--upstream-sha256", "b" * 64, "--build-time", "2025-01-01T00:00:00Z", "--build-epoch", "1735689600"]
    assert formats.main([*args, "--formats", "raw"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    folder = Path(manifest["dir"])
    assert manifest["packages"]["count"] == 2
    assert (folder / "packages.tsv").read_text() == record
    sbom = json.loads((folder / "sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    assert {c["name"] for c in sbom["components"]} == {"bash", "zlib1g"}
    sums = parse_sums((folder / "SHA256SUMS").read_text())
    assert {"packages.tsv", "sbom.cdx.json"} <= set(sums)
    assert registry.verify_folder(folder)["packages"]["sbom"]["file"] == "sbom.cdx.json"


def test_a_digest_other_than_sha256_is_refused_for_a_tag_older_than_the_setting() -> None:
    formats.check_manifest_digest_supported("release-0.1.0", "sha256", None)  # the default: any tree
    formats.check_manifest_digest_supported("release-0.2.0", "sha1", "MANIFEST_DIGESTS = ('sha256', 'sha1')")
    with pytest.raises(FactoryError, match=r"release-0\.1\.0's tree predates that setting .* keep sha256"):
        formats.check_manifest_digest_supported("release-0.1.0", "sha1", "def manifest(digests): ...")


def test_an_unreadable_manifest_is_a_clear_error(disk_factory: Factory, tmp_path: Path) -> None:
    raw = disk_factory(SEALED_FILES)
    result = formats.produce(raw, tmp_path / "o", "debian-12", "release-0.1.0", ["ova"], 0)
    ova = tmp_path / "o" / result["ova"]["file"]
    data = bytearray(ova.read_bytes())
    with tarfile.open(ova) as tar:
        mf = tar.getmember("debian-12-release-0.1.0.mf")
    data[mf.offset_data : mf.offset_data + 6] = b"MD5(x)"
    ova.write_bytes(bytes(data))
    with pytest.raises(
        FactoryError, match=r"its manifest debian-12-release-0\.1\.0\.mf cannot be read: manifest line 1"
    ):
        formats.verify_ova(ova)


def gate_args(raw: Path, out: Path, version: str, stage: str = "") -> list[str]:
    args = ["--raw", str(raw), "--raw-sha256", file_digest(raw), "--out-base", str(out), "--version", version]
    args += ["--commit", "a" * 40, "--upstream-source", "stage0:x", "--upstream-sha256", "b" * 64]
    args += ["--build-time", "2025-01-01T00:00:00Z", "--build-epoch", "1735689600", "--formats", "qcow2,vhd,ova"]
    return [*args, "--stage", stage] if stage else args


@pytest.mark.parametrize(
    ("version", "facts", "stage", "expected"),
    [
        ("release-0.1.0", {}, "", "all"),  # a release: every format, by default
        ("dev-0123456789ab", {}, "", "qcow2"),  # a development build: the QCOW2 only
        ("release-0.1.0", {"boot_check": "qcow2"}, "", "qcow2"),  # the stack's imagefactory:bootCheck
        ("release-0.1.0", {"top_stage": "functional"}, "functional", "all"),
        ("release-0.1.0", {"top_stage": "functional"}, "base", None),  # a parent: its child's build boots it
    ],
)
def test_the_boot_gate_runs_before_publication_with_the_mode_the_version_needs(
    disk_factory: Factory, tmp_path: Path, monkeypatch, capsys, version, facts, stage, expected
) -> None:
    raw = disk_factory(SEALED_FILES)
    host_facts(tmp_path / "project", monkeypatch, accelerator="tcg", **facts)
    calls = []

    def run(files, version_, mode, accelerator, work):  # type: ignore[no-untyped-def]  # stands in for QEMU
        calls.append((sorted(files), version_, mode, accelerator))
        return [{"format": "qcow2", "firmware": "uefi", "version": version_, "seconds": 1.0}]

    monkeypatch.setattr(formats.bootcheck, "run", run)
    assert formats.main(gate_args(raw, tmp_path / "stage", version, stage)) == 0
    manifest = json.loads(capsys.readouterr().out)
    if expected is None:
        assert calls == [] and manifest["boot_checks"] == []
    else:
        assert calls == [(["ova", "qcow2", "vhd"], version, expected, "tcg")]
        published = json.loads((Path(manifest["dir"]) / "manifest.json").read_text())
        assert (
            published["boot_checks"]
            == manifest["boot_checks"]
            == [{"format": "qcow2", "firmware": "uefi", "version": version, "seconds": 1.0}]
        )


def test_a_format_that_does_not_boot_stops_the_release_and_nothing_is_staged(
    disk_factory: Factory, tmp_path: Path, monkeypatch, capsys
) -> None:
    raw = disk_factory(SEALED_FILES)
    host_facts(tmp_path / "project", monkeypatch, accelerator="tcg")

    def run(files, version, mode, accelerator, work):  # type: ignore[no-untyped-def]  # stands in for QEMU
        raise FactoryError("boot check: the VHD (x.vhd) under secureboot did not boot: no SSH within 600s")

    monkeypatch.setattr(formats.bootcheck, "run", run)
    assert formats.main(gate_args(raw, tmp_path / "stage", "release-0.1.0")) == 1
    assert "the VHD (x.vhd) under secureboot did not boot" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "stage").iterdir() if not p.name.startswith(".")] == []
