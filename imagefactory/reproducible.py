"""Reproducibility check: build one version twice, in separate folders, and compare in layers.

    python -m imagefactory.reproducible [--report bench/results/reproducibility.json]

Layers, coarse to fine: (1) the SHA-256 of every artifact, (2) the partition table, (3) the
SHA-256 of each partition, (4) the root filesystem's superblock (dumpe2fs -h), (5) a file
manifest read offline from each image: path, type, mode, owner, size, content digest, link
target and extended attributes. When every artifact is bit-identical, layer 1 answers everything
and the finer layers are skipped; otherwise each finer layer is compared to locate what differs.
Every file difference is classified as allowed (by an entry of ALLOWLIST, each with its reason)
or not; any difference that is not allowed fails the check.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from imagefactory import build, files, formats, fstree, gpt, host, upstream, versions
from imagefactory.debugfs import Filesystem
from imagefactory.errors import FactoryError
from imagefactory.remaster import superblock

# (path pattern, field or "*", reason). Keep it short: each entry is a promise we could not keep.
ALLOWLIST: list[tuple[str, str, str]] = []

SUPERBLOCK_ALLOWED: dict[str, str] = {}


def _range_digest(path: Path, offset: int, length: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(offset)
        remaining = length
        while remaining:
            chunk = handle.read(min(remaining, 4 * 1024 * 1024))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def file_manifest(raw: Path, work: Path) -> tuple[dict[str, dict[str, object]], dict[str, dict[str, str]]]:
    """Every path of the root filesystem with all of its metadata but times, and (from the same
    scan) every path's inode times, read offline."""
    fs = Filesystem(raw, gpt.root_partition(raw).offset)
    nodes = fstree.manifest(fs, work)
    return {path: node.describe() for path, node in nodes.items()}, fstree.times(fs, nodes)


def allowed(path: str, field: str) -> str | None:
    for pattern, allowed_field, reason in ALLOWLIST:
        if fnmatch.fnmatch(path, pattern) and allowed_field in ("*", field):
            return reason
    return None


def _difference(layer: int, path: str, field: str, left: object, right: object) -> dict[str, object]:
    reason = allowed(path, field)
    return {
        "layer": layer,
        "path": path,
        "field": field,
        "a": left,
        "b": right,
        "allowed": reason is not None,
        "reason": reason,
    }


def _field_differences(layer: int, path: str, a: dict, b: dict) -> list[dict[str, object]]:
    """One path's fields that differ between two builds."""
    return [
        _difference(layer, path, field, a.get(field), b.get(field))
        for field in sorted(set(a) | set(b))
        if a.get(field) != b.get(field)
    ]


def compare_manifests(a: dict[str, dict], b: dict[str, dict]) -> list[dict[str, object]]:
    diffs = []
    for path in sorted(set(a) | set(b)):
        if path not in a or path not in b:
            diffs.append(_difference(5, path, "presence", path in a, path in b))
        else:
            diffs += _field_differences(5, path, a[path], b[path])
    return diffs


