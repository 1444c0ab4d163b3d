"""Image versions: release tags and development versions, derived from git.

A release is a git tag ``release-X.Y.Z`` (strict semver, the prefix is configurable). A
development build of the working tree is ``dev-<short-sha>`` or ``dev-<short-sha>-dirty``
and can never take a release name.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from imagefactory.errors import FactoryError

_NUM = r"(0|[1-9]\d*)"
_PRE_ID = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
SEMVER = rf"{_NUM}\.{_NUM}\.{_NUM}(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?"
DEV_VERSION = re.compile(r"^dev-[0-9a-f]{7,40}(-dirty)?$")
DEFAULT_TAG_PREFIX = "release-"
TAG_PREFIX = re.compile(r"^[A-Za-z0-9._-]*$")
"""What a tag prefix may hold: the version names folders and files, so no slash."""
ANY_RELEASE = re.compile(rf"^[A-Za-z0-9._-]*?{SEMVER}$")
"""A release name under any valid prefix: what a step checks, knowing no stack's prefix."""


@dataclass(frozen=True)
class Version:
    """A resolved image version and where its source comes from."""

    name: str
    """``release-1.2.3`` or ``dev-<sha>[-dirty]``."""
    commit: str
    """Full git commit the image is built from."""
    is_release: bool
    """True when the build must come from the tree of the tag, never the working tree."""
    commit_time: int
    """Commit time (seconds since the epoch): the build's SOURCE_DATE_EPOCH."""

    @property
    def semver(self) -> str:
        """``X.Y.Z`` of a release (Azure gallery versions take this form); empty for dev builds."""
        match = re.search(SEMVER + "$", self.name)
        return match.group(0) if self.is_release and match else ""


def iso_time(epoch: int) -> str:
    """A commit time as the stamp every artifact carries (BUILD_TIME), e.g. 2025-01-01T00:00:00Z."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_release_tag(tag: str, prefix: str = DEFAULT_TAG_PREFIX) -> tuple[int, int, int, str]:
    """Split ``release-X.Y.Z[-pre]`` into its parts, or explain what a release tag looks like."""
    match = re.fullmatch(re.escape(prefix) + SEMVER, tag)
    if not match:
        raise FactoryError(
            f"version {tag!r} is not a release tag: expected {prefix}X.Y.Z with X, Y, Z whole numbers "
            f"without leading zeros (for example {prefix}0.1.0)"
        )
    major, minor, patch, pre = match.groups()
    return int(major), int(minor), int(patch), pre or ""


def is_release_name(name: str, prefix: str = DEFAULT_TAG_PREFIX) -> bool:
    try:
        parse_release_tag(name, prefix)
    except FactoryError:
        return False
    return True


def validate_version_name(name: str, prefix: str | None = None) -> str:
    """Accept a release tag (under `prefix`, or any valid prefix when None) or a dev version;
    anything else is refused with the accepted forms."""
    release = is_release_name(name, prefix) if prefix is not None else bool(ANY_RELEASE.fullmatch(name))
    if release or DEV_VERSION.fullmatch(name):
        return name
    prefix = DEFAULT_TAG_PREFIX if prefix is None else prefix
    raise FactoryError(
        f"version {name!r} is not accepted: use a release tag {prefix}X.Y.Z (strict semver) "
        "or a development version dev-<short-sha> / dev-<short-sha>-dirty"
    )


def _git(repo: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise FactoryError("git is not installed; it is needed to derive the image version") from exc
    except subprocess.CalledProcessError as exc:
        raise FactoryError(f"git {' '.join(args)} failed in {repo}: {exc.stderr.strip()}") from exc
    return out.stdout.strip()


def tag_commit(repo: Path, tag: str) -> str:
    """The commit a tag points to (peeled through annotated tags)."""
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}")
    except FactoryError as exc:
        raise FactoryError(f"release tag {tag!r} does not exist in {repo}; create it with git tag {tag}") from exc


def file_at(repo: Path, commit: str, path: str) -> str | None:
    """The text of `path` in the tree of `commit`, or None when that tree has no such file."""
    out = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{path}"], capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else None


def commit_time(repo: Path, commit: str) -> int:
    return int(_git(repo, "show", "-s", "--format=%ct", commit))


def resolve(repo: Path, requested: str = "", prefix: str = DEFAULT_TAG_PREFIX) -> Version:
    """Resolve the version to build.

    - ``requested`` is a release tag: it must exist; the build uses the tag's commit.
    - ``requested`` is empty: a release tag at a clean HEAD wins, else ``dev-<sha>[-dirty]``.
    - ``requested`` is a dev version: it must match the working tree it claims to be.
    """
    if requested and is_release_name(requested, prefix):
        commit = tag_commit(repo, requested)
        return Version(requested, commit, True, commit_time(repo, commit))
    if requested and not DEV_VERSION.fullmatch(requested):
        validate_version_name(requested, prefix)
    head = _git(repo, "rev-parse", "HEAD")
    # Stack files are not image inputs, and `pulumi stack init` writes its salt into them.
    dirty = bool(_git(repo, "status", "--porcelain", "--untracked-files=normal", "--", ".", ":(exclude)stacks"))
    if not requested and not dirty:
        tags = [t for t in _git(repo, "tag", "--points-at", "HEAD").split() if is_release_name(t, prefix)]
        if tags:
            tag = max(tags, key=lambda t: parse_release_tag(t, prefix))
            return Version(tag, head, True, commit_time(repo, head))
    name = f"dev-{head[:12]}" + ("-dirty" if dirty else "")
    if requested and requested != name:
        raise FactoryError(
            f"version {requested!r} does not describe this working tree, which is {name!r}; "
            "leave the version empty to build the working tree, or give a release tag"
        )
    return Version(name, head, False, commit_time(repo, head))


def plan(
    repo: Path, releases: tuple[str, ...], build_working_tree: bool, prefix: str = DEFAULT_TAG_PREFIX
) -> list[Version]:
    """Every version the stack holds: each configured release tag, then the working tree."""
    versions = [resolve(repo, tag, prefix) for tag in releases]
    if build_working_tree:
        current = resolve(repo, "", prefix)
        if current.name not in {v.name for v in versions}:
            versions.append(current)
    if not versions:
        raise FactoryError(
            "nothing to build: imagefactory:releases is empty and imagefactory:buildWorkingTree is false"
        )
    return versions
