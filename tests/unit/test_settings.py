"""Stack settings: a bad value names the key and the values it accepts."""

from pathlib import Path

import pytest
import yaml

from imagefactory.errors import FactoryError
from imagefactory.settings import KEYS, validate

GOOD = {"upstreamUrl": "https://example.invalid/img.qcow2", "upstreamChecksum": "sha256:" + "a" * 64}


def test_defaults_are_the_safe_local_stack() -> None:
    settings = validate(dict(GOOD))
    assert settings.target == "local"
    assert settings.formats == ("raw", "qcow2", "vhd", "vmdk", "ova")
    assert settings.upstream_fallback == "stage0"
    assert settings.disk_size_mib == 3072
    assert (settings.registry_dir, settings.work_dir) == (".state/registry", ".state/work")


RELEASES_ONLY = {"buildWorkingTree": False}  # an Azure gallery takes release tags only


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("target", "gcp", "imagefactory:target is 'gcp'; accepted values: local, aws, azure"),
        ("formats", ["qcow2", "iso"], "imagefactory:formats is 'iso'; accepted values: raw, qcow2"),
        ("formats", [], "imagefactory:formats must be a non-empty list"),
        ("upstreamFallback", "retry", "imagefactory:upstreamFallback is 'retry'"),
        ("accelerator", "hvf", "imagefactory:accelerator is 'hvf'; accepted values: auto, kvm, tcg"),
        ("diskSizeMiB", 100, "imagefactory:diskSizeMiB is 100; accepted: a whole number from 1024"),
        ("upstreamChecksum", "md5:abc", "imagefactory:upstreamChecksum is 'md5:abc'; accepted: sha256:"),
        ("releases", ["release-1.0"], "imagefactory:releases: version 'release-1.0' is not a release tag"),
        ("releases", ["release-1.0.0", "release-1.0.0"], "lists a tag twice"),
        ("imageName", "Debian 12", "imagefactory:imageName is 'Debian 12'"),
        ("ovaManifest", "md5", "imagefactory:ovaManifest is 'md5'; accepted values: sha256, sha1"),
        ("bootCheck", "some", "imagefactory:bootCheck is 'some'; accepted values: auto, none, qcow2, all"),
        ("presignSeconds", 3600, "imagefactory:presignSeconds is set, and imagefactory:registry is not an s3://"),
        ("presignSeconds", -1, "imagefactory:presignSeconds is -1; accepted: a whole number from 0 to 604800"),
    ],
)
def test_bad_values_are_refused_by_key_with_what_is_accepted(key: str, value: object, message: str) -> None:
    with pytest.raises(FactoryError) as caught:
        validate({**GOOD, key: value})
    assert message in str(caught.value)


ROOT = Path(__file__).resolve().parents[2]
AWS = {"bucket": "b", "region": "eu-west-1"}
AZURE = {"resourceGroup": "rg", "storageAccount": "st"}


def test_the_settings_table_is_the_one_pulumi_yaml_declares() -> None:
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert {key: spec["type"] for key, spec in declared.items()} == KEYS


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"format": ["raw"]}, "imagefactory:format is not a setting; did you mean imagefactory:formats?"),
        ({"diskSize": 4096}, "imagefactory:diskSize is not a setting; did you mean imagefactory:diskSizeMiB?"),
        ({"releases": "release-0.1.0"}, "imagefactory:releases must be a list such as [release-0.1.0]; got the string"),
        ({"formats": "qcow2"}, "imagefactory:formats must be a list such as [raw, qcow2]; got the string 'qcow2'"),
        ({"workDir": ""}, "imagefactory:workDir is empty"),
        ({"registryDir": "packer/out"}, "imagefactory:registryDir is 'packer/out', inside the project's sources"),
        ({"workDir": "."}, "imagefactory:workDir is '.', inside the project's sources"),
        ({"target": "aws", "aws": {**AWS, "copyRegions": "us-east-1"}}, "aws.copyRegions must be a list such as"),
        ({"target": "aws", "aws": {**AWS, "copyRegion": ["us-east-1"]}}, "did you mean imagefactory:aws.copyRegions?"),
        ({"target": "aws", "aws": AWS, "formats": ["qcow2"]}, "imagefactory:formats has no raw"),
        ({"target": "azure", "azure": AZURE, "formats": ["raw"], **RELEASES_ONLY}, "imagefactory:formats has no vhd"),
        ({"target": "azure", "azure": AZURE}, "imagefactory:buildWorkingTree is true; the azure target publishes"),
        ({"target": "azure", "azure": {**AZURE, "targetRegions": "westeurope"}}, "azure.targetRegions is 'westeurope'"),
        ({"target": "azure", "azure": {**AZURE, "targetRegions": ["westeurope"]}}, "'westeurope' is not an object"),
        ({"target": "azure", "azure": {**AZURE, "marketplace": "Debian"}}, "azure.marketplace is 'Debian'; accepted"),
        ({"target": "azure", "azure": {**AZURE, "endOfLifeDays": "soon"}}, "azure.endOfLifeDays is 'soon'"),
        (
            {"target": "azure", "azure": {**AZURE, "marketplace": {"skus": "x"}}},
            "did you mean imagefactory:azure.marketplace.sku?",
        ),
    ],
)
def test_typos_and_wrong_shapes_are_refused_naming_the_key(raw: dict, message: str) -> None:
    with pytest.raises(FactoryError) as caught:
        validate({**GOOD, **raw}, ROOT)
    assert message in str(caught.value)


def test_state_folders_may_live_under_state_or_outside_the_project(tmp_path: Path) -> None:
    settings = validate({**GOOD, "registryDir": str(tmp_path / "registry"), "workDir": ".state/elsewhere"}, ROOT)
    assert settings.registry_dir == str(tmp_path / "registry")


def test_tag_prefixes_that_cannot_name_files_are_refused() -> None:
    for prefix in ("images/", "dev-", "rel ease"):
        with pytest.raises(FactoryError, match=r"imagefactory:tagPrefix is"):
            validate({**GOOD, "tagPrefix": prefix})
    assert validate({**GOOD, "tagPrefix": "v", "releases": ["v1.0.0-rc.1"]}).releases == ("v1.0.0-rc.1",)


def test_an_azure_stack_refuses_a_pre_release_naming_the_key() -> None:
    with pytest.raises(FactoryError, match=r"imagefactory:releases lists release-1.0.0-rc.1, a pre-release"):
        validate({**GOOD, **{"target": "azure", "azure": AZURE, "releases": ["release-1.0.0-rc.1"], **RELEASES_ONLY}})


def test_the_boot_check_is_unset_by_default_and_takes_each_mode() -> None:
    assert validate(GOOD).boot_check == validate({**GOOD, "bootCheck": "auto"}).boot_check == ""
    assert [validate({**GOOD, "bootCheck": mode}).boot_check for mode in ("none", "qcow2", "all")] == [
        "none",
        "qcow2",
        "all",
    ]