def compare(run_a: dict, run_b: dict, work: Path) -> dict[str, Any]:
    """Compare two builds layer by layer; each run is {"raw": path, "formats": {fmt: entry}, "dir": path}."""
    layers: list[dict[str, object]] = []
    raw_a, raw_b = Path(run_a["raw"]), Path(run_b["raw"])
    artifacts = {
        fmt: {"a": run_a["formats"][fmt]["sha256"], "b": run_b["formats"][fmt]["sha256"]} for fmt in run_a["formats"]
    }
    identical = [f for f, d in artifacts.items() if d["a"] == d["b"]]
    layers.append(
        {
            "layer": 1,
            "name": "artifact sha256",
            "identical": len(identical) == len(artifacts),
            "bit_identical": identical,
            "different": sorted(set(artifacts) - set(identical)),
            "digests": artifacts,
        }
    )
    diffs: list[dict[str, object]] = []
    if not layers[0]["identical"]:
        parts_a, parts_b = gpt.read_partitions(raw_a), gpt.read_partitions(raw_b)
        table_equal = parts_a == parts_b and _range_digest(raw_a, 0, 34 * 512) == _range_digest(raw_b, 0, 34 * 512)
        layers.append({"layer": 2, "name": "partition table", "identical": table_equal})
        root_a, root_b = gpt.root_partition(raw_a), gpt.root_partition(raw_b)
        part_digests = [
            {
                "partition": p.number,
                "name": p.name,
                "root": p.number == root_a.number,
                "a": _range_digest(raw_a, p.offset, p.size),
                "b": _range_digest(raw_b, q.offset, q.size),
            }
            for p, q in zip(parts_a, parts_b, strict=False)
        ]
        layers.append(
            {
                "layer": 3,
                "name": "partition sha256",
                "identical": all(d["a"] == d["b"] for d in part_digests),
                "partitions": part_digests,
            }
        )
        sb_a = superblock(f"{raw_a}?offset={root_a.offset}")
        sb_b = superblock(f"{raw_b}?offset={root_b.offset}")
        sb_diff = {
            k: {
                "a": sb_a.get(k),
                "b": sb_b.get(k),
                "allowed": k in SUPERBLOCK_ALLOWED,
                "reason": SUPERBLOCK_ALLOWED.get(k),
            }
            for k in sorted(set(sb_a) | set(sb_b))
            if sb_a.get(k) != sb_b.get(k)
        }
        layers.append({"layer": 4, "name": "superblock", "identical": not sb_diff, "differences": sb_diff})
        manifest_a, times_a = file_manifest(raw_a, work / "a")
        manifest_b, times_b = file_manifest(raw_b, work / "b")
        diffs = compare_manifests(manifest_a, manifest_b)
        layers.append(
            {
                "layer": 5,
                "name": "file manifest",
                "identical": not diffs,
                "files": len(manifest_a),
                "differences": diffs,
            }
        )
        time_diffs = compare_times(times_a, times_b)
        layers.append({"layer": 6, "name": "inode times", "identical": not time_diffs, "differences": time_diffs})
        diffs += time_diffs
        diffs += [{"layer": 4, "path": "(superblock)", "field": k, **v} for k, v in sb_diff.items()]
    verdict = judge(layers, diffs)
    return {
        "bit_identical_artifacts": layers[0]["bit_identical"],
        "layers_that_differ": [layer["layer"] for layer in layers if not layer["identical"]],
        "layers": layers,
        "differences": len(diffs),
        "found": diffs,
        "not_allowed": verdict["not_allowed"],
        "unexplained": verdict["unexplained"],
        "allowlist": [{"pattern": p, "field": f, "reason": r} for p, f, r in ALLOWLIST],
        "passed": verdict["passed"],
    }


def compare_times(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]]) -> list[dict[str, object]]:
    """Inode times that differ between two builds, path by path (layer 6)."""
    return [d for path in sorted(set(a) & set(b)) for d in _field_differences(6, path, a[path], b[path])]


def judge(layers: list[dict[str, Any]], diffs: list[dict[str, object]]) -> dict[str, Any]:
    """Passed only when every artifact is bit-identical, or when every difference that makes
    them differ was found and each is allowed. Artifacts that differ with no difference found (or
    with a differing partition that no finer layer reads) fail: that difference is unexplained."""
    if layers[0]["identical"]:
        return {"passed": True, "not_allowed": 0, "unexplained": None}
    not_allowed = sum(1 for d in diffs if not d["allowed"])
    unexplained = None
    partitions = next((layer for layer in layers if layer["layer"] == 3), None)
    other = [p for p in (partitions or {}).get("partitions", []) if p["a"] != p["b"] and not p["root"]]
    table = next((layer for layer in layers if layer["layer"] == 2), None)
    if table is not None and not table["identical"]:
        unexplained = "the partition tables differ"
    elif other:
        numbers = ", ".join(str(p["partition"]) for p in other)
        unexplained = f"partition(s) {numbers} differ, and no layer reads inside them"
    elif not diffs:
        unexplained = (
            f"{', '.join(layers[0]['different'])} differ, but no partition, superblock, file or inode time does"
        )
    return {"passed": not not_allowed and unexplained is None, "not_allowed": not_allowed, "unexplained": unexplained}


def build_once(
    label: str, base: Path, version: versions.Version, up: upstream.Upstream, cache: Path, source: Path
) -> dict[str, object]:
    start = time.monotonic()
    # Every role in one stage: the same roles as the base + functional chain, built twice.
    request = build.request_for(version, up, source, base / label, playbook="single-stage.yml")
    built = build.build(request, "auto", 60, cache)
    out = base / label / "formats"
    produced = formats.produce(
        Path(built.raw), out, "debian-12", version.name, ["raw", "qcow2", "vhd", "vmdk", "ova"], version.commit_time
    )
    return {"raw": built.raw, "formats": produced, "dir": str(out), "seconds": round(time.monotonic() - start, 1)}


