"""The toolchain works offline at its pinned versions, and the real engine previews the stack."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.integration.conftest import new_project


def versions_env() -> dict[str, str]:
    values = {}
    for line in (ROOT / "tools" / "versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def test_the_pinned_tools_answer_with_their_versions() -> None:
    pinned = versions_env()
    assert run("pulumi", "version").strip() == f"v{pinned['PULUMI_VERSION']}"
    assert f"Packer v{pinned['PACKER_VERSION']}" in run("packer", "version")
    plugins = run("packer", "plugins", "installed")
    assert f"packer-plugin-qemu_v{pinned['PACKER_QEMU_VERSION']}_" in plugins
    assert f"packer-plugin-ansible_v{pinned['PACKER_ANSIBLE_VERSION']}_" in plugins
    assert "ansible-playbook [core " in run("ansible-playbook", "--version")
    assert f"command  resource  {pinned['PULUMI_COMMAND_VERSION']}" in run("pulumi", "plugin", "ls")


def test_the_real_engine_previews_the_local_stack_offline(tmp_path: Path) -> None:
    project = new_project(tmp_path / "project")
    assert project.env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    preview = json.loads(project.pulumi("preview", "--json").stdout)
    creates = {step["urn"].split("::")[-1] for step in preview["steps"] if step["op"] == "create"}
    version = next(n for n in creates if n.startswith("dev-") and n.endswith("-packer"))
    assert {
        "upstream-resolve",
        version,
        version.replace("-packer", "-seal-check"),
        version.replace("-packer", "-convert"),
        version.replace("-packer", "-publish"),
    } <= creates


def test_a_bad_config_value_fails_the_preview_with_a_clear_message(tmp_path: Path) -> None:
    project = new_project(tmp_path / "project")
    project.pulumi("config", "set", "--path", "imagefactory:formats[0]", "qcow2")
    project.pulumi("config", "set", "--path", "imagefactory:formats[1]", "iso")
    result = project.pulumi("preview", check=False)
    assert result.returncode != 0
    assert "imagefactory:formats is 'iso'; accepted values: raw, qcow2, vhd, vmdk, vhdx, ova" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("version", "accepted"),
    [
        ("release-1.2.3", True),
        ("release-1.0.0-rc.1", True),
        ("v2.0.0", True),
        ("images.2026-1.0.0-beta.2", True),
        ("dev-0123abc-dirty", True),
        ("release-1.0.0-", False),
        ("release/1.0.0", False),
        ("release-1.0", False),
    ],
)
def test_packer_accepts_every_version_the_stack_can_plan(version: str, accepted: bool) -> None:
    """Custom tag prefixes and pre-release tags pass Packer's own variable validation."""
    result = subprocess.run(
        [str(ROOT / "tools" / "packer-validate.sh"), "-var", f"image_version={version}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode == 0) == accepted, result.stdout + result.stderr
    if not accepted:
        assert "image_version must be <tag prefix>X.Y.Z" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variables", "error"),
    [
        ({"azure_source_image_definition": "debian-12-base", "azure_source_gallery_version": "0.1.0"}, None),
        ({"azure_source_gallery_version": "0.1.0"}, "A shared_image_gallery.image_name must be specified"),
        ({"azure_source_gallery_version": "0.1"}, "azure_source_gallery_version must be X.Y.Z, or empty"),
    ],
)
def test_packer_builds_an_azure_child_from_its_parents_gallery_version(variables: dict, error: str | None) -> None:
    """The azure-arm source takes a parent stage's gallery version instead of the marketplace image
    (Packer's own check refuses both at once, and a gallery source without its definition)."""
    args = ["-only=azure-arm.azure", "-var", "azure_subscription_id=sub-1", "-var", "azure_resource_group=rg"]
    for name, value in variables.items():
        args += ["-var", f"{name}={value}"]
    result = subprocess.run(
        [str(ROOT / "tools" / "packer-validate.sh"), *args], capture_output=True, text=True, check=False
    )
    output = result.stdout + result.stderr
    assert (result.returncode == 0) == (error is None), output
    if error:
        assert error in output
