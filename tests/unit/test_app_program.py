"""The example application stack (`examples/app/__main__.py`) under Pulumi mocks: it launches
the version its channel points at, and refuses a revoked version before anything launches."""

from __future__ import annotations

import json
import os
import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest

from imagefactory import channels, registry
from tests.helpers import ROOT
from tests.unit.test_registry import staging

APP = ROOT / "examples" / "app" / "__main__.py"
LAUNCHED: dict[str, Any] = {}
COMMAND: dict[str, Any] = {}


def entry(version: str) -> dict[str, Any]:
    qcow2 = {"path": f"/r/{version}.qcow2", "sha256": version[-1] * 64, "bytes": 1}
    return {"version": version, "commit": "c" * 40, "formats": {"qcow2": qcow2}, "chain": []}


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        if args.typ == "pulumi:pulumi:StackReference":
            images = {v: entry(v) for v in ("release-0.1.0", "release-0.2.0")}
            return args.name, {"outputs": {"images": images}, "name": args.name}
        outputs = dict(args.inputs)
        if args.typ == "command:local:Command":
            LAUNCHED.update(args.inputs["environment"])
            COMMAND.update(args.inputs)
            outputs["stdout"] = json.dumps({"reported_version": args.inputs["environment"]["IMAGE_VERSION"]})
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, []


@pytest.fixture
def reg(tmp_path: Path) -> Path:
    where = tmp_path / "registry"
    for version in ("release-0.1.0", "release-0.2.0"):
        registry.publish(where, staging(tmp_path, version, version.encode()), version)
    return where


def run_app(config: dict[str, str]) -> dict[str, Any]:
    LAUNCHED.clear()
    COMMAND.clear()
    pulumi.runtime.set_mocks(Mocks(), project="imagefactory-app", stack="dev", preview=False)
    pulumi.runtime.set_all_config({f"imagefactory-app:{k}": v for k, v in config.items()})
    cwd = Path.cwd()
    os.chdir(APP.parent)
    try:
        return runpy.run_path(str(APP), run_name="__main__")
    finally:
        os.chdir(cwd)


def test_the_app_launches_the_version_its_channel_points_at(reg: Path) -> None:
    channels.promote(reg, "stable", "release-0.1.0")
    channels.promote(reg, "stable", "release-0.2.0")

    @pulumi.runtime.test
    def run():  # type: ignore[no-untyped-def]  # a Pulumi test returns an Output
        program = run_app({"imageChannel": "stable", "imageRegistry": str(reg)})

        def check(launch: dict) -> None:
            assert program["version"] == "release-0.2.0"
            assert launch["reported_version"] == "release-0.2.0"
            assert LAUNCHED["IMAGE_PATH"] == "/r/release-0.2.0.qcow2"

        return program["app"].launch.apply(check)

    run()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"imageChannel": "stable"}, r"channel stable points at release-0\.2\.0 is revoked since .*: CVE-1"),
        ({"imageVersion": "release-0.2.0"}, r"release-0\.2\.0 is revoked since .*: CVE-1; .*keep running"),
        ({"imageChannel": "canary"}, r"channel canary does not exist; channels: stable"),
        ({"imageChannel": "stable", "imageVersion": "release-0.1.0"}, r"set exactly one of imageVersion"),
        ({}, r"set exactly one of imageVersion .* and imageChannel"),
        (
            {"imageVersion": "release-0.1.0", "upgradeStrategy": "rolling"},
            r"upgradeStrategy is 'rolling'; accepted: replace, in-place",
        ),
    ],
)
def test_the_app_refuses_a_revoked_version_or_an_unclear_choice_before_launching(
    reg: Path, config: dict[str, str], message: str
) -> None:
    channels.promote(reg, "stable", "release-0.2.0")
    channels.revoke(reg, "release-0.2.0", "CVE-1")
    with pytest.raises(pulumi.RunError, match=message):
        run_app({**config, "imageRegistry": str(reg)})
    assert not LAUNCHED, "nothing is launched"


