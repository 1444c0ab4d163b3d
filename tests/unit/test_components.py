"""Component policies, checked with Pulumi mocks (no engine, no builds).

Each test reads like the rule it enforces; assertion messages name the resource.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks as pulumi_mocks

from imagefactory.settings import validate
from imagefactory.stages import Stage, StagePlan, VersionChain
from imagefactory.versions import Version
from tests.helpers import fake_step_result

REGISTERED: dict[str, dict[str, Any]] = {}
_original_register = pulumi_mocks.MockMonitor.RegisterResource


def _capturing_register(self, request):  # type: ignore[no-untyped-def]  # a test helper; its callers pass whatever the mocked API takes
    REGISTERED[request.name] = {
        "type": request.type,
        "protect": request.protect,
        "retain_on_delete": request.retainOnDelete,
        "replace_on_changes": list(request.replaceOnChanges),
        "dependencies": list(request.dependencies)
        + [urn for deps in request.propertyDependencies.values() for urn in deps.urns],
    }
    return _original_register(self, request)


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        outputs = dict(args.inputs)
        if args.typ == "command:local:Command":
            outputs["stdout"] = json.dumps(fake_step_result(args.name, args.inputs))
            outputs["stderr"] = ""
        REGISTERED.setdefault(args.name, {}).update({"inputs": args.inputs})
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


@pytest.fixture(autouse=True)
def mocked(monkeypatch: pytest.MonkeyPatch) -> None:
    REGISTERED.clear()
    monkeypatch.setattr(pulumi_mocks.MockMonitor, "RegisterResource", _capturing_register)
    pulumi.runtime.set_mocks(Mocks(), preview=False)


RELEASE = Version("release-0.1.0", "a" * 40, True, 1735689600)
DEV = Version("dev-0123456789ab", "b" * 40, False, 1735689600)


def build_pipeline(version: Version) -> dict[str, pulumi.Output]:
    """The program's own wiring (components.release.Pipeline) for one version of a local stack."""
    from components.release import Pipeline

    settings = validate(
        {
            "upstreamUrl": "/nope.qcow2",
            "upstreamChecksum": "sha256:" + "0" * 64,
            "formats": ["raw", "qcow2"],
            "workDir": "/srv/factory",
            "registryDir": "/registry",
        }
    )
    pipeline = Pipeline(settings, working_tree_digest="d" * 64, chains={version.name: chain_building(version)})
    return {"entry": pipeline.release([version], pipeline.upstream())[version.name]}


BASE = Stage("base", "base.yml")


def chain_building(version: Version, builder: str | None = None, published: bool = False) -> VersionChain:
    """A two-stage chain whose base this version builds (or, given `builder`, reuses)."""
    owner = builder or version.name
    plan = StagePlan(BASE, "sha256:key-base", "sha256:recipe-base", owner, owner == version.name, published)
    return VersionChain(["sha256:recipe-base", "sha256:recipe-top"], ["sha256:key-base", "sha256:key-top"], [plan])


@pulumi.runtime.test
def test_a_release_build_never_runs_from_the_working_tree():
    outputs = build_pipeline(RELEASE)

    def check(values: list[Any]) -> None:
        source = REGISTERED["release-0.1.0-source"]["inputs"]
        assert source["environment"]["IMAGE_COMMIT"] == RELEASE.commit, "release-0.1.0-source exports the tag's commit"
        exported = source["environment"]["DEST"]
        packer = REGISTERED["release-0.1.0-packer"]["inputs"]
        assert packer["environment"]["SOURCE_DIR"] == exported, "release-0.1.0-packer builds from the exported tag tree"
        for step in ("packer", "seal-check", "convert"):
            inputs = REGISTERED[f"release-0.1.0-{step}"]["inputs"]
            assert inputs["environment"]["PYTHONPATH"] == exported, (
                f"release-0.1.0-{step} runs the tag's imagefactory code, not the checkout's"
            )

    return outputs["entry"].apply(check)


