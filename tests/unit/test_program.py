"""The real program, `__main__.py`, under Pulumi mocks, with each stack file of stacks/ (plus the
native variants of aws and azure): what it registers, what it protects, how it tags, and an
`images` output that the application's LaunchTemplate can launch on every target.

The program runs in a throwaway copy of the project with its own git repository and a release
tag, exactly as `pulumi up` would run it there; only the engine and the clouds are mocked.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import mocks as pulumi_mocks

from tests.helpers import ROOT, copy_project, fake_step_result, init_git

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x.invalid"}
GIT_ENV.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@x.invalid")
RESOURCES: dict[str, dict[str, Any]] = {}
_register = pulumi_mocks.MockMonitor.RegisterResource


def _capture(self, request):  # type: ignore[no-untyped-def]  # the monitor's own signature
    RESOURCES.setdefault(request.name, {}).update(
        {
            "type": request.type,
            "parent": request.parent,
            "protect": request.protect,
            "retain_on_delete": request.retainOnDelete,
            "dependencies": list(request.dependencies),
        }
    )
    return _register(self, request)


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        RESOURCES.setdefault(args.name, {})["inputs"] = args.inputs
        outputs = dict(args.inputs)
        if args.typ == "command:local:Command":
            outputs["stdout"] = json.dumps(fake_step_result(args.name, args.inputs))
        elif args.typ == "aws:ec2/ami:Ami":
            return f"ami-{args.name}", outputs
        elif args.typ == "aws:ec2/amiCopy:AmiCopy":
            return f"ami-copy-{args.inputs['region']}", outputs
        elif args.typ.startswith("azure-native:compute:GalleryImageVersion"):
            return f"/gallery-version/{args.inputs.get('galleryImageVersionName')}", outputs
        outputs.setdefault("name", args.inputs.get("galleryName", args.name))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-source", "ownerId": "136693071363", "architecture": "x86_64"}, []
        if args.token == "azure-native:authorization:getClientConfig":
            return {"subscriptionId": "sub-1", "tenantId": "t", "clientId": "c", "objectId": "o"}, []
        return {}, []


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = copy_project(tmp_path_factory.mktemp("program") / "project")
    init_git(path, tag="release-0.1.0")
    (path / "README.md").write_text("a change after the release\n")
    subprocess.run(["git", "-C", str(path), "commit", "-qam", "after the release"], check=True, env=GIT_ENV)
    return path


@pytest.fixture(autouse=True)
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    RESOURCES.clear()
    monkeypatch.setattr(pulumi_mocks.MockMonitor, "RegisterResource", _capture)
    yield


def stack_config(stack: str, **overrides: Any) -> dict[str, str]:
    """Pulumi.yaml's defaults, then the stack file, then overrides: what the engine passes in."""
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    config: dict[str, Any] = {f"imagefactory:{k}": spec["default"] for k, spec in declared.items() if "default" in spec}
    config.update(yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()).get("config") or {})
    config.update({f"imagefactory:{k}": v for k, v in overrides.items()})
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}


def run_program(project: Path, config: dict[str, str]) -> dict[str, Any]:
    pulumi.runtime.set_mocks(Mocks(), project="imagefactory", stack="test", preview=False)
    pulumi.runtime.set_all_config(config)
    cwd = Path.cwd()
    os.chdir(project)
    try:
        return runpy.run_path(str(project / "__main__.py"), run_name="__main__")
    finally:
        os.chdir(cwd)


def images_of(program: dict[str, Any]) -> pulumi.Output:
    """The program's `images` stack output."""
    return pulumi.Output.all(**program["lookup_table"])


def named(suffix: str) -> dict[str, Any]:
    if suffix in RESOURCES:
        return RESOURCES[suffix]
    matches = [r for n, r in RESOURCES.items() if n.endswith(suffix)]
    assert len(matches) == 1, f"one resource named *{suffix}, found {sorted(RESOURCES)}"
    return matches[0]


@pulumi.runtime.test
def test_the_local_stack_publishes_the_working_tree_with_absolute_paths(project: Path):
    program = run_program(project, stack_config("local"))

    def check(images: dict[str, dict]) -> None:
        (version, entry), *_ = images.items()
        assert version.startswith("dev-") and len(images) == 1
        assert "shared" not in entry and not [n for n in RESOURCES if n.endswith("-push")], "no shared registry"
        assert entry["formats"]["qcow2"]["path"] == str(
            project / f".state/registry/{version}/debian-12-{version}.qcow2"
        )
        assert not RESOURCES[f"{version}-publish"]["protect"], "a development version is not protected"
        packer = RESOURCES[f"{version}-packer"]
        assert packer["parent"].endswith(f"ImageBuild::{version}"), "the build step is a child of its ImageBuild"

    return images_of(program).apply(check)


