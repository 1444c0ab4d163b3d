"""Channels move between published versions with an append-only history; revocation stops a
version (and what was built on it) from being handed out again."""

import json
from pathlib import Path

import pytest

from imagefactory import channels, registry, stages
from imagefactory.ancestry import ancestry
from imagefactory.checksums import file_digest, format_sums
from imagefactory.errors import FactoryError
from imagefactory.parent import resolve_parent
from tests.unit.test_registry import staging
from tests.unit.test_stages import publish_stage


@pytest.fixture
def reg(tmp_path: Path) -> Path:
    where = tmp_path / "reg"
    for version in ("release-0.1.0", "release-0.2.0", "dev-0123456789ab"):
        registry.publish(where, staging(tmp_path, version, version.encode()), version)
    return where


def test_a_promotion_moves_the_channel_and_keeps_its_history(reg: Path) -> None:
    channels.promote(reg, "stable", "release-0.1.0", at="t1", by="alice@h")
    channels.promote(reg, "stable", "release-0.2.0", at="t2", by="bob@h")
    channels.promote(reg, "stable", "release-0.1.0", at="t3", by="alice@h")  # a rollback is a promotion
    stable = channels.channels(reg)["stable"]
    assert stable["version"] == "release-0.1.0" and stable["since"] == "t3"
    moves = [(r["from"], r["version"], r["at"], r["by"]) for r in stable["history"]]
    assert moves == [
        (None, "release-0.1.0", "t1", "alice@h"),
        ("release-0.1.0", "release-0.2.0", "t2", "bob@h"),
        ("release-0.2.0", "release-0.1.0", "t3", "alice@h"),
    ]
    assert channels.resolve(reg, "stable") == "release-0.1.0"
    assert "release-0.1.0 -> release-0.2.0  by bob@h" in channels.describe(reg)
    assert len((reg / channels.CHANNELS).read_text().splitlines()) == 3, "the history is appended, never rewritten"


def test_a_channel_never_points_at_an_unpublished_or_retired_version(reg: Path) -> None:
    with pytest.raises(FactoryError, match=r"release-0\.9\.0 is not published .*published versions: "):
        channels.promote(reg, "stable", "release-0.9.0")
    registry.deprecate(reg, "release-0.2.0", "t")
    registry.retire(reg, "release-0.2.0")
    with pytest.raises(FactoryError, match=r"release-0\.2\.0 is not published \(or was retired\)"):
        channels.promote(reg, "stable", "release-0.2.0")
    assert not (reg / channels.CHANNELS).exists(), "a refused promotion records nothing"


def test_a_version_a_channel_points_at_cannot_be_retired(reg: Path) -> None:
    channels.promote(reg, "stable", "release-0.1.0")
    registry.deprecate(reg, "release-0.1.0", "t")
    with pytest.raises(FactoryError, match=r"channel stable points at release-0\.1\.0; promote the channel"):
        registry.retire(reg, "release-0.1.0")
    channels.promote(reg, "stable", "release-0.2.0")
    registry.retire(reg, "release-0.1.0")
    assert "release-0.1.0" not in registry.read_index(reg)["versions"]


def test_a_dev_version_goes_only_on_a_dev_channel(reg: Path) -> None:
    with pytest.raises(FactoryError, match=r"dev-0123456789ab is a development version and channel stable is not"):
        channels.promote(reg, "stable", "dev-0123456789ab")
    channels.promote(reg, "nightly", "dev-0123456789ab", dev=True)
    channels.promote(reg, "nightly", "release-0.1.0")
    channels.promote(reg, "nightly", "dev-0123456789ab")  # it stays a dev channel
    assert channels.channels(reg)["nightly"]["dev"] is True


@pytest.mark.parametrize("name", ["Stable", "", "1st", "a/b", "x" * 41])
def test_a_bad_channel_name_is_refused_naming_what_is_accepted(reg: Path, name: str) -> None:
    with pytest.raises(FactoryError, match=r"is not a channel name; accepted: a lower-case letter"):
        channels.promote(reg, name, "release-0.1.0")