@pulumi.runtime.test
def test_a_release_rebuilds_only_when_version_commit_or_upstream_change():
    outputs = build_pipeline(RELEASE)

    def check(_: Any) -> None:
        packer = REGISTERED["release-0.1.0-packer"]
        assert packer["inputs"]["triggers"] == [RELEASE.name, RELEASE.commit, "p" * 64, "", 3072], (
            "release-0.1.0-packer is triggered by (version, tag commit, parent digest), never by today's checkout"
        )
        base = REGISTERED["base-release-0.1.0-packer"]
        assert base["inputs"]["triggers"] == [RELEASE.name, RELEASE.commit, "u" * 64, "", 3072], (
            "base-release-0.1.0-packer is triggered by (version, tag commit, upstream digest)"
        )
        assert "triggers[*]" in packer["replace_on_changes"]

    return outputs["entry"].apply(check)


@pulumi.runtime.test
def test_a_dev_build_rebuilds_when_packer_or_ansible_change():
    outputs = build_pipeline(DEV)

    def check(_: Any) -> None:
        packer = REGISTERED["dev-0123456789ab-packer"]["inputs"]
        assert "d" * 64 in packer["triggers"], "dev-0123456789ab-packer is triggered by the packer/ansible digest"
        assert packer["environment"]["SOURCE_DIR"] == ".", "a dev build runs from the working tree"
        assert "dev-0123456789ab-source" not in REGISTERED, "a dev build needs no tag export"

    return outputs["entry"].apply(check)


@pulumi.runtime.test
def test_released_versions_are_protected_and_retained_dev_versions_are_not():
    release = build_pipeline(RELEASE)
    dev = build_pipeline(DEV)

    def check(_: Any) -> None:
        rel = REGISTERED["release-0.1.0-publish"]
        assert rel["protect"] and rel["retain_on_delete"], "release-0.1.0-publish is protected and retained"
        assert not rel["inputs"].get("delete"), "deleting release-0.1.0-publish never retires the release"
        dev_publish = REGISTERED["dev-0123456789ab-publish"]
        assert not dev_publish["protect"] and not dev_publish["retain_on_delete"]
        assert "retire" in dev_publish["inputs"]["delete"], "a dev version leaves the registry with its resource"

    return pulumi.Output.all(release["entry"], dev["entry"]).apply(check)


@pulumi.runtime.test
def test_values_reach_commands_through_the_environment_never_the_shell_string():
    outputs = build_pipeline(RELEASE)

    def check(_: Any) -> None:
        commands = {n: r for n, r in REGISTERED.items() if r.get("type") == "command:local:Command"}
        assert len(commands) == 11, sorted(commands)  # upstream, tag export, 4 base steps, verify, 4 top steps
        for name, resource in commands.items():
            words = shlex.split(resource["inputs"]["create"])
            for value in resource["inputs"]["environment"].values():
                if isinstance(value, str) and len(value) > 1:  # not "1" or "." (PYTHONUNBUFFERED, PYTHONPATH)
                    assert not any(value in word for word in words if not word.startswith("-")), (
                        f"{name} formats {value!r} into its shell string"
                    )

    return outputs["entry"].apply(check)


@pulumi.runtime.test
def test_formats_are_converted_only_after_the_seal_check_passed():
    outputs = build_pipeline(RELEASE)

    def check(_: Any) -> None:
        convert = REGISTERED["release-0.1.0-convert"]["inputs"]
        assert convert["environment"]["RAW_SHA256"] == "r" * 64, "release-0.1.0-convert converts the checked RAW"
        depends = REGISTERED["release-0.1.0-convert"]["dependencies"]
        assert any(urn.endswith("::release-0.1.0-seal-check") for urn in depends), (
            f"release-0.1.0-convert must wait for the seal check (so a failed check stops it); depends on {depends}"
        )

    return outputs["entry"].apply(check)


@pulumi.runtime.test
def test_no_command_input_names_a_host_fact():
    """A moved checkout, another cache, accelerator or timeout must never change a resource."""
    outputs = build_pipeline(RELEASE)
    root = str(Path(__file__).resolve().parents[2])

    def check(_: Any) -> None:
        for name, resource in REGISTERED.items():
            if resource.get("type") != "command:local:Command":
                continue
            inputs = resource["inputs"]
            assert "dir" not in inputs, f"{name} runs in the project root, not a named folder"
            for key, value in inputs["environment"].items():
                assert key not in ("ACCELERATOR", "TIMEOUT_MINUTES", "CACHE_DIR", "PYTHON"), f"{name} takes {key}"
                assert root not in str(value) and not str(value).startswith(str(Path.home())), (
                    f"{name}: {key}={value!r} names a path of this machine"
                )

    return outputs["entry"].apply(check)


