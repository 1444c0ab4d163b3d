"""Bad input through the real program: each bad config value stops `pulumi preview` with a line
that names the key, never a traceback, and leaves the registry untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import Project, new_project

AWS = {"imagefactory:target": "aws", "imagefactory:aws": {"bucket": "images", "region": "eu-west-1"}}
AZURE = {
    "imagefactory:target": "azure",
    "imagefactory:buildWorkingTree": False,
    "imagefactory:azure": {"resourceGroup": "rg", "storageAccount": "st"},
}


def aws(**settings: Any) -> dict[str, Any]:
    return {**AWS, "imagefactory:aws": {**AWS["imagefactory:aws"], **settings}}


def azure(**settings: Any) -> dict[str, Any]:
    return {**AZURE, "imagefactory:azure": {**AZURE["imagefactory:azure"], **settings}}


# The engine checks the types Pulumi.yaml declares before the program starts, naming the key.
ENGINE = "configuration key '{}' must be of type '{}'"
# (config to add, text the error must contain: the key, and what is wrong)
CASES: list[tuple[dict[str, Any], str]] = [
    ({"imagefactory:target": "gcp"}, "imagefactory:target is 'gcp'"),
    ({"imagefactory:target": ""}, "imagefactory:target is ''"),
    ({"imagefactory:formats": "qcow2"}, ENGINE.format("formats", "array<string>")),
    ({"imagefactory:formats": []}, "imagefactory:formats must be a non-empty list"),
    ({"imagefactory:formats": ["qcow2", "iso"]}, "imagefactory:formats is 'iso'"),
    ({"imagefactory:formats": [1]}, ENGINE.format("formats", "array<string>")),
    ({"imagefactory:format": ["raw"]}, "did you mean imagefactory:formats?"),
    ({"imagefactory:diskSize": 4096}, "did you mean imagefactory:diskSizeMiB?"),
    ({"imagefactory:upstreamFallbak": "none"}, "did you mean imagefactory:upstreamFallback?"),
    ({"imagefactory:diskSizeMiB": 100}, "imagefactory:diskSizeMiB is 100"),
    ({"imagefactory:diskSizeMiB": "big"}, ENGINE.format("diskSizeMiB", "integer")),
    ({"imagefactory:diskSizeMiB": 99999999}, "imagefactory:diskSizeMiB is 99999999"),
    ({"imagefactory:accelerator": "hvf"}, "imagefactory:accelerator is 'hvf'"),
    ({"imagefactory:upstreamFallback": "retry"}, "imagefactory:upstreamFallback is 'retry'"),
    ({"imagefactory:upstreamChecksum": "md5:abc"}, "imagefactory:upstreamChecksum is 'md5:abc'"),
    ({"imagefactory:upstreamChecksum": "sha256:xyz"}, "imagefactory:upstreamChecksum is 'sha256:xyz'"),
    ({"imagefactory:upstreamUrl": ""}, "imagefactory:upstreamUrl is empty"),
    ({"imagefactory:releases": "release-0.1.0"}, ENGINE.format("releases", "array<string>")),
    ({"imagefactory:releases": ["release-1.0"]}, "imagefactory:releases: version 'release-1.0'"),
    ({"imagefactory:releases": ["release-0.1.0", "release-0.1.0"]}, "imagefactory:releases lists a tag twice"),
    ({"imagefactory:releases": ["v1.0.0"]}, "imagefactory:releases: version 'v1.0.0'"),
    ({"imagefactory:tagPrefix": "rel ease"}, "imagefactory:tagPrefix is 'rel ease'"),
    ({"imagefactory:imageName": "Debian 12"}, "imagefactory:imageName is 'Debian 12'"),
    ({"imagefactory:imageName": ""}, "imagefactory:imageName is ''"),
    ({"imagefactory:registryDir": ""}, "imagefactory:registryDir is empty"),
    ({"imagefactory:registry": "ftp://host/images"}, "imagefactory:registry is 'ftp://host/images'; accepted: file://"),
    ({"imagefactory:registry": "s3://images?objectLock=strict"}, "objectLock 'strict' is not none, governance or"),
    ({"imagefactory:registry": "file://packer"}, "imagefactory:registry is 'packer', inside the project"),
    ({"imagefactory:registryDir": "packer/out"}, "imagefactory:registryDir is 'packer/out', inside the project"),
    ({"imagefactory:workDir": "."}, "imagefactory:workDir is '.', inside the project"),
    ({"imagefactory:workDir": "ansible"}, "imagefactory:workDir is 'ansible', inside the project"),
    ({"imagefactory:buildTimeoutMinutes": 1}, "imagefactory:buildTimeoutMinutes is 1"),
    ({"imagefactory:buildTimeoutMinutes": "long"}, ENGINE.format("buildTimeoutMinutes", "integer")),
    ({"imagefactory:buildWorkingTree": "maybe"}, ENGINE.format("buildWorkingTree", "boolean")),
    (aws(copyRegions="us-east-1"), "imagefactory:aws.copyRegions must be a list"),
    (aws(mode="fast"), "imagefactory:aws.mode is 'fast'"),
    (aws(region="mars-1"), "imagefactory:aws region 'mars-1'"),
    (aws(deprecateAfterDays=0), "imagefactory:aws.deprecateAfterDays is 0"),
    (aws(bucket=""), "imagefactory:aws.bucket is empty"),
    (aws(sourceAmiOwner="someone"), "imagefactory:aws.sourceAmiOwner is 'someone'"),
    (aws(bukcet="images"), "did you mean imagefactory:aws.bucket?"),
    ({**AWS, "imagefactory:formats": ["qcow2"]}, "imagefactory:formats has no raw"),
    ({**AWS, "imagefactory:aws": "eu-west-1"}, ENGINE.format("aws", "object")),
    (azure(targetRegions="westeurope"), "imagefactory:azure.targetRegions is 'westeurope'"),
    (azure(targetRegions=["westeurope"]), "imagefactory:azure.targetRegions: 'westeurope' is not an object"),
    (azure(targetRegions=[{"name": "westeurope", "replicas": 0}]), "replicas of westeurope is 0"),
    (azure(marketplace="Debian"), "imagefactory:azure.marketplace is 'Debian'"),
    (azure(endOfLifeDays="soon"), "imagefactory:azure.endOfLifeDays is 'soon'"),
    (azure(resourceGroup=""), "imagefactory:azure.resourceGroup is empty"),
    ({**AZURE, "imagefactory:formats": ["raw"]}, "imagefactory:formats has no vhd"),
    (azure(mode="native", marketplace={"version": "latest"}), "imagefactory:azure.marketplace.version must pin"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return new_project(tmp_path_factory.mktemp("bad-config") / "project")


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize(("added", "expected"), CASES, ids=[expected[:48] for _, expected in CASES])
def test_a_bad_value_stops_the_preview_naming_the_key(project: Project, added: dict, expected: str) -> None:
    stack_file = project.path / "stacks" / f"Pulumi.{project.stack}.yaml"
    original = stack_file.read_text()
    document = yaml.safe_load(original)
    document["config"].update(added)
    stack_file.write_text(yaml.safe_dump(document))
    try:
        result = project.pulumi("preview", check=False)
    finally:
        stack_file.write_text(original)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert expected in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert not Path(project.path, ".state", "registry").exists(), "a refused preview publishes nothing"
