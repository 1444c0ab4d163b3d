"""Rebuild a published release from its tag and its recorded packages (none from the network), and
prove that the result is bit-identical to the registry's copy.

    python -m imagefactory.rebuild --version release-0.1.0 [--stage base] [--registry .state/registry]
        [--upstream reuse|rebuild] [--report FILE]

The release's tag is exported to a temporary tree and the rebuild runs that tree's own code, so
the recipe, the re-master and the conversions are the tag's. What the stage boots is what the
release recorded: its parent stage from the registry, or the stage-0 image with the recorded
digest (found in the cache, or with `--upstream rebuild` built again by the tag's stage-0
recipe from the recorded packages). apt in the build VM, and mmdebstrap for stage-0, read a
local repository that holds exactly the recorded package set, served from the user's package
cache (imagefactory.aptrepo); a recorded package that is missing there is named, and nothing is
built. The exit code is 0 only when every published artifact of the stage has the recorded
SHA-256.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from imagefactory import host, packages, stages
from imagefactory.checksums import file_digest
from imagefactory.errors import FactoryError
from imagefactory.files import write_atomic

STACK_FILE = "stacks/Pulumi.{stack}.yaml"


def manifest_dir(registry: Path, version: str, stage: str | None) -> Path:
    """Where a published version (of the top stage, or of a parent stage) keeps its files."""
    folder = (stages.stage_registry(registry, stage) if stage else registry) / version
    if not (folder / "manifest.json").is_file():
        where = f"stage {stage!r} of {registry}" if stage else str(registry)
        raise FactoryError(f"{version} is not published in {where}; `make versions` lists what is")
    return folder


def playbook_of(tree: Path, stack: str, stage: str) -> str:
    """The stage's playbook at the tag: from the stack's imagefactory:stages, else the default chain."""
    import yaml

    declared: Any = None
    config = tree / STACK_FILE.format(stack=stack)
    if config.is_file():
        declared = (yaml.safe_load(config.read_text()) or {}).get("config", {}).get("imagefactory:stages")
    chain = stages.validate_stages(declared) if declared else stages.DEFAULT_STAGES
    for item in chain:
        if item.name == stage:
            return item.playbook
    raise FactoryError(f"the tag's stack {stack} declares no stage {stage!r}; its stages: {[s.name for s in chain]}")


def epoch_of(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def find_stage0(cache: Path, sha256: str) -> Path | None:
    """A stage-0 image in the cache with this digest (whatever recipe folder holds it)."""
    from imagefactory.checksums import parse_sums
    from imagefactory.upstream import STAGE0_IMAGE

    for sums in sorted((cache / "upstream").glob("stage0-*/SHA256SUMS")):
        try:
            listed = parse_sums(sums.read_text()).get(STAGE0_IMAGE)
        except FactoryError:
            continue
        image = sums.parent / STAGE0_IMAGE
        if listed == ("sha256", sha256) and image.is_file() and file_digest(image) == sha256:
            return image
    return None


def rebuild_stage0(
    tree: Path,
    recorded: list[packages.Package],
    sha256: str,
    cache: Path,
    work: Path,
    recipe: str | None = None,
    missing_list: Path | None = None,
) -> Path:
    """Build the stage-0 image again with the tag's recipe (checked against `recipe`, the digest
    the release recorded), from the recorded packages only."""
    from imagefactory import aptrepo, upstream

    script, record = upstream.stage0_files(tree)
    if recipe is not None:
        actual = upstream.stage0_recipe_digest(tree)
        if actual != recipe:
            raise FactoryError(
                f"the stage-0 image was built by recipe {recipe}, and the tag's tree holds recipe {actual}: "
                "it was built from another checkout, so the tag cannot build it again"
            )
    repo = work / "stage0-repo"
    counts = aptrepo.write_repo(
        repo,
        recorded,
        [],
        cache,
        "the stage-0 image",
        "bookworm",
        missing_list,  # the recipe's suite
    )
    print(f"rebuild: stage-0 from {counts['entries']} recorded packages, with no network", file=sys.stderr)
    out = work / "stage0"
    with aptrepo.serve(repo) as server:
        upstream.run_stage0(script, record, out, cache, f"http://127.0.0.1:{server.port}/")
    image = out / upstream.STAGE0_IMAGE
    actual = file_digest(image)
    again = packages.parse((out / packages.TSV_NAME).read_text())
    if again != sorted(recorded):
        changes = packages.format_diff(packages.diff(sorted(recorded), again), "recorded", "rebuilt")
        raise FactoryError(
            "the stage-0 image rebuilt from the recorded packages has another package set:\n  " + "\n  ".join(changes)
        )
    if actual != sha256:
        raise FactoryError(
            f"the stage-0 image rebuilt from the recorded packages is sha256:{actual}; the release recorded "
            f"sha256:{sha256}"
        )
    keep = cache / "upstream" / f"stage0-rebuilt-{sha256[:16]}"
    if not keep.exists():
        tmp = keep.with_name(keep.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(out, tmp)
        tmp.replace(keep)
    print(f"rebuild: the stage-0 image is bit-identical to the recorded one (sha256:{sha256[:16]}…)", file=sys.stderr)
    return keep / upstream.STAGE0_IMAGE


def input_image(
    manifest: dict[str, Any],
    folder: Path,
    registry: Path,
    tree: Path,
    cache: Path,
    work: Path,
    upstream_mode: str,
    missing: Path | None = None,
) -> tuple[Path, list[packages.Package]]:
    """What the stage boots, checked against the recorded digest, and the package set it holds."""
    source, sha256 = manifest["upstream"]["source"], manifest["upstream"]["sha256"]
    if source.startswith("stage0:"):
        listed = manifest["upstream"].get("packages")
        if not listed:
            raise FactoryError(
                f"{manifest['version']} recorded no package set for its stage-0 image (it was built before "
                "releases kept their packages); it cannot be rebuilt offline"
            )
        recorded = packages.parse((folder / listed).read_text(), str(folder / listed))
        image = None if upstream_mode == "rebuild" else find_stage0(cache, sha256)
        if image is None:
            image = rebuild_stage0(tree, recorded, sha256, cache, work, source.removeprefix("stage0:"), missing)
        else:
            print(f"rebuild: the stage-0 image sha256:{sha256[:16]}… is in the cache ({image})", file=sys.stderr)
        return image, recorded
    parent_stage, _, parent_version = source.partition(" ")
    if parent_version and stages.STAGE_NAME.fullmatch(parent_stage) and "/" not in source:
        parent = manifest_dir(registry, parent_version, parent_stage)
        entry = json.loads((parent / "manifest.json").read_text())["formats"][stages.PARENT_FORMAT]
        image = parent / entry["file"]
        if not image.is_file() or file_digest(image) != sha256:
            raise FactoryError(f"the published parent {image} does not have the recorded digest sha256:{sha256}")
        return image, packages.published(stages.stage_registry(registry, parent_stage), parent_version)
    raise FactoryError(
        f"{manifest['version']} was built on a downloaded upstream ({source}), whose own package set is not "
        "recorded; a rebuild needs a stage-0 upstream or a published parent stage"
    )


def compare(manifest: dict[str, Any], produced: dict[str, dict[str, Any]], raw_sha256: str) -> list[dict[str, Any]]:
    rows = [{"artifact": "sealed raw", "recorded": manifest["sealed_raw_sha256"], "rebuilt": raw_sha256}]
    for fmt, entry in sorted(manifest["formats"].items()):
        rows.append({"artifact": fmt, "recorded": entry["sha256"], "rebuilt": produced.get(fmt, {}).get("sha256")})
    for row in rows:
        row["identical"] = row["recorded"] == row["rebuilt"]
    return rows


def inner(args: argparse.Namespace) -> dict[str, Any]:
    """Runs inside the tag's exported tree: everything that shapes the bytes is the tag's code."""
    from imagefactory import aptrepo, build, formats
    from imagefactory.steps import BuildRequest

    registry, tree, work, cache = args.registry, args.tree, args.work, args.cache
    folder = manifest_dir(registry, args.version, args.stage)
    manifest = json.loads((folder / "manifest.json").read_text())
    stage = manifest.get("stage") or ""
    missing = args.report.with_name("rebuild-missing.txt")
    missing.unlink(missing_ok=True)
    image, before = input_image(manifest, folder, registry, tree, cache, work, args.upstream, missing)
    recorded = packages.published(folder.parent, args.version)
    repo = work / "repo"
    counts = aptrepo.write_repo(repo, recorded, before, cache, args.version, missing_list=missing)
    print(
        f"rebuild: {args.version}{f' ({stage})' if stage else ''} with apt reading only a local repository of "
        f"{counts['entries']} recorded packages ({counts['debs']} to install)",
        file=sys.stderr,
    )
    playbook = playbook_of(tree, args.stack, stage) if stage else "site.yml"
    recipe = manifest.get("recipe", "")
    if recipe and stage and stages.working_tree_recipe(tree, stages.Stage(stage, playbook)) != recipe:
        raise FactoryError(
            f"the tag's stage {stage!r} (ansible/{playbook} of stack {args.stack}) is not the recipe the release "
            f"recorded ({recipe}); name the stack it was released with: make rebuild STACK=…"
        )
    epoch = epoch_of(manifest["build_time"])
    request = BuildRequest(
        version=args.version,
        commit=manifest["commit"],
        build_epoch=epoch,
        source_dir=tree,
        upstream_path=str(image),
        upstream_sha256=manifest["upstream"]["sha256"],
        upstream_source=manifest["upstream"]["source"],
        work_dir=work / "build",
        disk_size_mib=int(manifest["disk_size_mib"]),
        playbook=playbook,
        stage=stage,
    )
    facts = host.read(Path(os.environ.get("IMAGEFACTORY_PROJECT", ".")))  # the user's accelerator and timeout
    served: list[str] = []
    built = build.build(
        request, facts.accelerator, facts.build_timeout_minutes, cache, apt_repository=repo, served=served
    )
    ova = manifest["formats"].get("ova", {}).get("manifest_digest", "sha256")
    produced = formats.produce(
        Path(built.raw), work / "formats", manifest["name"], args.version, list(manifest["formats"]), epoch, ova
    )
    rows = compare(manifest, produced, built.sha256)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        (work / "formats").replace(args.keep / "formats")
    return {
        "version": args.version,
        "stage": stage,
        "commit": manifest["commit"],
        "upstream": manifest["upstream"],
        "packages": {
            "recorded": len(recorded),
            "index_entries": counts["entries"],
            "to_install": counts["debs"],
            "downloaded": sorted(line.split()[1] for line in served if line.startswith("GET /pool/")),
        },
        "artifacts": rows,
        "formats": {
            fmt: {**entry, "path": str(args.keep / "formats" / entry["file"])} for fmt, entry in produced.items()
        }
        if args.keep
        else {},
        "bit_identical": all(row["identical"] for row in rows),
    }


def tag_commit(project: Path, version: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(project), "rev-parse", "--verify", "--quiet", f"refs/tags/{version}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise FactoryError(f"{version} is not a tag of {project}; accepted: a release tag, e.g. release-0.1.0")
    return result.stdout.strip()


def outer(args: argparse.Namespace) -> int:
    """Export the tag, then run the tag's own rebuild inside that tree."""
    project = Path.cwd()
    registry = args.registry.resolve()
    folder = manifest_dir(registry, args.version, args.stage)
    recorded = json.loads((folder / "manifest.json").read_text())["commit"]
    commit = tag_commit(project, args.version)
    if commit != recorded:
        raise FactoryError(
            f"the tag {args.version} points at {commit[:12]}, the release was built from {recorded[:12]}"
        )
    if args.keep and args.keep.exists():
        raise FactoryError(f"KEEP folder {args.keep} exists; accepted: a folder that does not exist yet")
    args.report.unlink(missing_ok=True)  # a failed rebuild leaves no verdict of an earlier one
    (project / ".state").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rebuild-", dir=project / ".state") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(project), "archive", commit], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        if not (tree / "imagefactory" / "rebuild.py").is_file():
            raise FactoryError(f"{args.version} was released before rebuilds existed; it cannot be rebuilt offline")
        command = [
            sys.executable, "-m", "imagefactory.rebuild", "--inner",
            "--version", args.version, "--registry", str(registry), "--tree", str(tree),
            "--work", str(Path(tmp) / "work"), "--cache", str(args.cache.resolve()), "--upstream", args.upstream,
            "--stack", args.stack, "--report", str(args.report.resolve()),
        ]  # fmt: skip
        if args.keep:
            command += ["--keep", str(args.keep.resolve())]
        if args.stage:
            command += ["--stage", args.stage]
        env = {**os.environ, "PYTHONPATH": str(tree), "IMAGEFACTORY_PROJECT": str(project)}
        if env.get("IMAGEFACTORY_PACKAGES"):
            env["IMAGEFACTORY_PACKAGES"] = str(Path(env["IMAGEFACTORY_PACKAGES"]).resolve())
        return subprocess.run(command, cwd=tree, env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=False, default="")
    parser.add_argument("--stage", default="", help="a parent stage's name (default: the published image)")
    parser.add_argument("--registry", type=Path, default=Path(".state/registry"))
    parser.add_argument("--stack", default="local")
    parser.add_argument(
        "--upstream", default="reuse", help="reuse (a cached stage-0 with the recorded digest) or rebuild"
    )
    parser.add_argument("--report", type=Path, default=Path(".state/rebuild.json"))
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--keep", type=Path, help="keep the rebuilt files in this folder")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.cache = args.cache or host.cache_dir()
    try:
        if not args.version:
            raise FactoryError("VERSION is required: make rebuild VERSION=release-0.1.0")
        if args.upstream not in ("reuse", "rebuild"):
            raise FactoryError(f"UPSTREAM is {args.upstream!r}; accepted: reuse, rebuild")
        if not args.inner:
            return outer(args)
        report = inner(args)
    except FactoryError as exc:
        print(f"rebuild: {exc}", file=sys.stderr)
        return 1
    args.report.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.report, json.dumps(report, indent=2) + "\n")
    for row in report["artifacts"]:
        mark = "identical" if row["identical"] else f"DIFFERENT (rebuilt sha256:{row['rebuilt']})"
        print(f"rebuild: {row['artifact']:<11} sha256:{row['recorded'][:16]}… {mark}")
    verdict = "bit-identical to the registry's copy" if report["bit_identical"] else "NOT bit-identical"
    what = f"{args.version} ({report['stage']})" if report["stage"] else args.version
    print(f"rebuild: {what}: {verdict}; report: {args.report}")
    return 0 if report["bit_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