RELEASE2 = Version("release-0.2.0", "c" * 40, True, 1735689700)


def build_versions(chains: dict[str, VersionChain], planned: list[Version]) -> pulumi.Output:
    from components.release import Pipeline

    settings = validate({"upstreamUrl": "/nope.qcow2", "formats": ["raw", "qcow2"], "registryDir": "/registry"})
    pipeline = Pipeline(settings, working_tree_digest="d" * 64, chains=chains)
    return pulumi.Output.all(*pipeline.release(planned, pipeline.upstream()).values())


@pulumi.runtime.test
def test_each_stage_runs_its_own_playbook_and_the_base_is_published_in_its_own_registry():
    outputs = build_pipeline(DEV)

    def check(_: Any) -> None:
        base = REGISTERED["base-dev-0123456789ab-packer"]["inputs"]["environment"]
        top = REGISTERED["dev-0123456789ab-packer"]["inputs"]["environment"]
        assert (base["PLAYBOOK"], base["IMAGE_STAGE"]) == ("base.yml", "base")
        assert (top["PLAYBOOK"], top["IMAGE_STAGE"]) == ("site.yml", "functional")
        assert base["UPSTREAM_SHA256"] == "u" * 64, "the base boots the verified upstream"
        assert top["UPSTREAM_SHA256"] == "p" * 64, "the top boots the base, as re-verified by its parent step"
        assert base["WORK_DIR"] == "/srv/factory/stages/base"
        convert = REGISTERED["base-dev-0123456789ab-convert"]["inputs"]["environment"]
        assert (convert["FORMATS"], convert["STAGE_KEY"]) == ("qcow2", "sha256:key-base")
        publish = REGISTERED["base-dev-0123456789ab-publish"]
        assert publish["inputs"]["environment"]["REGISTRY"] == "/registry/stages/base"
        assert not publish["inputs"].get("delete"), "a parent stage is never retired with its resources"
        verify = REGISTERED["dev-0123456789ab-parent-verify"]
        assert verify["inputs"]["environment"]["PARENT_VERSION"] == "dev-0123456789ab"
        assert "d" * 64 in verify["inputs"]["triggers"], "the parent is checked again whenever the top rebuilds"
        assert any(urn.endswith("::base-dev-0123456789ab-publish") for urn in verify["dependencies"]), verify[
            "dependencies"
        ]

    return outputs["entry"].apply(check)


@pulumi.runtime.test
def test_a_version_whose_base_recipe_is_unchanged_boots_the_base_of_the_older_version():
    outputs = build_versions(
        {RELEASE.name: chain_building(RELEASE), RELEASE2.name: chain_building(RELEASE2, builder=RELEASE.name)},
        [RELEASE, RELEASE2],
    )

    def check(_: Any) -> None:
        assert not [name for name in REGISTERED if name.startswith("base-release-0.2.0")], sorted(REGISTERED)
        verify = REGISTERED["release-0.2.0-parent-verify"]
        assert verify["inputs"]["environment"]["PARENT_VERSION"] == "release-0.1.0"
        assert any(urn.endswith("::base-release-0.1.0-publish") for urn in verify["dependencies"]), (
            "release-0.2.0 waits for the base that release-0.1.0 publishes"
        )

    return outputs.apply(check)


@pulumi.runtime.test
def test_a_base_published_before_is_only_re_verified():
    outputs = build_versions({DEV.name: chain_building(DEV, builder=RELEASE.name, published=True)}, [DEV])

    def check(_: Any) -> None:
        assert not [name for name in REGISTERED if name.startswith("base-")], sorted(REGISTERED)
        verify = REGISTERED["dev-0123456789ab-parent-verify"]
        assert verify["inputs"]["environment"]["PARENT_VERSION"] == "release-0.1.0"

    return outputs.apply(check)
