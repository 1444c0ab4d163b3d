"""One contract per step of the pipeline: a request and a result, written once.

A request dataclass declares each input of a step once: its name, type and the environment
variable that carries it. From it come

- the component's side: `environment(...)` (the Command's `environment=`, checked against the
  fields) and `script()` (the shell line; it only names "$VARIABLES", values never reach the shell);
- the step's side: `parse(argv, environ)` (argparse built from the same fields) gives a typed
  request;

and a result dataclass is the one JSON object the step prints last (`errors.run_step`), read back
by the component with `parse_result`. No Pulumi import here: components are thin wiring over it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypedDict, TypeVar

from imagefactory.errors import FactoryError

R = TypeVar("R", bound="Request")
T = TypeVar("T")

# Names a request may not use for its variables: the command runs with the user's environment.
_RESERVED = {"PATH", "HOME", "PYTHONPATH", "PYTHONUNBUFFERED", "LANG", "LC_ALL", "TMPDIR", "USER", "SHELL"}


def arg(
    env: str,
    *,
    default: Any = dataclasses.MISSING,
    positional: bool = False,
    cli: bool = True,
    derived: str | None = None,
    choices: Sequence[str] | None = None,
    doc: str = "",
) -> Any:
    """One input of a step.

    env: the variable that carries it from the Command to the step.
    positional: given as a positional argument rather than `--flag`.
    cli: False when the step reads it from the environment only (not on the command line).
    derived: a fixed shell word derived from other variables (e.g. '"$RAW.report.json"'); such an
        input is never set by the component.
    """
    meta = {"env": env, "positional": positional, "cli": cli, "shell": derived, "choices": choices, "doc": doc}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    env: str
    kind: type
    required: bool
    default: Any
    positional: bool
    cli: bool
    shell: str | None
    choices: Sequence[str] | None
    doc: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


class Request:
    """Base of every step request: `MODULE` is what follows `python -m imagefactory.`."""

    MODULE: ClassVar[str]

    @classmethod
    def specs(cls) -> list[_Spec]:
        hints = typing.get_type_hints(cls)
        specs = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # every subclass is a dataclass
            meta = f.metadata
            specs.append(
                _Spec(
                    name=f.name,
                    env=meta["env"],
                    kind=hints[f.name],
                    required=f.default is dataclasses.MISSING,
                    default=None if f.default is dataclasses.MISSING else f.default,
                    positional=meta["positional"],
                    cli=meta["cli"],
                    shell=meta["shell"],
                    choices=meta["choices"],
                    doc=meta["doc"],
                )
            )
        return specs

    @classmethod
    def script(cls) -> str:
        """`<module> [positional…] --flag "$VAR" …`: the command line, in field order."""
        words = [cls.MODULE]
        for spec in cls.specs():
            if not spec.cli:
                continue
            value = spec.shell or f'"${spec.env}"'
            words.append(value if spec.positional else f"{spec.flag} {value}")
        return " ".join(words)

    @classmethod
    def environment(cls, **values: T) -> dict[str, T]:
        """The Command's environment for these inputs; refuses a missing or unknown input."""
        settable = {s.name: s for s in cls.specs() if s.shell is None}
        unknown = sorted(set(values) - set(settable))
        missing = sorted(n for n, s in settable.items() if s.required and n not in values)
        if unknown or missing:
            raise TypeError(f"{cls.__name__}: unknown inputs {unknown}, missing inputs {missing}")
        # An input left out still reaches the step as its default: the shell line names every
        # variable, and an unset one would be "" (or whatever the user's shell holds).
        defaults = {n: str(s.default) for n, s in settable.items() if n not in values and s.default is not None}
        return {settable[name].env: value for name, value in {**defaults, **values}.items()}  # type: ignore[misc]  # defaults are text, as every value becomes

    @classmethod
    def parser(cls, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
        parser = parser or argparse.ArgumentParser(prog=f"python -m imagefactory.{cls.MODULE}")
        for spec in cls.specs():
            if not spec.cli:
                continue
            convert = spec.kind if spec.kind in (int, Path) else str
            options: dict[str, Any] = {"type": convert, "help": spec.doc or None}
            if spec.choices:
                options["choices"] = spec.choices
            if spec.positional:
                parser.add_argument(spec.name, **options)
            else:
                options.update(required=spec.required, default=spec.default, dest=spec.name)
                parser.add_argument(spec.flag, **options)
        return parser

    @classmethod
    def from_namespace(cls: type[R], args: argparse.Namespace, environ: Mapping[str, str]) -> R:
        values: dict[str, Any] = {}
        for spec in cls.specs():
            if spec.cli:
                values[spec.name] = getattr(args, spec.name)
            elif spec.env in environ:
                values[spec.name] = spec.kind(environ[spec.env]) if spec.kind in (int, Path) else environ[spec.env]
            elif spec.required:
                raise FactoryError(f"{spec.env} is not set; the {cls.MODULE} step needs it")
        return cls(**values)

    @classmethod
    def parse(cls: type[R], argv: Sequence[str] | None, environ: Mapping[str, str]) -> R:
        """The typed request from a command line (and the environment, for env-only inputs)."""
        return cls.from_namespace(cls.parser().parse_args(argv), environ)

    @classmethod
    def check_contract(cls) -> None:
        """Each variable is named once and never shadows the user's environment."""
        names = [s.env for s in cls.specs()]
        clashes = sorted({n for n in names if names.count(n) > 1} | (set(names) & _RESERVED))
        if clashes:
            raise TypeError(f"{cls.__name__} reuses or shadows the variables {clashes}")


class Result:
    """Base of every step result: the JSON object on the step's last stdout line."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]  # a dataclass

    @classmethod
    def from_json(cls: type[T], value: Mapping[str, Any]) -> T:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # a dataclass
        names = {f.name for f in fields}
        # A field with a default was added later: a result stored before it existed still reads.
        missing = sorted(
            f.name
            for f in fields
            if f.name not in value and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        if missing:
            raise FactoryError(f"{cls.__name__} is missing {missing} in {json.dumps(value)[:200]}")
        return cls(**{k: v for k, v in value.items() if k in names})


def parse_result(result: type[T], stdout: str) -> T:
    """A step's result from its whole stdout: its last line is one JSON object."""
    lines = stdout.strip().splitlines()
    try:
        value = json.loads(lines[-1]) if lines else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise FactoryError(f"the step printed no {result.__name__} as its last line: {stdout[-200:]!r}")
    if not issubclass(result, Result):
        return value  # type: ignore[return-value]  # a mapping contract (dict, or a TypedDict such as ImageEntry)
    return result.from_json(value)  # from_json builds the T it is called on


# --- upstream ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UpstreamRequest(Request):
    MODULE = "upstream"
    url: str = arg("UPSTREAM_URL", doc="URL or local path of the cloud image")
    checksum: str = arg("UPSTREAM_CHECKSUM", default="", doc="sha256:<hex>, sha512:<hex> or file:<SUMS URL>")
    fallback: str = arg("UPSTREAM_FALLBACK", default="stage0", choices=("stage0", "none"))


@dataclasses.dataclass(frozen=True)
class UpstreamResult(Result):
    path: str
    sha256: str
    source: str
    checksum: str
    via: str
    """download, path or stage0."""


# --- sources of a release -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SourcesRequest(Request):
    MODULE = "sources"
    repo: Path = arg("REPO")
    commit: str = arg("IMAGE_COMMIT")
    dest: Path = arg("DEST", doc="where the tree of the commit is exported")


@dataclasses.dataclass(frozen=True)
class SourcesResult(Result):
    dir: str
    commit: str


# --- build (Packer + Ansible, re-master) --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BuildRequest(Request):
    MODULE = "build"
    version: str = arg("IMAGE_VERSION")
    commit: str = arg("IMAGE_COMMIT")
    build_epoch: int = arg("BUILD_EPOCH", doc="commit time, stamped as BUILD_TIME")
    source_dir: Path = arg("SOURCE_DIR", doc="the tree holding packer/ and ansible/")
    upstream_path: str = arg("UPSTREAM_PATH")
    upstream_sha256: str = arg("UPSTREAM_SHA256")
    upstream_source: str = arg("UPSTREAM_SOURCE")
    work_dir: Path = arg("WORK_DIR")
    disk_size_mib: int = arg("DISK_SIZE_MIB", default=3072)
    playbook: str = arg("PLAYBOOK", default="site.yml", doc="the stage's playbook, a file name under ansible/")
    stage: str = arg("IMAGE_STAGE", default="", doc="the stage's name, stamped into /etc/release")


@dataclasses.dataclass(frozen=True)
class BuildResult(Result):
    version: str
    commit: str
    raw: str
    """The sealed RAW disk, relative to the project root when inside it."""
    sha256: str
    bytes: int
    accelerator: str
    log: str
    build_time: str
    remaster: dict[str, Any]
    """What the re-master measured and checked (imagefactory.remaster)."""


# --- seal check ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SealCheckRequest(Request):
    MODULE = "sealcheck"
    disk: Path = arg("RAW", positional=True, doc="the sealed RAW disk")
    version: str = arg("IMAGE_VERSION", doc="the version /etc/release must carry")
    report: Path = arg("SEAL_REPORT", default=None, derived='"$RAW.seal-report.json"', doc="also write JSON here")


@dataclasses.dataclass(frozen=True)
class SealReport(Result):
    disk: str
    version: str
    sealed: bool
    findings: list[dict[str, str]]


# --- formats ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FormatsRequest(Request):
    MODULE = "formats"
    raw: Path = arg("RAW")
    raw_sha256: str = arg("RAW_SHA256", doc="digest of the sealed RAW the seal check passed")
    out_base: Path = arg("OUT_DIR", doc="a new folder formats-<id> is made in it for this run")
    version: str = arg("IMAGE_VERSION")
    commit: str = arg("IMAGE_COMMIT")
    upstream_source: str = arg("UPSTREAM_SOURCE")
    upstream_sha256: str = arg("UPSTREAM_SHA256")
    build_time: str = arg("BUILD_TIME")
    build_epoch: int = arg("BUILD_EPOCH")
    formats: str = arg("FORMATS", doc="comma-separated, from imagefactory.formats.ALL_FORMATS")
    name: str = arg("IMAGE_NAME", default="debian-12")
    sealed: str = arg("SEALED", default="", cli=False, doc="the seal check's verdict: True")
    stage: str = arg("IMAGE_STAGE", default="", doc="the stage's name (imagefactory.stages)")
    recipe: str = arg("STAGE_RECIPE", default="", doc="sha256 of the stage's playbook, roles and templates")
    stage_key: str = arg("STAGE_KEY", default="", doc="the stage's recipe and every recipe below it")
    parents: str = arg("PARENT_CHAIN", default="", doc="JSON list: the chain of custody below this stage")
    ova_manifest: str | None = arg(
        "OVA_MANIFEST", cli=False, default=None, doc="digest of the OVA's .mf: sha256 (when unset) or sha1"
    )


@dataclasses.dataclass(frozen=True)
class FormatsResult(Result):
    """The version's manifest.json, plus the staging folder it was written to."""

    version: str
    commit: str
    name: str
    disk_size_mib: int
    build_time: str
    upstream: dict[str, str]
    sealed_raw_sha256: str
    formats: dict[str, dict[str, Any]]
    dir: str
    stage: str = ""
    recipe: str = ""
    stage_key: str = ""
    chain: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """The chain of custody: the upstream, then every stage up to this one (imagefactory.stages)."""
    packages: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The recorded package set: its count, packages.tsv and the SBOM file (imagefactory.packages)."""
    firmwares: list[str] = dataclasses.field(default_factory=list)
    """What the disk boots under, read offline from its boot chain (imagefactory.bootchain): bios,
    uefi, secureboot. A manifest without it is a UEFI-only disk of the former stage-0 recipe."""
    boot_checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """The release gate's boots: format, firmware, the version it reported, seconds (imagefactory.bootcheck)."""


# --- publish ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PublishRequest(Request):
    MODULE = "registry publish"
    registry: Path = arg("REGISTRY")
    staging: Path = arg("STAGING")
    version: str = arg("IMAGE_VERSION")


@dataclasses.dataclass(frozen=True)
class PushRequest(Request):
    MODULE = "s3registry push"
    registry: str = arg("SHARED_REGISTRY", doc="s3://bucket/prefix?endpoint=…: the shared registry")
    folder: Path = arg("VERSION_DIR", doc="the version's published folder in this machine's registry")
    revocation: str | None = arg(
        "REVOCATION",
        cli=False,
        default=None,
        doc='JSON {"at": …, "reason": …} once the version is revoked (make revoke): carried to the store',
    )


class SharedFile(TypedDict, total=False):
    file: str
    sha256: str
    bytes: int
    url: str
    """s3://bucket/key of the file's object."""
    web_url: str
    """The object's address at the store's endpoint, in the endpoint's scheme (pre-signed URLs come
    from make lookup PRESIGN=…)."""
    https: str
    """What a version pushed before web_url existed recorded under that name (its push is not re-run)."""


class SharedEntry(TypedDict):
    """One version in the shared registry (imagefactory.s3registry): a file's object per format."""

    version: str
    registry: str
    commit: str
    published_at: str
    formats: dict[str, SharedFile]


class FileEntry(TypedDict):
    path: str
    sha256: str
    bytes: int


class ImageEntry(TypedDict, total=False):
    """One version in the `images` stack output: what `lookup`, the LaunchTemplate and downstream
    stacks read. Local builds have `dir` and `formats`; a cloud target adds `aws` (region -> AMI id)
    or `azure` ({gallery_image_version_id}); a native cloud build has no files."""

    version: str
    commit: str
    build_time: str
    upstream: dict[str, str]
    dir: str
    formats: dict[str, FileEntry]
    aws: dict[str, str]
    azure: dict[str, str]
    stage: str
    chain: list[dict[str, Any]]
    """The chain of custody: upstream, then each stage (name, version, commit, recipe, digests)."""
    sbom: FileEntry
    """The CycloneDX SBOM of the image's package set (imagefactory.packages)."""
    shared: SharedEntry
    """Where the version is in the shared S3 registry, when imagefactory:registry is s3://…"""


# --- a parent stage, re-verified before its child boots it ---------------------------------------


@dataclasses.dataclass(frozen=True)
class ParentRequest(Request):
    MODULE = "parent"
    registry: Path = arg("REGISTRY", doc="the top registry; the stage's own is <registry>/stages/<stage>")
    stage: str = arg("PARENT_STAGE")
    version: str = arg("PARENT_VERSION")
    child: str = arg("IMAGE_VERSION", doc="the version whose next stage boots the parent")


@dataclasses.dataclass(frozen=True)
class ParentResult(Result):
    path: str
    sha256: str
    source: str
    """<stage> <version>: what the child's stamp records as its upstream."""
    stage: str
    version: str
    chain: list[dict[str, Any]]
    """The parent's chain of custody, its own link naming the file the child boots."""


# --- native cloud builds and cloud uploads ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CloudBuildRequest(Request):
    MODULE = "build_cloud"
    target: str = arg("TARGET", choices=("aws", "azure"))
    version: str = arg("IMAGE_VERSION")
    commit: str = arg("IMAGE_COMMIT")
    source_dir: Path = arg("SOURCE_DIR")
    work_dir: Path = arg("WORK_DIR")
    build_epoch: int = arg("BUILD_EPOCH")
    upstream: str = arg("UPSTREAM", doc="the marketplace/source image the build starts from")
    variables: str = arg("PACKER_VARIABLES", doc="JSON object of Packer variables for the source")


@dataclasses.dataclass(frozen=True)
class AzureUploadRequest(Request):
    MODULE = "azure_upload"
    vhd_path: Path = arg("VHD_PATH", cli=False)
    vhd_sha256: str = arg("VHD_SHA256", cli=False)
    storage_account: str = arg("STORAGE_ACCOUNT", cli=False)
    container: str = arg("CONTAINER", cli=False)
    blob_name: str = arg("BLOB_NAME", cli=False)


@dataclasses.dataclass(frozen=True)
class AzureUploadResult(Result):
    url: str
    sha256: str
    uploaded: bool


@dataclasses.dataclass(frozen=True)
class LaunchRequest(Request):
    MODULE = "launch_local create"
    image_path: Path = arg("IMAGE_PATH", cli=False)
    image_sha256: str = arg("IMAGE_SHA256", cli=False)
    version: str = arg("IMAGE_VERSION", cli=False)
    vm_name: str = arg("VM_NAME", cli=False)
    state_dir: Path = arg("STATE_DIR", cli=False, default=Path(".state/vms"))
    accelerator: str = arg("ACCELERATOR", cli=False, default="auto", choices=("auto", "kvm", "tcg"))
    strategy: str | None = arg(
        "UPGRADE_STRATEGY",
        cli=False,
        default=None,
        doc="in-place: the VM gets its own full disk and moves between versions by `launch_local upgrade`; "
        "unset: replace (a copy-on-write overlay, replaced on a new version)",
    )
    shared_registry: str | None = arg(
        "SHARED_REGISTRY",
        cli=False,
        default=None,
        doc="s3://… registry (with its ?endpoint=…) to fetch the QCOW2 from when IMAGE_PATH is not on this "
        "machine: an application on another machine than the builder",
    )


ALL_REQUESTS: tuple[type[Request], ...] = (
    UpstreamRequest,
    SourcesRequest,
    BuildRequest,
    SealCheckRequest,
    FormatsRequest,
    PublishRequest,
    PushRequest,
    ParentRequest,
    CloudBuildRequest,
    AzureUploadRequest,
    LaunchRequest,
)
