"""Multi-stage images: which stages a stack declares, what each stage's recipe is, which
published parent a stage reuses, and the chain of custody every manifest carries.

A stack declares an ordered chain of stages (`imagefactory:stages`), for example

    base        the verified upstream + the hardening role     (ansible/base.yml)
    functional  base + baseline, the example service, release  (ansible/site.yml)

Each stage boots its parent's sealed, published output as its upstream; the first stage boots
the verified upstream. The last stage is the image the stack publishes under its version; every
stage below it is published in its own registry (`<registry>/stages/<name>`).

A stage's identity is its *key*: a digest of the upstream's configuration and of the recipe of
this stage and of every stage below it. Two versions whose base key is the same share one base:
it is built once (by the oldest such version) and every later version boots the published one.
A recipe is the stage's playbook, the roles it lists, ansible.cfg and the Packer templates,
hashed the way git hashes blobs, so a release tag and the working tree give the same digest for
the same files.

Pure logic: no Pulumi imports.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imagefactory.errors import FactoryError

STAGE_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
PLAYBOOK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.ya?ml")
# What every stage's recipe holds besides its playbook and roles.
COMMON_RECIPE = ("packer/", "ansible/ansible.cfg", "ansible/requirements.yml")
PARENT_FORMAT = "qcow2"
"""The format a parent stage is published in, and that its child boots."""


@dataclass(frozen=True)
class Stage:
    name: str
    playbook: str
    """File name under ansible/."""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "playbook": self.playbook}


DEFAULT_STAGES: tuple[Stage, ...] = (Stage("base", "base.yml"), Stage("functional", "site.yml"))


def validate_stages(value: Any) -> tuple[Stage, ...]:
    """imagefactory:stages: a non-empty list of {name, playbook}; names are unique."""
    example = "[{name: base, playbook: base.yml}, {name: functional, playbook: site.yml}]"
    if not isinstance(value, list) or not value:
        raise FactoryError(f"imagefactory:stages must be a non-empty list such as {example}; got {value!r}")
    stages = []
    for number, item in enumerate(value):
        where = f"imagefactory:stages[{number}]"
        if not isinstance(item, dict) or set(item) != {"name", "playbook"}:
            raise FactoryError(f"{where} is {item!r}; accepted: an object with exactly name and playbook")
        name, playbook = item["name"], item["playbook"]
        if not isinstance(name, str) or not STAGE_NAME.fullmatch(name):
            raise FactoryError(
                f"{where}.name is {name!r}; accepted: lower-case letters, digits and dashes, starting with a "
                "letter (at most 31)"
            )
        if not isinstance(playbook, str) or not PLAYBOOK_NAME.fullmatch(playbook):
            raise FactoryError(
                f"{where}.playbook is {playbook!r}; accepted: a file name under ansible/, such as site.yml"
            )
        stages.append(Stage(name, playbook))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise FactoryError(
            f"imagefactory:stages names a stage twice ({', '.join(names)}); give each stage its own name"
        )
    return tuple(stages)


# --- recipes --------------------------------------------------------------------------------------


def playbook_roles(text: str, playbook: str) -> list[str]:
    """The roles a playbook lists under `roles:` in its plays, in order."""
    try:
        plays = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FactoryError(f"ansible/{playbook} is not valid YAML: {exc}") from None
    if not isinstance(plays, list):
        raise FactoryError(f"ansible/{playbook} is not a playbook (a list of plays)")
    roles: list[str] = []
    for number, play in enumerate(plays):
        where = f"ansible/{playbook}, play {number + 1}"
        if not isinstance(play, dict) or "import_playbook" in play or "ansible.builtin.import_playbook" in play:
            raise FactoryError(
                f"{where} is not a play with roles; a stage's playbook lists its roles under `roles:` (its recipe, "
                "what decides when the stage is rebuilt, is the roles it lists)"
            )
        listed = play.get("roles") or []
        if not isinstance(listed, list):
            raise FactoryError(f"{where}: roles is {listed!r}; accepted: a list of role names")
        for role in listed:
            name = (
                role
                if isinstance(role, str)
                else role.get("role") or role.get("name")
                if isinstance(role, dict)
                else None
            )
            if not isinstance(name, str):
                raise FactoryError(f"{where}: {role!r} is not a role; accepted: a role name, or {{role: name}}")
            if name not in roles:
                roles.append(name)
    return roles


def recipe_paths(stage: Stage, roles: Iterable[str]) -> tuple[str, ...]:
    """The files (or folders, ending in /) of a stage's recipe, relative to the source tree."""
    return (*COMMON_RECIPE, f"ansible/{stage.playbook}", *(f"ansible/roles/{role}/" for role in roles))