def registry_with_release(project: Path, tmp_path: Path) -> Path:
    """A registry whose index holds release-0.1.0 at its tag's commit (what make revoke needs)."""
    registry = tmp_path / "registry"
    registry.mkdir()
    commit = subprocess.run(
        ["git", "-C", str(project), "rev-parse", "release-0.1.0^{commit}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (registry / "index.json").write_text(json.dumps({"versions": {"release-0.1.0": {"commit": commit}}}))
    return registry


def run_release_program(project: Path, stack: str, registry: Path, check: Any) -> None:
    """The real program of a `stack` stack holding release-0.1.0 with `registry`; `check` reads its images."""
    config = stack_config(stack, releases=["release-0.1.0"], buildWorkingTree=False, registryDir=str(registry))

    @pulumi.runtime.test
    def run():  # type: ignore[no-untyped-def]  # a Pulumi test returns an Output
        return images_of(run_program(project, config)).apply(check)

    run()


SHARED = "s3://images/team?endpoint=http://127.0.0.1:1&pathStyle=true"


@pulumi.runtime.test
def test_a_shared_registry_is_checked_first_and_every_version_is_pushed_to_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
):
    from imagefactory import s3registry

    checked: list[s3registry.Store] = []
    monkeypatch.setattr(s3registry, "check", checked.append)  # the store itself: tests/integration/test_s3registry.py
    program = run_program(project, stack_config("local", registry=SHARED, releases=["release-0.1.0"]))
    assert checked == [s3registry.parse(SHARED)], "the store is reached before anything is built"

    def check(images: dict[str, dict]) -> None:
        assert set(images) == {"release-0.1.0"} | {v for v in images if v.startswith("dev-")}
        for version, entry in images.items():
            push = RESOURCES[f"{version}-push"]
            env = push["inputs"]["environment"]
            assert env["SHARED_REGISTRY"] == SHARED and env["VERSION_DIR"] == f".state/registry/{version}"
            assert push["protect"] == (version == "release-0.1.0"), "a release's push is protected like it"
            assert any(d.endswith(f"::{version}-publish") for d in push["dependencies"]), "after the local publish"
            shared = entry["shared"]
            assert shared["registry"] == "s3://images/team" and shared["version"] == version
            assert shared["formats"]["qcow2"]["url"].startswith("s3://images/team/blobs/sha256/")
            assert entry["formats"]["qcow2"]["path"].startswith(str(project)), "the local copy stays"

    return images_of(program).apply(check)


@pytest.mark.parametrize("revoked", [False, True])
def test_with_presign_seconds_every_shared_format_gets_a_fresh_pre_signed_url_in_a_secret_output(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, revoked: bool
) -> None:
    from imagefactory import channels, s3registry

    monkeypatch.setattr(s3registry, "check", lambda store: None)
    for key, value in (("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")):
        monkeypatch.setenv(key, value)
    registry = registry_with_release(project, tmp_path)
    config = stack_config(
        "local",
        registry=SHARED,
        releases=["release-0.1.0"],
        buildWorkingTree=False,
        registryDir=str(registry),
        presignSeconds=3600,
    )
    if revoked:
        channels.revoke(registry, "release-0.1.0", "CVE-1", at="t", by="t")

    @pulumi.runtime.test
    def run():  # type: ignore[no-untyped-def]  # a Pulumi test returns an Output
        signed = run_program(project, config)["signed"]
        if revoked:
            assert signed == {}, "a revoked version gets no download link"
            return None

        def check(formats: dict[str, dict]) -> None:
            assert set(formats) == {"raw", "qcow2", "vhd", "vmdk", "ova"}
            for item in formats.values():
                url = item["presigned"]
                assert url.startswith("http://127.0.0.1:1/images/team/blobs/sha256/" + item["sha256"]), url
                assert "X-Amz-Expires=3600" in url and "X-Amz-Signature=" in url
                assert item["presigned_expires"].endswith("Z")

        return signed["release-0.1.0"].apply(check)

    run()


def test_a_revocation_is_carried_to_the_shared_registry_by_the_next_up(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagefactory import channels, s3registry

    monkeypatch.setattr(s3registry, "check", lambda store: None)
    registry = registry_with_release(project, tmp_path)
    config = stack_config(
        "local", registry=SHARED, releases=["release-0.1.0"], buildWorkingTree=False, registryDir=str(registry)
    )

    def push_environment() -> dict[str, str]:
        RESOURCES.clear()

        @pulumi.runtime.test
        def run():  # type: ignore[no-untyped-def]  # a Pulumi test returns an Output
            return images_of(run_program(project, config))

        run()
        return RESOURCES["release-0.1.0-push"]["inputs"]["environment"]

    assert "REVOCATION" not in push_environment(), "an unrevoked version's push inputs never change"
    channels.revoke(registry, "release-0.1.0", "CVE-2026-0001", at="2026-11-28T10:00:00Z", by="t")
    assert json.loads(push_environment()["REVOCATION"]) == {"at": "2026-11-28T10:00:00Z", "reason": "CVE-2026-0001"}


def test_a_shared_registry_with_a_native_cloud_build_is_refused(project: Path) -> None:
    with pytest.raises(pulumi.RunError, match="a native cloud build publishes no files to share"):
        run_program(
            project,
            stack_config(
                "aws",
                registry=SHARED,
                aws={"bucket": "images", "region": "eu-west-1", "mode": "native"},
            ),
        )


@pulumi.runtime.test
def test_the_aws_stack_imports_the_release_tags_it_and_protects_it(project: Path):
    program = run_program(project, stack_config("aws", releases=["release-0.1.0"], buildWorkingTree=False))

    def check(images: dict[str, dict]) -> None:
        entry = images["release-0.1.0"]
        assert entry["aws"] == {
            "eu-west-1": "ami-release-0.1.0-ami",
            "eu-central-1": "ami-copy-eu-central-1",
            "us-east-1": "ami-copy-us-east-1",
        }
        for suffix in ("-snapshot", "-ami", "-ami-eu-central-1", "-ami-us-east-1"):
            resource = named(f"release-0.1.0{suffix}")
            assert resource["protect"] and resource["retain_on_delete"], f"release-0.1.0{suffix} is protected"
            assert resource["inputs"]["tags"]["ImageVersion"] == "release-0.1.0", f"release-0.1.0{suffix} is tagged"
        assert (
            named("release-0.1.0-disk")["inputs"]["source"].path
            == ".state/registry/release-0.1.0/debian-12-release-0.1.0.raw"
        )

    return images_of(program).apply(check)


@pulumi.runtime.test
def test_the_azure_stack_publishes_gallery_version_x_y_z_from_the_verified_vhd(project: Path):
    program = run_program(project, stack_config("azure"))

    def check(images: dict[str, dict]) -> None:
        assert images["release-0.1.0"]["azure"] == {"gallery_image_version_id": "/gallery-version/0.1.0"}
        version = named("release-0.1.0-version")
        assert version["protect"] and version["retain_on_delete"]
        assert version["inputs"]["publishingProfile"]["excludeFromLatest"] is False
        upload = named("release-0.1.0-vhd")["inputs"]["environment"]
        assert upload["VHD_SHA256"] == "v" * 64, "the upload is verified against the published VHD's digest"

    return images_of(program).apply(check)


@pytest.mark.parametrize("stack", ["aws", "azure"])
def test_a_revoked_version_is_tagged_in_both_clouds_and_leaves_azure_latest(
    project: Path, tmp_path: Path, stack: str
) -> None:
    """`make revoke`, then `pulumi up`: the AMIs and snapshot carry ImageRevoked; the gallery
    version is excluded from latest and reaches its end of life at the revocation."""
    from imagefactory import channels

    registry = registry_with_release(project, tmp_path)
    channels.revoke(registry, "release-0.1.0", "CVE-2026-0001", at="2026-11-28T10:00:00Z", by="t")

    def check(images: dict[str, dict]) -> None:
        if stack == "aws":
            for suffix in ("-snapshot", "-ami", "-ami-eu-central-1", "-ami-us-east-1"):
                assert named(f"release-0.1.0{suffix}")["inputs"]["tags"]["ImageRevoked"] == "CVE-2026-0001"
        else:
            version = named("release-0.1.0-version")["inputs"]
            assert version["publishingProfile"]["excludeFromLatest"] is True
            assert version["publishingProfile"]["endOfLifeDate"] == "2026-11-28T10:00:00Z"
            assert version["tags"]["ImageRevoked"] == "CVE-2026-0001"

    run_release_program(project, stack, registry, check)
    if stack == "aws":  # ...and each AMI is deprecated at once, in its own region, by the same `pulumi up`
        for region, ami in (("eu-west-1", "ami-"), ("eu-central-1", "ami-copy-eu-central-1")):
            step = named(f"release-0.1.0-deprecate-{region}")["inputs"]
            assert step["environment"]["REGION"] == region and step["environment"]["IMAGE_ID"].startswith(ami)
            assert "aws_lifecycle deprecate-now" in step["create"]


@pytest.mark.parametrize("stack", ["aws", "azure"])
@pytest.mark.parametrize("recorded", [None, ["bios", "uefi", "secureboot"]])
def test_a_published_uefi_only_version_keeps_its_cloud_descriptors_and_a_hybrid_one_claims_both(
    project: Path, tmp_path: Path, stack: str, recorded: list[str] | None
) -> None:
    """A version published before manifests recorded `firmwares` is a UEFI-only disk: its AMI keeps
    boot mode uefi and its gallery definition no security type, so no published resource changes
    (an AMI's boot mode would replace it). A hybrid one: uefi-preferred and TrustedLaunchSupported."""
    registry = registry_with_release(project, tmp_path)
    (registry / "release-0.1.0").mkdir()
    formats = {fmt: {} for fmt in ("raw", "qcow2", "vhd", "vmdk", "ova")}
    manifest = {"version": "release-0.1.0", "formats": formats} | ({"firmwares": recorded} if recorded else {})
    (registry / "release-0.1.0" / "manifest.json").write_text(json.dumps(manifest))

    def check(images: dict[str, dict]) -> None:
        if stack == "aws":
            assert named("release-0.1.0-ami")["inputs"].get("bootMode") == ("uefi-preferred" if recorded else "uefi")
        else:
            definition = named("release-0.1.0-definition")["inputs"]
            trusted = [{"name": "SecurityType", "value": "TrustedLaunchSupported"}]
            assert definition.get("features") == (trusted if recorded else None)

    run_release_program(project, stack, registry, check)


@pytest.mark.parametrize(
    ("stack", "overrides", "key", "expected"),
    [
        ("aws", {"aws": {"mode": "native", "region": "eu-west-1"}}, "aws", {"eu-west-1": "ami-0native"}),
        (
            "azure",
            {"azure": {"mode": "native", "resourceGroup": "rg-images", "marketplace": {"version": "0.20250101.0"}}},
            "azure",
            "galleries/imagefactory/images/debian-12/versions/0.1.0",
        ),
    ],
)
def test_native_builds_give_an_entry_the_launch_template_reads(
    project: Path, stack: str, overrides: dict, key: str, expected: Any
) -> None:
    @pulumi.runtime.test
    def run():  # type: ignore[no-untyped-def]  # a Pulumi test returns an Output
        one_stage = [{"name": "image", "playbook": "single-stage.yml"}]
        program = run_program(project, stack_config(stack, stages=one_stage, **overrides))

        def check(images: dict[str, dict]) -> None:
            packer = next(r for n, r in RESOURCES.items() if n.endswith(f"-{stack}-packer"))
            assert json.loads(packer["inputs"]["environment"]["PACKER_VARIABLES"])["playbook"] == "single-stage.yml"
            entry = next(iter(images.values()))
            if key == "aws":
                assert entry["aws"] == expected
            else:
                assert entry["azure"]["gallery_image_version_id"].endswith(expected)
            assert_launchable(key, entry)

        return images_of(program).apply(check)

    run()


def assert_launchable(target: str, entry: dict[str, Any]) -> None:
    """The application's LaunchTemplate takes this entry without a missing key."""
    from components.launch_template import LaunchTemplate

    args: dict[str, Any] = {"target": target, "version": entry["version"], "image": entry}
    if target == "aws":
        args["region"] = next(iter(entry["aws"]))
    if target == "azure":
        args["resource_group_name"] = "rg-app"
    LaunchTemplate(f"app-{target}", args)  # type: ignore[arg-type]  # built from plain values here


@pulumi.runtime.test
def test_every_import_target_entry_is_launchable(project: Path):
    entries: dict[str, pulumi.Output] = {}
    for stack, overrides in (
        ("local", {}),
        ("aws", {"releases": ["release-0.1.0"], "buildWorkingTree": False}),
        ("azure", {}),
    ):
        program = run_program(project, stack_config(stack, **overrides))
        entries[stack] = images_of(program).apply(lambda i: next(iter(i.values())))

    def check(values: list[dict]) -> None:
        for target, entry in zip(entries, values, strict=True):
            assert_launchable(target, entry)

    return pulumi.Output.all(*entries.values()).apply(check)


def test_a_preview_says_which_stages_build_and_which_parent_is_outdated(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The program plans each version's stages from the registry: a published base with the same
    key is reused (never rebuilt), and a newer base in the registry is reported."""
    from imagefactory import stages
    from imagefactory.upstream import stage0_recipe_digest

    config = stack_config("local")
    upstream = stages.upstream_key(
        config["imagefactory:upstreamUrl"],
        config["imagefactory:upstreamChecksum"],
        config["imagefactory:upstreamFallback"],
        stage0_recipe_digest(),
    )
    recipes = [stages.working_tree_recipe(project, stage) for stage in stages.DEFAULT_STAGES]
    key = stages.stage_keys(upstream, stages.DEFAULT_STAGES, recipes)[0]
    registry = tmp_path / "registry"
    index = {
        "versions": {
            "release-0.1.0": {"stage_key": key, "published_at": "2026-01-01T00:00:00Z"},
            "release-0.3.0": {"stage_key": "sha256:another", "published_at": "2026-02-01T00:00:00Z"},
        }
    }
    (registry / "stages" / "base").mkdir(parents=True)
    (registry / "stages" / "base" / "index.json").write_text(json.dumps(index))
    said: list[str] = []
    monkeypatch.setattr(pulumi.log, "info", lambda message, *a, **k: said.append(message))
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: said.append(f"warning: {message}"))

    @pulumi.runtime.test
    def run():  # type: ignore[no-untyped-def]  # a Pulumi test returns an Output
        program = run_program(project, {**config, "imagefactory:registryDir": str(registry)})

        def check(images: dict[str, dict]) -> None:
            version = next(iter(images))
            assert f"{version}: stage base release-0.1.0 is reused (published)" in said, said
            assert f"warning: functional {version} is built on base release-0.1.0; base release-0.3.0 is newer" in said
            assert not [name for name in RESOURCES if name.startswith("base-")], "a published base is not rebuilt"
            verify = RESOURCES[f"{version}-parent-verify"]["inputs"]["environment"]
            assert (verify["PARENT_STAGE"], verify["PARENT_VERSION"]) == ("base", "release-0.1.0")

        return images_of(program).apply(check)

    run()


def test_an_aws_native_chain_builds_the_functional_ami_from_the_base_ami_found_by_its_tags(project: Path) -> None:
    """Native AWS, two stages: the base is an AMI tagged ImageStage=base; the functional build's
    source filter is that AMI's ImageVersion and ImageStage tags among the account's own images."""
    config = stack_config(
        "aws", releases=["release-0.1.0"], buildWorkingTree=False, aws={"mode": "native", "region": "eu-west-1"}
    )

    @pulumi.runtime.test
    def run():  # type: ignore[no-untyped-def]  # a Pulumi test returns an Output
        program = run_program(project, config)

        def check(images: dict[str, dict]) -> None:
            base = json.loads(RESOURCES["base-release-0.1.0-aws-packer"]["inputs"]["environment"]["PACKER_VARIABLES"])
            top = json.loads(RESOURCES["release-0.1.0-aws-packer"]["inputs"]["environment"]["PACKER_VARIABLES"])
            assert (base["playbook"], base["image_stage"], base["image_name"]) == ("base.yml", "base", "debian-12-base")
            assert base["aws_source_ami_owner"] == "136693071363", "the base starts from the pinned Debian AMI"
            assert "playbook" not in top and top["image_stage"] == "functional"
            assert (top["aws_source_ami_owner"], top["aws_source_ami_name"]) == ("self", "")
            assert top["aws_source_ami_tags"] == {"ImageVersion": "release-0.1.0", "ImageStage": "base"}
            upstream = RESOURCES["release-0.1.0-aws-packer"]["inputs"]["environment"]["UPSTREAM"]
            assert upstream == "ami-0native", "the functional build's source is the base's AMI"
            assert RESOURCES["base-release-0.1.0-aws-packer"]["protect"], "a released base is protected"
            assert images["release-0.1.0"]["aws"] == {"eu-west-1": "ami-0native"}

        return images_of(program).apply(check)

    run()


def test_an_azure_native_chain_builds_the_functional_version_from_the_base_gallery_version(project: Path) -> None:
    """Native Azure, two stages: the base is published to its own image definition (made by the
    stack, kept on destroy); the functional build's source is the base's gallery version."""
    azure = {"mode": "native", "resourceGroup": "rg-images", "marketplace": {"version": "0.20250101.0"}}
    releases = ["release-0.1.0", "release-0.2.0"]
    config = stack_config("azure", releases=releases, buildWorkingTree=False, azure=azure)
    # release-0.2.0 changes only the README: it boots the base that release-0.1.0 builds.
    subprocess.run(["git", "-C", str(project), "tag", "release-0.2.0"], check=True, env=GIT_ENV)

    @pulumi.runtime.test
    def run():  # type: ignore[no-untyped-def]  # a Pulumi test returns an Output
        try:
            program = run_program(project, config)
        finally:
            subprocess.run(["git", "-C", str(project), "tag", "-d", "release-0.2.0"], check=True, env=GIT_ENV)

        def check(images: dict[str, dict]) -> None:
            base_step = RESOURCES["base-release-0.1.0-azure-packer"]
            top_step = RESOURCES["release-0.1.0-azure-packer"]
            base = json.loads(base_step["inputs"]["environment"]["PACKER_VARIABLES"])
            top = json.loads(top_step["inputs"]["environment"]["PACKER_VARIABLES"])
            assert (base["playbook"], base["image_stage"], base["image_name"]) == ("base.yml", "base", "debian-12-base")
            assert (base["azure_image_definition"], base["azure_gallery_version"]) == ("debian-12-base", "0.1.0")
            assert "azure_source_gallery_version" not in base, "the base starts from the pinned marketplace image"
            assert top["azure_image_definition"] == "debian-12" and top["image_stage"] == "functional"
            assert (top["azure_source_image_definition"], top["azure_source_gallery_version"]) == (
                "debian-12-base",
                "0.1.0",
            )
            upstream = top_step["inputs"]["environment"]["UPSTREAM"]
            assert upstream.endswith("/galleries/imagefactory/images/debian-12-base/versions/0.1.0"), upstream
            definition = RESOURCES["base-definition"]
            assert definition["inputs"]["galleryImageName"] == "debian-12-base"
            assert "features" not in definition["inputs"], "the stack's one base definition keeps its inputs"
            assert definition["retain_on_delete"] and base_step["protect"], "a released base is kept"
            assert any(urn.endswith("::base-definition") for urn in base_step["dependencies"]), "definition first"
            assert [name for name in RESOURCES if name.endswith("-definition")] == ["base-definition"]
            assert [name for name in RESOURCES if name.startswith("base-") and name.endswith("-packer")] == [
                "base-release-0.1.0-azure-packer"
            ], "one base, built once"
            second = RESOURCES["release-0.2.0-azure-packer"]
            variables = json.loads(second["inputs"]["environment"]["PACKER_VARIABLES"])
            assert (variables["azure_gallery_version"], variables["azure_source_gallery_version"]) == ("0.2.0", "0.1.0")
            assert any(urn.endswith("::base-release-0.1.0-azure-packer") for urn in second["dependencies"])
            for version in releases:
                entry = images[version]
                assert entry["azure"]["gallery_image_version_id"].endswith(f"/images/debian-12/versions/{version[8:]}")
                assert_launchable("azure", entry)

        return images_of(program).apply(check)

    run()


def test_an_azure_native_child_without_a_subscription_is_refused_before_packer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagefactory import build_cloud
    from imagefactory.errors import FactoryError
    from imagefactory.steps import CloudBuildRequest

    monkeypatch.delenv("ARM_SUBSCRIPTION_ID", raising=False)
    monkeypatch.setattr(build_cloud, "run_packer", lambda *a: pytest.fail("Packer must not start"))
    variables = {"azure_source_image_definition": "debian-12-base", "azure_source_gallery_version": "0.1.0"}
    request = CloudBuildRequest(
        target="azure",
        version="release-0.1.0",
        commit="c" * 40,
        source_dir=tmp_path,
        work_dir=tmp_path,
        build_epoch=0,
        upstream="/subscriptions/s/x",
        variables=json.dumps(variables),
    )
    with pytest.raises(FactoryError, match="ARM_SUBSCRIPTION_ID is not set"):
        build_cloud.build(request)