def test_a_revoked_version_is_never_looked_up_promoted_or_resolved(reg: Path) -> None:
    channels.promote(reg, "stable", "release-0.2.0")
    revoked = channels.revoke(reg, "release-0.2.0", "CVE-2026-0001 in openssh", at="t9", by="sec@h")
    assert revoked == [(reg, "release-0.2.0")]
    with pytest.raises(FactoryError, match=r"release-0\.2\.0 is revoked since t9: CVE-2026-0001 in openssh"):
        registry.lookup_file(reg, "release-0.2.0", "qcow2")
    assert registry.lookup_file(reg, "release-0.2.0", "qcow2", allow_revoked=True)["sha256"]
    with pytest.raises(FactoryError, match=r"channel stable points at release-0\.2\.0 is revoked .*CVE-2026-0001"):
        channels.resolve(reg, "stable")
    assert channels.resolve(reg, "stable", allow_revoked=True) == "release-0.2.0"
    with pytest.raises(FactoryError, match=r"revoked since t9"):
        channels.promote(reg, "candidate", "release-0.2.0")
    channels.promote(reg, "stable", "release-0.1.0")  # recovering is promoting another version
    assert channels.resolve(reg, "stable") == "release-0.1.0"
    assert "stable: release-0.1.0 since" in channels.describe(reg)
    assert registry.read_index(reg)["versions"]["release-0.2.0"]["revoked"]["reason"] == "CVE-2026-0001 in openssh"


def test_a_revocation_survives_a_rebuilt_index_and_is_never_undone(reg: Path, tmp_path: Path) -> None:
    channels.revoke(reg, "release-0.1.0", "bad kernel", at="t1")
    channels.revoke(reg, "release-0.1.0", "a second reason", at="t2")
    assert channels.revocations(reg)["release-0.1.0"]["reason"] == "bad kernel", "the first revocation stands"
    (reg / "index.json").unlink()
    registry.publish(reg, staging(tmp_path, "release-0.1.0", b"release-0.1.0"), "release-0.1.0")
    with pytest.raises(FactoryError, match=r"revoked since t1: bad kernel"):
        registry.lookup_entry(reg, "release-0.1.0")


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_revocation_needs_a_reason(reg: Path, reason: str) -> None:
    with pytest.raises(FactoryError, match=r"REASON is empty"):
        channels.revoke(reg, "release-0.1.0", reason)
    assert not (reg / registry.REVOCATIONS).exists()


def publish_image(
    where: Path, staging: Path, version: str, name: str, payload: bytes, fmt: str, **fields: object
) -> dict:
    """Publish one version holding one file into the registry `where`: its manifest (with `fields`)
    and SHA256SUMS beside it; the manifest is returned."""
    staging.mkdir()
    (staging / name).write_bytes(payload)
    digest = file_digest(staging / name)
    manifest = {
        "version": version,
        "commit": "d" * 40,
        "build_time": "t",
        "upstream": {"source": "s", "sha256": "p"},
        **fields,
        "formats": {fmt: {"file": name, "bytes": len(payload), "sha256": digest}},
    }
    (staging / "manifest.json").write_text(json.dumps(manifest))
    (staging / "SHA256SUMS").write_text(format_sums({name: digest}))
    registry.publish(where, staging, version)
    return manifest


def test_revoking_a_base_revokes_the_images_built_on_it_and_no_child_is_built_on_it(tmp_path: Path) -> None:
    top = tmp_path / "reg"
    base = publish_stage(top, "base", "release-0.1.0", b"base disk", "k1", tmp_path)
    for version in ("release-0.1.0", "release-0.2.0", "release-0.3.0"):
        parent = stages.stage_link("base", base, "qcow2") if version != "release-0.3.0" else {"stage": "base"}
        chain = [base["chain"][0], parent, {"stage": "functional"}]
        publish_image(
            top, tmp_path / f"staging-top-{version}", version, "top.raw", version.encode(), "raw", chain=chain
        )
    base_registry = stages.stage_registry(top, "base")
    done = channels.revoke(base_registry, "release-0.1.0", "hardening gap", at="t")
    assert done == [(base_registry, "release-0.1.0"), (top, "release-0.1.0"), (top, "release-0.2.0")]
    assert channels.revocations(top)["release-0.2.0"]["because"] == "base release-0.1.0"
    assert "release-0.3.0" not in channels.revocations(top), "an image on another base is untouched"
    found = ancestry(top, "release-0.2.0")  # inspection still works, and says why
    assert found["revoked"] == [
        "release-0.2.0 is revoked since t: hardening gap",
        "its base release-0.1.0 is revoked since t: hardening gap",
    ]
    with pytest.raises(
        FactoryError,
        match=r"stage base release-0\.1\.0, the parent of release-0\.4\.0, is revoked since t: hardening gap",
    ):
        resolve_parent(top, "base", "release-0.1.0", "release-0.4.0")


