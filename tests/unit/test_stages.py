"""Stages: recipes, which parent a version reuses, the chain of custody and its status."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from imagefactory import ancestry, registry, stages
from imagefactory.checksums import file_digest, format_sums
from imagefactory.errors import FactoryError
from imagefactory.formats import chain_of
from imagefactory.parent import resolve_parent
from imagefactory.settings import validate
from imagefactory.stages import DEFAULT_STAGES, StagePlan
from imagefactory.steps import FormatsRequest
from tests.helpers import ROOT

BASE, TOP = DEFAULT_STAGES


# --- declaring stages ----------------------------------------------------------------------------


def test_the_default_chain_is_a_hardened_base_under_the_functional_image() -> None:
    settings = validate({"upstreamUrl": "/x.qcow2"}, ROOT)
    assert [(s.name, s.playbook) for s in settings.stages] == [("base", "base.yml"), ("functional", "site.yml")]
    # package_source comes first: in a rebuild it makes apt read the recorded packages only.
    assert stages.playbook_roles((ROOT / "ansible/base.yml").read_text(), "base.yml") == [
        "package_source",
        "hardening",
        "release",
        "seal",
    ]
    assert stages.playbook_roles((ROOT / "ansible/site.yml").read_text(), "site.yml") == [
        "package_source",
        "baseline",
        "health",
        "release",
        "seal",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "imagefactory:stages must be a non-empty list"),
        ("base", "imagefactory:stages must be a non-empty list"),
        ([{"name": "base"}], "imagefactory:stages[0] is {'name': 'base'}; accepted: an object with exactly name"),
        ([{"name": "Base", "playbook": "b.yml"}], "imagefactory:stages[0].name is 'Base'; accepted: lower-case"),
        ([{"name": "base", "playbook": "../b.yml"}], "imagefactory:stages[0].playbook is '../b.yml'"),
        (
            [{"name": "base", "playbook": "base.yml"}, {"name": "base", "playbook": "site.yml"}],
            "names a stage twice (base, base)",
        ),
        ([{"name": "base", "playbook": "nope.yml"}], "ansible/nope.yml does not exist"),
    ],
)
def test_a_bad_chain_is_refused_naming_the_key(value: object, message: str) -> None:
    with pytest.raises(FactoryError) as caught:
        validate({"upstreamUrl": "/x.qcow2", "stages": value}, ROOT)
    assert message in str(caught.value)


# --- recipes -------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e.invalid", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_COMMITTER_EMAIL": "t@e.invalid", "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    for folder in ("packer", "ansible"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns(".ansible", "__pycache__"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    return repo


def recipes(repo: Path) -> tuple[str, str]:
    return stages.working_tree_recipe(repo, BASE), stages.working_tree_recipe(repo, TOP)


def test_a_tag_and_the_working_tree_give_one_recipe_digest_for_the_same_files(checkout: Path) -> None:
    head = git(checkout, "rev-parse", "HEAD").strip()
    assert recipes(checkout) == (
        stages.commit_recipe(checkout, head, BASE, "release-0.1.0"),
        stages.commit_recipe(checkout, head, TOP, "release-0.1.0"),
    )


def test_a_functional_role_changes_only_the_top_recipe_and_packer_changes_both(checkout: Path) -> None:
    base, top = recipes(checkout)
    health = checkout / "ansible/roles/health/defaults/main.yml"
    health.write_text(health.read_text() + "# changed\n")
    assert recipes(checkout)[0] == base and recipes(checkout)[1] != top
    hardening = checkout / "ansible/roles/hardening/defaults/main.yml"
    hardening.write_text(hardening.read_text() + "# changed\n")
    assert recipes(checkout)[0] != base
    base, top = recipes(checkout)
    (checkout / "packer/locals.pkr.hcl").write_text("# changed\n")
    assert recipes(checkout)[0] != base and recipes(checkout)[1] != top


def test_a_tag_without_the_stage_playbook_is_refused_naming_it(checkout: Path) -> None:
    (checkout / "ansible/base.yml").unlink()
    git(checkout, "commit", "-qam", "no base")
    head = git(checkout, "rev-parse", "HEAD").strip()
    with pytest.raises(FactoryError, match=r"release-0\.1\.0 \(commit \w{12}\) has no ansible/base\.yml"):
        stages.commit_recipe(checkout, head, BASE, "release-0.1.0")


def test_a_key_covers_the_upstream_and_every_stage_below() -> None:
    keys = stages.stage_keys("u1", DEFAULT_STAGES, ["r-base", "r-top"])
    assert stages.stage_keys("u1", DEFAULT_STAGES, ["r-base", "r-other"])[0] == keys[0]
    assert stages.stage_keys("u1", DEFAULT_STAGES, ["r-base2", "r-top"])[1] != keys[1]
    assert stages.stage_keys("u2", DEFAULT_STAGES, ["r-base", "r-top"])[0] != keys[0]


# --- who builds a parent -------------------------------------------------------------------------


def plan(versions: list[str], base_keys: dict[str, str], indexes: dict | None = None) -> dict[str, StagePlan]:
    keys = {v: [base_keys[v], f"top-{v}"] for v in versions}
    found = stages.plan_parents(
        versions, DEFAULT_STAGES, keys, {v: ["r", "r"] for v in versions}, lambda s: (indexes or {}).get(s, {})
    )
    return {v: p[0] for v, p in found.items()}


def test_the_oldest_version_builds_a_shared_base_and_the_others_boot_it() -> None:
    found = plan(
        ["release-0.1.0", "release-0.2.0", "release-0.3.0"],
        {"release-0.1.0": "k1", "release-0.2.0": "k1", "release-0.3.0": "k2"},
    )
    assert [(p.version, p.builds, p.published) for p in found.values()] == [
        ("release-0.1.0", True, False),
        ("release-0.1.0", False, False),
        ("release-0.3.0", True, False),
    ]


def test_a_published_base_with_the_same_key_is_reused_and_never_rebuilt() -> None:
    index = {"base": {"versions": {"release-0.1.0": {"stage_key": "k1", "published_at": "2026-01-01"}}}}
    found = plan(["release-0.1.0", "dev-abcdef123456"], {"release-0.1.0": "k1", "dev-abcdef123456": "k1"}, index)
    assert [(p.version, p.builds, p.published) for p in found.values()] == [
        ("release-0.1.0", True, True),  # the version that published it keeps its resources
        ("release-0.1.0", False, True),
    ]


# --- the chain of custody ------------------------------------------------------------------------


def publish_stage(top: Path, stage: str, version: str, payload: bytes, key: str, tmp: Path) -> dict:
    folder = tmp / f"staging-{stage}-{version}"
    folder.mkdir()
    name = f"img-{stage}-{version}.qcow2"
    (folder / name).write_bytes(payload)
    digest = file_digest(folder / name)
    manifest = {
        "version": version,
        "commit": "c" * 40,
        "build_time": "2026-01-01T00:00:00Z",
        "upstream": {"source": "stage0:x", "sha256": "u" * 64},
        "sealed_raw_sha256": "r" * 64,
        "stage": stage,
        "recipe": "sha256:" + "e" * 64,
        "stage_key": key,
        "formats": {"qcow2": {"file": name, "bytes": len(payload), "sha256": digest}},
        "chain": [
            stages.upstream_link("stage0:x", "u" * 64, "stage0"),
            {"stage": stage, "version": version, "commit": "c" * 40, "recipe": "sha256:" + "e" * 64},
        ],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "SHA256SUMS").write_text(format_sums({name: digest}))
    registry.publish(stages.stage_registry(top, stage), folder, version)
    return manifest


def test_a_verified_parent_gives_its_file_and_its_chain(tmp_path: Path) -> None:
    manifest = publish_stage(tmp_path / "reg", "base", "release-0.1.0", b"base disk", "k1", tmp_path)
    parent = resolve_parent(tmp_path / "reg", "base", "release-0.1.0", "release-0.2.0")
    assert parent.sha256 == manifest["formats"]["qcow2"]["sha256"] and parent.source == "base release-0.1.0"
    assert [link["stage"] for link in parent.chain] == ["upstream", "base"]
    assert parent.chain[1]["file"] == {
        "format": "qcow2",
        "name": "img-base-release-0.1.0.qcow2",
        "sha256": parent.sha256,
    }
    assert (
        registry.read_index(stages.stage_registry(tmp_path / "reg", "base"))["versions"]["release-0.1.0"]["stage_key"]
        == "k1"
    )


def test_a_tampered_parent_stops_the_child_naming_the_file_and_both_digests(tmp_path: Path) -> None:
    manifest = publish_stage(tmp_path / "reg", "base", "release-0.1.0", b"base disk", "k1", tmp_path)
    path = stages.stage_registry(tmp_path / "reg", "base") / "release-0.1.0" / "img-base-release-0.1.0.qcow2"
    path.chmod(0o644)
    path.write_bytes(b"base disk, changed")
    with pytest.raises(FactoryError) as caught:
        resolve_parent(tmp_path / "reg", "base", "release-0.1.0", "release-0.2.0")
    published, actual = manifest["formats"]["qcow2"]["sha256"], file_digest(path)
    assert f"{path} does not match its published digest: published sha256:{published}, actual sha256:{actual}" in str(
        caught.value
    )


def test_a_missing_parent_names_what_the_stage_registry_has(tmp_path: Path) -> None:
    publish_stage(tmp_path / "reg", "base", "release-0.1.0", b"base disk", "k1", tmp_path)
    with pytest.raises(FactoryError, match=r"stage base release-0\.9\.0, the parent of x, .* it has: release-0\.1\.0"):
        resolve_parent(tmp_path / "reg", "base", "release-0.9.0", "x")


def formats_request(parents: str) -> FormatsRequest:
    return FormatsRequest(
        raw=Path("d.raw"), raw_sha256="r" * 64, out_base=Path("o"), version="release-0.2.0", commit="c" * 40,
        upstream_source="base release-0.1.0", upstream_sha256="p" * 64, build_time="t", build_epoch=0,
        formats="raw", stage="functional", recipe="sha256:f", parents=parents,
    )  # fmt: skip


def test_the_manifest_chain_is_the_parents_then_this_stage() -> None:
    below = [stages.upstream_link("stage0:x", "u" * 64, "stage0"), {"stage": "base", "version": "release-0.1.0"}]
    chain = chain_of(formats_request(json.dumps(below)))
    assert chain[:2] == below
    assert chain[2] == {
        "stage": "functional",
        "version": "release-0.2.0",
        "commit": "c" * 40,
        "recipe": "sha256:f",
        "sealed_raw_sha256": "r" * 64,
    }
    with pytest.raises(FactoryError, match="accepted: a JSON list that starts at the upstream"):
        chain_of(formats_request(json.dumps(below[1:])))


def test_ancestry_reports_a_child_built_on_an_older_parent() -> None:
    chain = [
        {"stage": "upstream"},
        {"stage": "base", "version": "release-0.1.0"},
        {"stage": "functional", "version": "release-0.2.0"},
    ]
    assert stages.outdated(chain, lambda stage: "release-0.3.0", "release-0.2.0") == [
        "functional release-0.2.0 is built on base release-0.1.0; base release-0.3.0 is newer"
    ]
    assert stages.outdated(chain, lambda stage: "release-0.1.0", "release-0.2.0") == []
    index = {"versions": {v: {} for v in ("release-0.2.0", "release-0.10.0-rc.1", "release-0.9.0", "dev-abcdef1")}}
    assert stages.newest_published(index) == "release-0.10.0-rc.1", "by version, never by publish time"
    assert not stages.is_newer("release-0.3.0", "dev-abcdef1"), "a development parent has no order"
    assert stages.is_newer("release-0.10.0", "release-0.10.0-rc.1")


def test_ancestry_proves_each_link_and_shows_a_newer_parent(tmp_path: Path) -> None:
    top = tmp_path / "reg"
    base = publish_stage(top, "base", "release-0.1.0", b"base disk", "k1", tmp_path)
    link = stages.stage_link("base", base, "qcow2")
    folder = tmp_path / "staging-top"
    folder.mkdir()
    (folder / "top.raw").write_bytes(b"top disk")
    digest = file_digest(folder / "top.raw")
    manifest = {
        "version": "release-0.2.0",
        "commit": "d" * 40,
        "build_time": "t",
        "upstream": {"source": "base release-0.1.0", "sha256": link["file"]["sha256"]},
        "sealed_raw_sha256": digest,
        "formats": {"raw": {"file": "top.raw", "bytes": 8, "sha256": digest}},
        "stage": "functional",
        "chain": [base["chain"][0], link, {"stage": "functional", "version": "release-0.2.0", "commit": "d" * 40}],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "SHA256SUMS").write_text(format_sums({"top.raw": digest}))
    registry.publish(top, folder, "release-0.2.0")
    assert ancestry.ancestry(top, "release-0.2.0")["outdated"] == []

    publish_stage(top, "base", "release-0.3.0", b"newer base", "k2", tmp_path)
    assert ancestry.ancestry(top, "release-0.2.0")["outdated"] == [
        "functional release-0.2.0 is built on base release-0.1.0; base release-0.3.0 is newer"
    ]
    path = stages.stage_registry(top, "base") / "release-0.1.0" / link["file"]["name"]
    path.chmod(0o644)
    path.write_bytes(b"swapped")
    with pytest.raises(FactoryError, match=f"{path} does not match the chain: the child booted sha256:"):
        ancestry.ancestry(top, "release-0.2.0")


def test_make_verify_checks_the_stage_registries_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    top = tmp_path / "reg"
    publish_stage(top, "base", "release-0.1.0", b"base disk", "k1", tmp_path)
    assert registry.main(["verify", "--registry", str(top)]) == 0
    assert "stage base release-0.1.0: every file matches SHA256SUMS and the manifest" in capsys.readouterr().out
    path = stages.stage_registry(top, "base") / "release-0.1.0" / "img-base-release-0.1.0.qcow2"
    path.chmod(0o644)
    path.write_bytes(b"changed")
    assert registry.main(["verify", "--registry", str(top)]) == 1
    assert f"{path}: expected sha256:" in capsys.readouterr().err


def test_a_published_version_keeps_the_parent_its_chain_names_whatever_the_registry_holds_since() -> None:
    """The plan of a release never flips: once published on base A, it is planned on base A."""
    index = {"base": {"versions": {"dev-abcdef123456-dirty": {"stage_key": "k-now"}}}}
    versions = ["release-0.1.0"]
    keys = {"release-0.1.0": ["k-then", "t"]}
    pinned = {"release-0.1.0": {"base": "dev-abcdef123456-dirty"}}
    found = stages.plan_parents(versions, DEFAULT_STAGES, keys, {"release-0.1.0": ["r", "r"]}, index.get, pinned)
    assert (found["release-0.1.0"][0].version, found["release-0.1.0"][0].builds) == ("dev-abcdef123456-dirty", False)
    with pytest.raises(FactoryError, match=r"release-0\.1\.0 was built on base dev-gone, which is no longer published"):
        stages.plan_parents(
            versions,
            DEFAULT_STAGES,
            keys,
            {"release-0.1.0": ["r", "r"]},
            index.get,
            {"release-0.1.0": {"base": "dev-gone"}},
        )
    assert stages.pinned_parents(
        {"versions": {"release-0.1.0": {}}},
        lambda v: {
            "chain": [
                {"stage": "upstream"},
                {"stage": "base", "version": "release-0.0.9"},
                {"stage": "functional", "version": v},
            ]
        },
    ) == {"release-0.1.0": {"base": "release-0.0.9"}}


def test_a_development_base_that_a_release_was_built_on_is_never_replaced(tmp_path: Path) -> None:
    top = tmp_path / "reg"
    base = publish_stage(top, "base", "dev-abcdef123456-dirty", b"base disk", "k1", tmp_path)
    assert registry.released_children(stages.stage_registry(top, "base"), "dev-abcdef123456-dirty") == []
    folder = tmp_path / "staging-top"
    folder.mkdir()
    (folder / "top.raw").write_bytes(b"top")
    digest = file_digest(folder / "top.raw")
    chain = [base["chain"][0], stages.stage_link("base", base, "qcow2"), {"stage": "functional"}]
    manifest = {"version": "release-0.1.0", "commit": "d" * 40, "build_time": "t", "chain": chain}
    manifest |= {
        "upstream": {"source": "s", "sha256": "p"},
        "formats": {"raw": {"file": "top.raw", "bytes": 3, "sha256": digest}},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "SHA256SUMS").write_text(format_sums({"top.raw": digest}))
    registry.publish(top, folder, "release-0.1.0")
    with pytest.raises(FactoryError, match=r"stage base dev-abcdef123456-dirty is the parent of release-0\.1\.0"):
        (tmp_path / "again").mkdir()
        publish_stage(top, "base", "dev-abcdef123456-dirty", b"rebuilt base disk", "k2", tmp_path / "again")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- import_playbook: other.yml\n", "play 1 is not a play with roles"),
        ("- hosts: all\n  roles: hardening\n", "roles is 'hardening'; accepted: a list of role names"),
        ("- hosts: all\n  roles: [1]\n", "1 is not a role"),
        ("- hosts: all\n  roles: [{when: x}]\n", "{'when': 'x'} is not a role"),
        ("{a: b}\n", "is not a playbook"),
    ],
)
def test_a_stage_playbook_whose_roles_cannot_be_followed_is_refused(text: str, message: str) -> None:
    with pytest.raises(FactoryError, match=re.escape(message)):
        stages.playbook_roles(text, "base.yml")
    assert stages.playbook_roles("- hosts: all\n  roles:\n", "base.yml") == []


def test_each_parent_stage_is_described_as_a_reviewer_needs_it() -> None:
    """The preview's lines: a published stage is never said to build (a no-op release said it did)."""
    base = stages.Stage("base", "base.yml")

    def plan(version: str, builds: bool, published: bool) -> stages.StagePlan:
        return stages.StagePlan(base, "key", "recipe", version, builds, published)

    assert [
        stages.describe_plan("release-0.3.0", plan("release-0.3.0", True, False)),
        stages.describe_plan("release-0.4.0", plan("release-0.3.0", False, False)),
        stages.describe_plan("release-0.2.0", plan("release-0.1.0", False, True)),
        stages.describe_plan("release-0.1.0", plan("release-0.1.0", True, True)),
    ] == [
        "release-0.3.0: stage base release-0.3.0 builds",
        "release-0.4.0: stage base release-0.3.0 is reused (built in this run)",
        "release-0.2.0: stage base release-0.1.0 is reused (published)",
        "release-0.1.0: stage base release-0.1.0 is published (built with this version); nothing to build",
    ]