def test_the_app_never_launches_unchecked_when_its_registry_is_not_there(reg: Path, tmp_path: Path) -> None:
    """A wrong imageRegistry would hide every revocation: the app stops instead of launching."""
    channels.revoke(reg, "release-0.2.0", "CVE-1")
    with pytest.raises(pulumi.RunError, match=r"imageRegistry .*/elsewhere holds no image registry .*revocations"):
        run_app({"imageVersion": "release-0.2.0", "imageRegistry": str(tmp_path / "elsewhere")})
    assert not LAUNCHED, "nothing is launched"


@pytest.mark.parametrize("strategy", ["replace", "in-place"])
def test_the_upgrade_strategy_decides_whether_a_new_version_replaces_or_updates_the_vm(
    reg: Path, strategy: str
) -> None:
    @pulumi.runtime.test
    def run():  # type: ignore[no-untyped-def]  # a Pulumi test returns an Output
        program = run_app({"imageVersion": "release-0.2.0", "imageRegistry": str(reg), "upgradeStrategy": strategy})

        def check(_: dict) -> None:
            if strategy == "replace":
                # The version is a trigger: a new one replaces the VM. Any other changed setting
                # keeps the running VM (never a second one beside it).
                assert COMMAND["triggers"] == ["release-0.2.0", "0" * 64]
                assert COMMAND["update"] == "exec python3 -P -m imagefactory.launch_local keep"
                assert "UPGRADE_STRATEGY" not in LAUNCHED
            else:
                # No trigger: a new version changes the inputs, so the VM is updated by the upgrade step.
                assert not COMMAND.get("triggers")
                assert COMMAND["update"] == "exec python3 -P -m imagefactory.launch_local upgrade"
                assert LAUNCHED["UPGRADE_STRATEGY"] == "in-place"
            assert COMMAND["delete"] == "exec python3 -P -m imagefactory.launch_local delete"

        return program["app"].launch.apply(check)

    run()


SHARED = "s3://images/team?endpoint=http://127.0.0.1:9&pathStyle=true"


def test_an_app_on_another_machine_asks_the_shared_registry_and_fetches_from_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """imageRegistry s3://…: the store decides whether the version may launch (it refuses a revoked
    one, with its reason), and the launch step is told where to fetch the QCOW2 from."""
    from imagefactory import s3registry
    from imagefactory.errors import FactoryError

    asked = []

    def lookup(store: s3registry.Store, version: str, fmt: str | None = None, **_: object) -> dict:
        asked.append((store.url, store.endpoint, version, fmt))
        if version == "release-0.2.0":
            raise FactoryError("release-0.2.0 is revoked since t: CVE-1")
        return {}

    monkeypatch.setattr(s3registry, "lookup", lookup)
    with pytest.raises(pulumi.RunError, match=r"release-0\.2\.0 is revoked since t: CVE-1; .*keep running"):
        run_app({"imageVersion": "release-0.2.0", "imageRegistry": SHARED})
    assert not LAUNCHED
    with pytest.raises(pulumi.RunError, match=r"imageChannel needs the image stack's registry folder"):
        run_app({"imageChannel": "stable", "imageRegistry": SHARED})

    @pulumi.runtime.test
    def run():  # type: ignore[no-untyped-def]  # a Pulumi test returns an Output
        program = run_app({"imageVersion": "release-0.1.0", "imageRegistry": SHARED})

        def check(launch: dict) -> None:
            assert LAUNCHED["SHARED_REGISTRY"] == SHARED and LAUNCHED["IMAGE_PATH"] == "/r/release-0.1.0.qcow2"

        return program["app"].launch.apply(check)

    run()
    assert asked[-1] == ("s3://images/team", "http://127.0.0.1:9", "release-0.1.0", "qcow2")


def test_a_downgrade_in_place_is_refused_at_preview_naming_the_machine(
    reg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagefactory import launch_local

    monkeypatch.setattr(launch_local, "running", lambda state_dir, name: [f"{name} release-0.2.0 (pid 7)"])
    config = {"imageVersion": "release-0.1.0", "imageRegistry": str(reg), "upgradeStrategy": "in-place"}
    with pytest.raises(
        pulumi.RunError,
        match=r"release-0\.1\.0 is older than release-0\.2\.0.*replace the machine.*\(app release-0\.2\.0 \(pid 7\)\)",
    ):
        run_app(config)
    assert not LAUNCHED