def blob_id(content: bytes) -> str:
    """The id git gives a blob: the same for a file of a tag and of the working tree."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


def _digest(entries: Iterable[tuple[str, str, str]], stage: Stage) -> str:
    digest = hashlib.sha256(f"stage {stage.name} {stage.playbook}\n".encode())
    for path, mode, blob in sorted(entries):
        digest.update(f"{path}\0{mode}\0{blob}\n".encode())
    return "sha256:" + digest.hexdigest()


def _selected(path: str, wanted: tuple[str, ...]) -> bool:
    return any(path.startswith(w) if w.endswith("/") else path == w for w in wanted)


SKIP_PARTS = {".ansible", "__pycache__", ".pytest_cache"}


def working_tree_recipe(root: Path, stage: Stage) -> str:
    """The recipe digest of a stage in a checkout (development versions)."""
    playbook = root / "ansible" / stage.playbook
    if not playbook.is_file():
        raise FactoryError(f"stage {stage.name}: ansible/{stage.playbook} does not exist in {root.name}/")
    wanted = recipe_paths(stage, playbook_roles(playbook.read_text(), stage.playbook))
    entries = []
    for top in ("packer", "ansible"):
        for path in (root / top).rglob("*"):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and not SKIP_PARTS.intersection(path.parts) and _selected(rel, wanted):
                mode = "100755" if path.stat().st_mode & 0o111 else "100644"
                entries.append((rel, mode, blob_id(path.read_bytes())))
    return _digest(entries, stage)


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FactoryError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def commit_recipe(repo: Path, commit: str, stage: Stage, version: str) -> str:
    """The recipe digest of a stage in the tree of a release's commit."""
    try:
        text = _git(repo, "show", f"{commit}:ansible/{stage.playbook}")
    except FactoryError:
        raise FactoryError(
            f"{version} (commit {commit[:12]}) has no ansible/{stage.playbook}, the playbook of stage "
            f"{stage.name}: a release is built wholly from its tag; list only tags made since the stage existed "
            "in imagefactory:releases"
        ) from None
    wanted = recipe_paths(stage, playbook_roles(text, stage.playbook))
    entries = []
    for line in _git(repo, "ls-tree", "-r", "--full-tree", commit, "--", "packer", "ansible").splitlines():
        meta, path = line.split("\t", 1)
        mode, kind, blob = meta.split()
        if kind == "blob" and _selected(path, wanted) and not SKIP_PARTS.intersection(path.split("/")):
            entries.append((path, "100755" if mode == "100755" else "100644", blob))
    return _digest(entries, stage)


def upstream_key(url: str, checksum: str, fallback: str, stage0_recipe: str) -> str:
    """What decides the upstream, as configured: its URL and checksum, and the stage-0 recipe that
    stands in for it when it cannot be fetched."""
    text = json.dumps([url, checksum, fallback, stage0_recipe if fallback == "stage0" else ""])
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def stage_keys(upstream: str, stages: tuple[Stage, ...], recipes: list[str]) -> list[str]:
    """The key of each stage: its recipe and everything below it."""
    keys, chain = [], [upstream]
    for stage, recipe in zip(stages, recipes, strict=True):
        chain.append(f"{stage.name}={recipe}")
        keys.append("sha256:" + hashlib.sha256("\n".join(chain).encode()).hexdigest())
    return keys


# --- planning: who builds each parent stage -----------------------------------------------------


