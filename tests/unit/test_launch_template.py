"""Launch policies for each target, checked with Pulumi mocks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.launch_template import LaunchTemplate, require_version
from imagefactory import launch_local

RESOURCES: dict[str, dict[str, Any]] = {}

IMAGES = {
    "release-0.1.0": {
        "version": "release-0.1.0",
        "formats": {"qcow2": {"path": "/reg/release-0.1.0/d.qcow2", "sha256": "1" * 64, "bytes": 1}},
        "aws": {"eu-west-1": "ami-0000000000000000a", "us-east-1": "ami-0000000000000000b"},
        "azure": {
            "gallery_image_version_id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/"
            "galleries/gal/images/debian-12/versions/0.1.0"
        },
    },
    "release-0.2.0": {
        "version": "release-0.2.0",
        "formats": {"qcow2": {"path": "/reg/release-0.2.0/d.qcow2", "sha256": "2" * 64, "bytes": 1}},
        "aws": {"eu-west-1": "ami-0000000000000000c"},
        "azure": {"gallery_image_version_id": "/subscriptions/s/.../versions/0.2.0"},
    },
}


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        RESOURCES[args.name] = {"type": args.typ, "inputs": args.inputs}
        outputs = dict(args.inputs)
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            outputs["latestVersion"] = 3
        if args.typ == "command:local:Command":
            outputs["stdout"] = '{"reported_version": "release-0.1.0"}'
        outputs.setdefault("name", args.name)
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


@pytest.fixture(autouse=True)
def mocked() -> None:
    RESOURCES.clear()
    pulumi.runtime.set_mocks(Mocks(), preview=False)


def launch(target: str, version: str, **extra: Any) -> LaunchTemplate:
    return LaunchTemplate("app", {"target": target, "version": version, "image": IMAGES[version], **extra})


@pulumi.runtime.test
def test_the_launch_template_uses_the_ami_published_for_the_requested_version():
    app = launch("aws", "release-0.1.0", region="eu-west-1", subnet_ids=["subnet-1"])

    def check(_: Any) -> None:
        template = RESOURCES["app-lt"]["inputs"]
        assert template["imageId"] == "ami-0000000000000000a", "app-lt launches release-0.1.0's eu-west-1 AMI"
        assert {"ImageVersion": "release-0.1.0"}.items() <= template["tags"].items()

    return app.launch.apply(check)


@pulumi.runtime.test
def test_instance_refresh_rolls_the_group_when_the_image_changes():
    app = launch("aws", "release-0.2.0", region="eu-west-1", subnet_ids=["subnet-1"])

    def check(_: Any) -> None:
        group = RESOURCES["app-asg"]["inputs"]
        refresh = group["instanceRefresh"]
        assert refresh["strategy"] == "Rolling", "app-asg replaces instances with a rolling instance refresh"
        assert refresh["preferences"]["minHealthyPercentage"] == 100, "new instances are up before old ones go"
        assert group["launchTemplate"]["version"] == "3", "app-asg follows the template's latest version"

    return app.launch.apply(check)


@pulumi.runtime.test
def test_the_scale_set_runs_the_gallery_version_of_the_requested_release():
    app = launch("azure", "release-0.1.0", resource_group_name="rg", subnet_ids=["/subnets/s1"])

    def check(_: Any) -> None:
        vmss = RESOURCES["app-vmss"]["inputs"]
        image_id = vmss["virtualMachineProfile"]["storageProfile"]["imageReference"]["id"]
        assert image_id.endswith("/versions/0.1.0"), "app-vmss runs release-0.1.0's gallery version"
        assert vmss["upgradePolicy"]["mode"] == "Rolling"
        assert vmss["virtualMachineProfile"]["osProfile"]["linuxConfiguration"]["disablePasswordAuthentication"]

    return app.launch.apply(check)


@pulumi.runtime.test
def test_a_local_vm_is_replaced_when_the_version_changes():
    app = launch("local", "release-0.1.0")

    def check(_: Any) -> None:
        vm = RESOURCES["app-vm"]["inputs"]
        assert vm["triggers"][0] == "release-0.1.0", "app-vm's identity is the image version"
        assert vm["environment"]["IMAGE_PATH"] == "/reg/release-0.1.0/d.qcow2"
        assert "launch_local delete" in vm["delete"]

    return app.launch.apply(check)


def test_an_unknown_version_lists_the_published_ones() -> None:
    with pytest.raises(ValueError, match=r"it has: release-0\.1\.0, release-0\.2\.0"):
        require_version(IMAGES, "release-9.9.9")


def test_an_unknown_target_is_refused() -> None:
    with pytest.raises(ValueError, match="target 'gcp' is not one of local, aws, azure"):
        LaunchTemplate("bad", {"target": "gcp", "version": "release-0.1.0", "image": IMAGES["release-0.1.0"]})


@pytest.mark.parametrize("target", ["aws", "azure"])
def test_in_place_is_refused_on_a_cloud_fleet_naming_the_way_there(target: str) -> None:
    with pytest.raises(ValueError, match=f"in-place is for the local target; on {target} .* SSM or the run-command"):
        launch(target, "release-0.1.0", upgrade="in-place")
    with pytest.raises(ValueError, match="upgrade strategy 'rolling' is not one of: replace, in-place"):
        launch("local", "release-0.1.0", upgrade="rolling")


def test_the_running_vms_of_an_app_are_listed_by_version(tmp_path: Path) -> None:
    """What a refused preview lists: VMs whose QEMU runs from the state folder (a stale pid file or
    another process with that pid is not one)."""
    live = tmp_path / "app-release-0.2.0-a1b2c3"
    upgraded = tmp_path / "app-release-0.1.0-f0f0f0"  # launched as 0.1.0, upgraded in place to 0.3.0
    stale = tmp_path / "app-release-0.1.0-d4e5f6"
    other = tmp_path / "web-release-0.2.0-000000"
    for folder in (live, upgraded, stale, other):
        folder.mkdir()
    (upgraded / "version").write_text("release-0.3.0\n")

    def fake_qemu(folder: Path) -> subprocess.Popen:
        """A process whose command line looks like our QEMU of `folder` (qemu-system-… and the folder)."""
        return subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)", "qemu-system-x86_64", str(folder)]
        )

    fakes = [fake_qemu(live), fake_qemu(upgraded)]
    try:
        for fake, folder in zip(fakes, (live, upgraded), strict=True):
            # Until the child has exec'd, its command line is still pytest's (a busy machine showed it).
            cmdline = Path(f"/proc/{fake.pid}/cmdline")
            deadline = time.monotonic() + 30
            while str(folder).encode() not in cmdline.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.01)
        (live / "qemu.pid").write_text(f"{fakes[0].pid}\n")
        (upgraded / "qemu.pid").write_text(f"{fakes[1].pid}\n")
        (stale / "qemu.pid").write_text(f"{os.getpid()}\n")  # alive, but not a QEMU of that folder
        (other / "qemu.pid").write_text(f"{fakes[0].pid}\n")
        assert launch_local.running(tmp_path, "app") == [
            f"app release-0.3.0 (pid {fakes[1].pid})",
            f"app release-0.2.0 (pid {fakes[0].pid})",
        ]
    finally:
        for fake in fakes:
            fake.kill()
            fake.wait()
    assert launch_local.running(tmp_path, "app") == []


def test_a_launch_whose_setting_changed_keeps_its_running_vm(capsys: pytest.CaptureFixture[str]) -> None:
    """The update of a replace-strategy launch: the record of the running VM is kept as it was."""
    import json

    from imagefactory import launch_local
    from imagefactory.errors import FactoryError

    record = {"version": "release-0.1.0", "pid": 42, "dir": "/x/app-release-0.1.0-abc", "ssh_port": 2222}
    assert launch_local.keep("launch: booting\n" + json.dumps(record) + "\n") == record
    assert "release-0.1.0 keeps running" in capsys.readouterr().err
    with pytest.raises(FactoryError, match=r"no earlier launch to keep"):
        launch_local.keep("")
