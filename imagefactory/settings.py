"""Stack settings: the validated form of the `imagefactory:*` config keys (see Pulumi.yaml).

Validation lives here, free of Pulumi, so that a bad value is reported the same way in a
unit test, in `pulumi preview` and on the command line: by naming the key and the values it
accepts.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagefactory.bootcheck import BOOT_CHECKS
from imagefactory.cloud import aws_settings, azure_settings
from imagefactory.errors import FactoryError
from imagefactory.formats import ALL_FORMATS
from imagefactory.ovf import MANIFEST_DIGESTS
from imagefactory.stages import DEFAULT_STAGES, Stage, validate_stages
from imagefactory.versions import DEFAULT_TAG_PREFIX, TAG_PREFIX, parse_release_tag

TARGETS = ("local", "aws", "azure")
FORMATS = ALL_FORMATS  # one table: imagefactory.formats
FALLBACKS = ("stage0", "none")
ACCELERATORS = ("auto", "kvm", "tcg")
CHECKSUM = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}|file:.+)$")

# The settings table: every `imagefactory:*` key with its type as declared in Pulumi.yaml (a unit
# test holds the two together). components/config.py reads each key by this type.
KEYS: dict[str, str] = {
    "target": "string",
    "releases": "array",
    "buildWorkingTree": "boolean",
    "tagPrefix": "string",
    "upstreamUrl": "string",
    "upstreamChecksum": "string",
    "upstreamFallback": "string",
    "registryDir": "string",
    "registry": "string",
    "presignSeconds": "integer",
    "workDir": "string",
    "imageName": "string",
    "formats": "array",
    "ovaManifest": "string",
    "diskSizeMiB": "integer",
    "accelerator": "string",
    "bootCheck": "string",
    "buildTimeoutMinutes": "integer",
    "aws": "object",
    "azure": "object",
    "stages": "array",
}
# Where build output may live inside the project: only under the ignored state folder.
STATE_DIR = ".state"


@dataclass(frozen=True)
class Settings:
    target: str = "local"
    releases: tuple[str, ...] = ()
    build_working_tree: bool = True
    tag_prefix: str = DEFAULT_TAG_PREFIX
    upstream_url: str = ""
    upstream_checksum: str = ""
    upstream_fallback: str = "stage0"
    registry_dir: str = ".state/registry"
    shared_registry: str = ""
    """s3://bucket/prefix?…: where every version is published for the team too (imagefactory.s3registry);
    "" when the registry is this machine's folder only."""
    presign_seconds: int = 0
    """With a shared registry: each format's entry in the `images` output also gets a pre-signed
    HTTPS URL living this long, signed afresh by every `pulumi up` (0: none)."""
    work_dir: str = ".state/work"
    formats: tuple[str, ...] = ("raw", "qcow2", "vhd", "vmdk", "ova")
    ova_manifest: str = "sha256"
    """The OVA manifest's digest: sha256, or sha1 for OVF 1.0 readers and older ESXi."""
    disk_size_mib: int = 3072
    accelerator: str = "auto"
    build_timeout_minutes: int = 60
    boot_check: str = ""
    """The release gate (imagefactory.bootcheck): none, qcow2 or all; "" is all for a release and
    qcow2 for a development build. A host fact: it never changes a version's inputs."""
    image_name: str = "debian-12"
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    """The chain of stages, bottom first; the last one is the image this stack publishes."""
    aws: Any = None
    """cloud.AwsSettings when target is aws."""
    azure: Any = None
    """cloud.AzureSettings when target is azure."""
    extra: dict[str, Any] = field(default_factory=dict)


def _one_of(key: str, value: Any, accepted: tuple[str, ...]) -> str:
    if value not in accepted:
        raise FactoryError(f"imagefactory:{key} is {value!r}; accepted values: {', '.join(accepted)}")
    return value


def _boot_check(value: Any) -> str:
    """auto (the default: all for a release, qcow2 for a development build) is recorded as ""."""
    chosen = _one_of("bootCheck", value, ("auto", *BOOT_CHECKS))
    return "" if chosen == "auto" else chosen