def stage_registry(registry: Path, stage: str) -> Path:
    return registry / "stages" / stage


@dataclass(frozen=True)
class StagePlan:
    stage: Stage
    key: str
    recipe: str
    version: str
    """The version whose build of this stage is used: the stage's own version name."""
    builds: bool
    """True when this program builds it (it is not published yet, or this version published it)."""
    published: bool
    """True when the registry already holds it."""


def describe_plan(version: str, plan: StagePlan) -> str:
    """One line of a preview: what happens to one parent stage of a planned version."""
    stage = f"{plan.stage.name} {plan.version}"
    if plan.builds and plan.published:
        return f"{version}: stage {stage} is published (built with this version); nothing to build"
    if plan.builds:
        return f"{version}: stage {stage} builds"
    where = "published" if plan.published else "built in this run"
    return f"{version}: stage {stage} is reused ({where})"


def find_published(index: Mapping[str, Any], key: str) -> str | None:
    """The published version of a stage with this key, the oldest first."""
    versions = index.get("versions", {})
    found = [(entry.get("published_at", ""), name) for name, entry in versions.items() if entry.get("stage_key") == key]
    return min(found)[1] if found else None


def plan_parents(
    versions: list[str],
    stages: tuple[Stage, ...],
    keys: Mapping[str, list[str]],
    recipes: Mapping[str, list[str]],
    read_index: Callable[[str], Mapping[str, Any]],
    pinned: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, list[StagePlan]]:
    """For every version (in plan order), the plan of each stage below the top one.

    A version already published keeps the parents its manifest's chain names (`pinned`), so the
    plan of a release never changes. Otherwise a parent stage is reused when the registry holds
    one with the same key, or else the first planned version with that key builds it and the
    later ones boot what it publishes."""
    plans: dict[str, list[StagePlan]] = {}
    builders: dict[tuple[str, str], str] = {}
    for version in versions:
        plans[version] = []
        for number, stage in enumerate(stages[:-1]):
            key = keys[version][number]
            index = read_index(stage.name)
            published = (pinned or {}).get(version, {}).get(stage.name) or find_published(index, key)
            if published and published not in index.get("versions", {}) and published != version:
                raise FactoryError(
                    f"{version} was built on {stage.name} {published}, which is no longer published; its "
                    f"chain cannot be proven (make ancestry VERSION={version})"
                )
            owner = published or builders.setdefault((stage.name, key), version)
            recipe = recipes[version][number]
            plans[version].append(StagePlan(stage, key, recipe, owner, owner == version, bool(published)))
    return plans


# --- the chain of custody -------------------------------------------------------------------------


def upstream_link(source: str, sha256: str, via: str) -> dict[str, str]:
    verified = {
        "stage0": "built here from Debian's packages by the stage-0 recipe, checked against its SHA256SUMS",
        "download": "downloaded and checked against the configured checksum",
        "path": "read from the configured path and checked against the configured checksum",
    }.get(via, via)
    return {"stage": "upstream", "source": source, "sha256": sha256, "verified": verified}


def stage_link(name: str, manifest: Mapping[str, Any], file_format: str | None) -> dict[str, Any]:
    """One stage of a chain, from that stage's manifest."""
    link: dict[str, Any] = {
        "stage": name,
        "version": manifest["version"],
        "commit": manifest["commit"],
        "recipe": manifest.get("recipe", ""),
        "sealed_raw_sha256": manifest["sealed_raw_sha256"],
    }
    if file_format:
        item = manifest["formats"][file_format]
        link["file"] = {"format": file_format, "name": item["file"], "sha256": item["sha256"]}
    return link


def format_chain(chain: list[Mapping[str, Any]]) -> list[str]:
    lines = []
    for link in chain:
        if link["stage"] == "upstream":
            lines.append(f"upstream    {link['source']}  sha256:{link['sha256'][:16]}…  ({link['verified']})")
            continue
        line = (
            f"{link['stage']:<11} {link['version']}  commit {link['commit'][:12]}  recipe {link['recipe'][7:23]}…  "
            f"sealed RAW sha256:{link['sealed_raw_sha256'][:16]}…"
        )
        if "file" in link:
            line += f"  published {link['file']['name']} sha256:{link['file']['sha256'][:16]}…"
        lines.append(line)
    return lines