def test_the_command_line_promotes_lists_and_revokes(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert channels.main(["--registry", str(reg), "promote", "--channel", "stable", "--version", "release-0.1.0"]) == 0
    assert channels.main(["--registry", str(reg), "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["stable"]["version"] == "release-0.1.0"
    assert channels.main(["--registry", str(reg), "revoke", "--version", "release-0.1.0", "--reason", "r"]) == 0
    assert channels.main(["--registry", str(reg), "resolve", "--channel", "stable"]) != 0
    err = capsys.readouterr().err
    assert "revoked release-0.1.0: r" in err and "Traceback" not in err
    assert "channel stable points at release-0.1.0 is revoked" in err


def test_the_image_stack_exports_each_channel_with_its_state_and_history(reg: Path) -> None:
    channels.promote(reg, "stable", "release-0.1.0", at="t1", by="alice@h")
    channels.promote(reg, "stable", "release-0.2.0", at="t2", by="bob@h")
    channels.promote(reg, "nightly", "dev-0123456789ab", dev=True, at="t3", by="ci@h")
    channels.revoke(reg, "release-0.2.0", "CVE in sudo", at="t4", by="sec@h")
    exported = channels.summary(reg)
    assert list(exported) == ["nightly", "stable"]
    assert exported["stable"] == {
        "version": "release-0.2.0",
        "since": "t2",
        "dev": False,
        "revoked": True,
        "history": [
            {"from": None, "version": "release-0.1.0", "at": "t1", "by": "alice@h"},
            {"from": "release-0.1.0", "version": "release-0.2.0", "at": "t2", "by": "bob@h"},
        ],
    }
    assert exported["nightly"]["dev"] is True and exported["nightly"]["revoked"] is False
    assert channels.summary(reg.parent / "empty") == {}


def test_revoking_a_base_revokes_every_later_stage_and_image_built_on_it(tmp_path: Path) -> None:
    """Three stages: base, then a middle stage built on it, then the image. Revoking the base
    revokes the middle stage's version too, so nothing is ever built on it again, and the image."""
    top = tmp_path / "reg"
    base = publish_stage(top, "base", "release-0.1.0", b"base disk", "k1", tmp_path)
    mid_registry = stages.stage_registry(top, "middle")
    mid_manifest = publish_image(
        mid_registry,
        tmp_path / "staging-middle",
        "release-0.1.0",
        "mid.qcow2",
        b"middle disk",
        "qcow2",
        **{k: base[k] for k in ("commit", "build_time", "upstream", "sealed_raw_sha256", "recipe")},
        stage="middle",
        stage_key="k2",
        chain=[
            base["chain"][0],
            stages.stage_link("base", base, "qcow2"),
            {"stage": "middle", "version": "release-0.1.0"},
        ],
    )
    chain = [*mid_manifest["chain"][:2], stages.stage_link("middle", mid_manifest, "qcow2"), {"stage": "functional"}]
    publish_image(top, tmp_path / "staging-top", "release-0.1.0", "top.raw", b"image", "raw", chain=chain)
    base_registry = stages.stage_registry(top, "base")
    done = channels.revoke(base_registry, "release-0.1.0", "hardening gap", at="t")
    assert done == [(base_registry, "release-0.1.0"), (top, "release-0.1.0"), (mid_registry, "release-0.1.0")]
    assert channels.revocations(mid_registry)["release-0.1.0"]["because"] == "base release-0.1.0"
    with pytest.raises(FactoryError, match=r"revoked since t: hardening gap"):
        resolve_parent(top, "middle", "release-0.1.0", "release-0.2.0")