def _int_in(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FactoryError(f"imagefactory:{key} is {value!r}; accepted: a whole number from {low} to {high}")
    return value


def check_known_keys(prefix: str, raw: dict[str, Any], known: Any) -> None:
    """An unknown key is a typo until proven otherwise: name it and the closest known key."""
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = f"did you mean {prefix}{close[0]}? " if close else ""
            raise FactoryError(f"{prefix}{key} is not a setting; {hint}known settings: {', '.join(sorted(known))}")


def string_list(key: str, value: Any, example: str) -> list[str]:
    """A list of strings; a lone string is refused rather than read letter by letter."""
    if isinstance(value, str):
        raise FactoryError(f"{key} must be a list such as {example}; got the string {value!r}")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise FactoryError(f"{key} must be a list of strings such as {example}; got {value!r}")
    return value


def _state_folder(key: str, value: Any, project_root: Path | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FactoryError(f"imagefactory:{key} is empty; accepted: a folder under {STATE_DIR}/ or outside the project")
    if project_root is not None:
        root = project_root.resolve()
        folder = (root / value).resolve()
        if folder == root or (folder.is_relative_to(root) and not folder.is_relative_to(root / STATE_DIR)):
            raise FactoryError(
                f"imagefactory:{key} is {value!r}, inside the project's sources; accepted: a folder under "
                f"{STATE_DIR}/ or outside the project"
            )
    return value


def _registry(value: Any, folder: Any, project_root: Path | None) -> tuple[str, str]:
    """imagefactory:registry: file://<folder> (the same as registryDir) or s3://bucket/prefix?… (this
    machine's registryDir is then its copy, and every version is published to the store too)."""
    from imagefactory import s3registry

    if value in ("", None):
        return _state_folder("registryDir", folder, project_root), ""
    if not isinstance(value, str):
        raise FactoryError("imagefactory:registry must be text: file://<folder> or s3://<bucket>[/<prefix>]?…")
    if value.startswith("file://"):
        return _state_folder("registry", value.removeprefix("file://"), project_root), ""
    if value.startswith("s3://"):
        s3registry.parse(value)  # names what is wrong
        return _state_folder("registryDir", folder, project_root), value
    raise FactoryError(
        f"imagefactory:registry is {value!r}; accepted: file://<folder> (a folder under {STATE_DIR}/ or outside "
        "the project) or s3://<bucket>[/<prefix>][?endpoint=…&region=…&pathStyle=true&objectLock=…&retentionDays=…]"
    )


def validate(raw: dict[str, Any], project_root: Path | None = None) -> Settings:
    """Turn raw config values (already typed by Pulumi) into Settings, or name what is wrong."""
    defaults = Settings()
    check_known_keys("imagefactory:", raw, KEYS)
    get = raw.get
    target = _one_of("target", get("target", defaults.target), TARGETS)
    prefix = get("tagPrefix", defaults.tag_prefix)
    if not isinstance(prefix, str) or not TAG_PREFIX.fullmatch(prefix) or prefix.startswith("dev-"):
        raise FactoryError(
            f"imagefactory:tagPrefix is {prefix!r}; accepted: letters, digits and . _ - (no slash: the version "
            "names folders and files), not starting with dev- (development versions use it)"
        )
    releases = string_list("imagefactory:releases", get("releases", []), "[release-0.1.0]")
    for tag in releases:
        try:
            parse_release_tag(tag, prefix)
        except FactoryError as exc:
            raise FactoryError(f"imagefactory:releases: {exc}") from exc
    if len(set(releases)) != len(releases):
        raise FactoryError("imagefactory:releases lists a tag twice; list each release once")
    formats = string_list("imagefactory:formats", get("formats", list(defaults.formats)), "[raw, qcow2]")
    if not formats:
        raise FactoryError(f"imagefactory:formats must be a non-empty list of: {', '.join(FORMATS)}")
    for fmt in formats:
        _one_of("formats", fmt, FORMATS)
    checksum = get("upstreamChecksum", "")
    if checksum and not CHECKSUM.match(checksum):
        raise FactoryError(
            f"imagefactory:upstreamChecksum is {checksum!r}; accepted: sha256:<64 hex>, "
            "sha512:<128 hex> or file:<URL or path of a SHA256SUMS/SHA512SUMS file>"
        )
    url = get("upstreamUrl", "")
    if target == "local" and not url:
        raise FactoryError("imagefactory:upstreamUrl is empty; give the URL or path of an upstream cloud image")
    aws = aws_settings(_object("aws", get("aws", {}))) if target == "aws" else None
    azure = azure_settings(_object("azure", get("azure", {}))) if target == "azure" else None
    if aws is not None and aws.mode == "import" and "raw" not in formats:
        raise FactoryError("imagefactory:formats has no raw; the aws target's import mode imports the RAW: add raw")
    if azure is not None and bool(get("buildWorkingTree", True)):
        raise FactoryError(
            "imagefactory:buildWorkingTree is true; the azure target publishes gallery versions X.Y.Z from "
            "release tags only, never a development version: set it to false and list imagefactory:releases"
        )
    if azure is not None:
        for tag in releases:
            if parse_release_tag(tag, prefix)[3]:
                raise FactoryError(
                    f"imagefactory:releases lists {tag}, a pre-release; an Azure gallery version is X.Y.Z only, "
                    "so a release candidate cannot be told from its release there: publish it from a local stack"
                )
    stages = _stages(get("stages", [s.to_json() for s in defaults.stages]), project_root)
    if azure is not None and azure.mode == "import" and "vhd" not in formats:
        raise FactoryError("imagefactory:formats has no vhd; the azure target's import mode imports the VHD: add vhd")
    registry_dir, shared_registry = _registry(
        get("registry", ""), get("registryDir", defaults.registry_dir), project_root
    )
    native = any(cloud is not None and cloud.mode == "native" for cloud in (aws, azure))
    if shared_registry and native:
        raise FactoryError(
            "imagefactory:registry is an S3 registry, and a native cloud build publishes no files to share; "
            "accepted with it: the local target or an import mode"
        )
    presign = _int_in("presignSeconds", get("presignSeconds", 0), 0, 7 * 24 * 3600)
    if presign and not shared_registry:
        raise FactoryError(
            "imagefactory:presignSeconds is set, and imagefactory:registry is not an s3://… registry; a pre-signed "
            "URL is an address in the shared registry: set the registry, or presignSeconds to 0"
        )
    return Settings(
        target=target,
        releases=tuple(releases),
        build_working_tree=bool(get("buildWorkingTree", True)),
        tag_prefix=prefix,
        upstream_url=url,
        upstream_checksum=checksum,
        upstream_fallback=_one_of("upstreamFallback", get("upstreamFallback", "stage0"), FALLBACKS),
        registry_dir=registry_dir,
        shared_registry=shared_registry,
        presign_seconds=presign,
        work_dir=_state_folder("workDir", get("workDir", defaults.work_dir), project_root),
        formats=tuple(dict.fromkeys(formats)),
        ova_manifest=_one_of("ovaManifest", get("ovaManifest", defaults.ova_manifest), MANIFEST_DIGESTS),
        disk_size_mib=_int_in("diskSizeMiB", get("diskSizeMiB", defaults.disk_size_mib), 1024, 1024 * 1024),
        accelerator=_one_of("accelerator", get("accelerator", "auto"), ACCELERATORS),
        build_timeout_minutes=_int_in("buildTimeoutMinutes", get("buildTimeoutMinutes", 60), 5, 24 * 60),
        boot_check=_boot_check(get("bootCheck", "auto")),
        image_name=_image_name(get("imageName", defaults.image_name)),
        stages=stages,
        aws=aws,
        azure=azure,
    )


def _stages(value: Any, project_root: Path | None) -> tuple[Stage, ...]:
    stages = validate_stages(value)
    if project_root is not None:
        for number, stage in enumerate(stages):
            if not (project_root / "ansible" / stage.playbook).is_file():
                raise FactoryError(
                    f"imagefactory:stages[{number}].playbook is {stage.playbook!r}, and ansible/{stage.playbook} "
                    "does not exist; accepted: a playbook file under ansible/"
                )
    return stages


def _object(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FactoryError(f"imagefactory:{key} must be an object of settings (see README)")
    return value


def _image_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,62}", value):
        raise FactoryError(
            f"imagefactory:imageName is {value!r}; accepted: lower-case letters, digits, dots and dashes "
            "(at most 63), starting with a letter or digit"
        )
    return value