def outdated(chain: list[Mapping[str, Any]], latest: Callable[[str], str | None], top: str) -> list[str]:
    """HCP Packer's ancestry status, from the manifests: for each parent stage of the chain, a line
    when its registry holds a newer version than the one this image was built on."""
    notes = []
    for link in chain[1:-1]:
        newest = latest(link["stage"])
        if is_newer(newest, link["version"]):
            notes.append(
                f"{chain[-1]['stage']} {top} is built on {link['stage']} {link['version']}; "
                f"{link['stage']} {newest} is newer"
            )
    return notes


def release_key(name: str) -> tuple | None:
    """Sort key of a release version by semver precedence (X.Y.Z; a pre-release before its release,
    pre-release fields compared one by one, numbers as numbers: rc.2 < rc.10); None for dev."""
    match = RELEASE_NUMBERS.search(name)
    if not match or name.startswith("dev-"):
        return None
    fields = match[4].split(".") if match[4] else []
    pre = tuple((0, int(f), "") if f.isdigit() else (1, 0, f) for f in fields)
    return (int(match[1]), int(match[2]), int(match[3]), match[4] is None, pre)


def newest_published(index: Mapping[str, Any]) -> str | None:
    """The newest release of a stage, by version (development versions never count as newer)."""
    found = [(key, name) for name in index.get("versions", {}) if (key := release_key(name)) is not None]
    return max(found)[1] if found else None


def is_newer(candidate: str | None, than: str) -> bool:
    """A release newer than `than` (a development parent is never outdated: it has no order)."""
    mine, theirs = release_key(than), release_key(candidate or "")
    return mine is not None and theirs is not None and theirs > mine


RELEASE_NUMBERS = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-([0-9A-Za-z.-]+))?$")


def pinned_parents(top_index: Mapping[str, Any], read_manifest: Callable[[str], Mapping[str, Any]]) -> dict:
    """The parents each published version was built on, by stage, from its manifest's chain."""
    pinned: dict[str, dict[str, str]] = {}
    for version in top_index.get("versions", {}):
        chain = read_manifest(version).get("chain", [])
        pinned[version] = {link["stage"]: link["version"] for link in chain[1:-1] if "version" in link}
    return pinned


# --- one version's chain, planned before anything runs ------------------------------------------


@dataclass(frozen=True)
class VersionChain:
    recipes: list[str]
    """Each stage's recipe digest, bottom first."""
    keys: list[str]
    parents: list[StagePlan]
    """The plan of every stage below the top one."""


def plan_chains(
    root: Path,
    versions: list[Any],
    stages: tuple[Stage, ...],
    upstream: str,
    read_index: Callable[[str], Mapping[str, Any]],
    pinned: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, VersionChain]:
    """Each planned version's chain (versions.Version objects, oldest first): the recipes from the
    release's commit, or from the working tree for a development version."""
    recipes = {
        v.name: [
            commit_recipe(root, v.commit, stage, v.name) if v.is_release else working_tree_recipe(root, stage)
            for stage in stages
        ]
        for v in versions
    }
    keys = {name: stage_keys(upstream, stages, found) for name, found in recipes.items()}
    parents = plan_parents([v.name for v in versions], stages, keys, recipes, read_index, pinned)
    return {name: VersionChain(recipes[name], keys[name], parents[name]) for name in recipes}


def outdated_parents(
    chains: Mapping[str, VersionChain], top: str, read_index: Callable[[str], Mapping[str, Any]]
) -> list[str]:
    """For a preview: each planned version built on a parent stage that has a newer published version."""
    notes = []
    for version, chain in chains.items():
        for plan in chain.parents:
            newest = newest_published(read_index(plan.stage.name))
            if plan.published and is_newer(newest, plan.version):
                stage = plan.stage.name
                notes.append(f"{top} {version} is built on {stage} {plan.version}; {stage} {newest} is newer")
    return notes