def run_pairs(
    pairs: int,
    base: Path,
    version: versions.Version,
    up: Any,
    cache: Path,
    root: Path,
    keep: bool,
    progress: Callable[[dict], None] | None = None,
    side_by_side: bool = False,
) -> dict:
    """Build `pairs` pairs of the same version, each compared in layers. The report is the first
    failing pair's (else the last pair's), with every pair's outcome in `pairs`; it passes only
    when every pair passed: one identical pair proves little when a cause is intermittent.
    `progress` gets the report so far after each pair (`complete` false until the last one), so
    a long run that is stopped still leaves the pairs it finished. `side_by_side` builds the two
    of a pair at once (a TCG build keeps about one core busy): the same bytes are expected
    whatever else the machine does meanwhile."""
    outcomes: list[dict[str, Any]] = []
    chosen: dict[str, Any] = {}
    for number in range(1, pairs + 1):
        folder = base / f"pair-{number}"
        if side_by_side:
            try:
                with ThreadPoolExecutor(max_workers=2) as pool:
                    started = [pool.submit(build_once, label, folder, version, up, cache, root) for label in "ab"]
                    done, _ = wait(started, return_when=FIRST_EXCEPTION)
                    failed = next((future.exception() for future in done if future.exception() is not None), None)
                    if failed is not None:
                        # The pair cannot be compared: the other build is stopped, not waited for.
                        build.stop_running_builds()
                        wait(started)
                        raise failed
                    run_a, run_b = (future.result() for future in started)
            finally:
                build.allow_builds()  # both have ended: later builds of this process may start
        else:
            run_a = build_once("a", folder, version, up, cache, root)
            run_b = build_once("b", folder, version, up, cache, root)
        report = compare(run_a, run_b, folder / "compare")
        report["build_seconds"] = [run_a["seconds"], run_b["seconds"]]
        outcomes.append(
            {
                "pair": number,
                "passed": report["passed"],
                "bit_identical_artifacts": report["bit_identical_artifacts"],
                "layers_that_differ": report["layers_that_differ"],
                "build_seconds": report["build_seconds"],
                "built": "side by side" if side_by_side else "one after the other",
            }
        )
        print(f"reproducible: pair {number}/{pairs}: {'passed' if report['passed'] else 'FAILED'}", file=sys.stderr)
        if not chosen or (chosen["passed"] and not report["passed"]):
            chosen = report
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
        if progress is not None and number < pairs:
            progress(_summary(report if chosen["passed"] else chosen, version, outcomes, pairs))
    return _summary(report if chosen["passed"] else chosen, version, outcomes, pairs)


def _summary(chosen: dict[str, Any], version: versions.Version, outcomes: list[dict[str, Any]], pairs: int) -> dict:
    summary = dict(chosen)
    summary.update(
        {
            "version": version.name,
            "commit": version.commit,
            "pairs": list(outcomes),
            "pairs_requested": pairs,
            "complete": len(outcomes) == pairs,
            "passed": len(outcomes) == pairs and all(o["passed"] for o in outcomes),
        }
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, default=Path("bench/results/reproducibility.json"))
    parser.add_argument(
        "--upstream-url",
        default=upstream.UNREACHABLE_URL,
        help="defaults to the stage-0 image (cached), as on machines without internet",
    )
    parser.add_argument("--upstream-checksum", default=upstream.UNREACHABLE_SUMS)
    parser.add_argument("--pairs", type=int, default=1, help="how many pairs of builds to compare (default 1)")
    parser.add_argument("--keep", type=Path, help="keep every build in this folder (it must not exist) to study them")
    parser.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="build the two of a pair one after the other (default: side by side; a TCG build uses about one core)",
    )
    args = parser.parse_args(argv)
    if args.pairs < 1:
        print(f"reproducible: --pairs is {args.pairs}; accepted: a whole number of at least 1", file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parent.parent
    cache = host.cache_dir()
    try:
        version = versions.resolve(root)
        up = upstream.resolve_with_fallback(args.upstream_url, args.upstream_checksum, "stage0", cache)
        (root / ".state").mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="reproducible-", dir=root / ".state") as tmp:
            base = Path(tmp) if args.keep is None else args.keep
            if args.keep is not None:
                base.mkdir(parents=True)
            report = run_pairs(
                args.pairs,
                base,
                version,
                up,
                cache,
                root,
                args.keep is not None,
                lambda partial: files.write_atomic(args.report, json.dumps(partial, indent=2, default=str) + "\n"),
                side_by_side=not args.one_at_a_time,
            )
    except FactoryError as exc:
        print(f"reproducible: {exc}", file=sys.stderr)
        return 1
    args.report.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(args.report, json.dumps(report, indent=2, default=str) + "\n")
    layer5 = next((layer for layer in report["layers"] if layer["layer"] == 5), None)
    passed_pairs = sum(1 for o in report["pairs"] if o["passed"])
    print(f"reproducible: {passed_pairs} of {len(report['pairs'])} pair(s) bit-identical or explained")
    print(f"reproducible: bit-identical artifacts: {', '.join(report['bit_identical_artifacts']) or 'none'}")
    if layer5:
        print(
            f"reproducible: file manifest: {layer5['files']} files, {report['differences']} differences, "
            f"{report['not_allowed']} not allowed"
        )
    if report["unexplained"]:
        print(f"reproducible: FAILED: {report['unexplained']}")
    elif not report["passed"]:
        print(f"reproducible: FAILED: {report['not_allowed']} differences are not on the allowlist")
    print(f"reproducible: report written to {args.report}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
