"""Time each stage of a local release on this machine; write bench/results/stages.json.

    python -m bench.stages [--cold-stage0]

Runs the same steps the Pulumi components run (upstream, Packer build, seal check, each
format) directly, in a scratch folder, and records the wall time of each. The stage-0
upstream is timed from the cache unless --cold-stage0 rebuilds it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imagefactory import build, files, formats, host, sealcheck, upstream, versions
from imagefactory.checksums import file_digest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def report(target: Path, result: dict) -> int:
    """Write one benchmark's results (atomically) and show them; every benchmark ends here."""
    target.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(target, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def machine() -> dict[str, object]:
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    qemu = subprocess.run(["qemu-img", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "qemu": qemu,
        "python": platform.python_version(),
    }


def timed(results: dict[str, float], name: str, func, *args, **kwargs):
    start = time.monotonic()
    value = func(*args, **kwargs)
    results[name] = round(time.monotonic() - start, 2)
    print(f"bench: {name}: {results[name]} s", file=sys.stderr)
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-stage0", action="store_true", help="rebuild the stage-0 upstream image too")
    args = parser.parse_args()
    cache = host.cache_dir()
    if args.cold_stage0:
        shutil.rmtree(cache / "upstream" / f"stage0-{upstream.stage0_recipe_digest()}", ignore_errors=True)
    version = versions.resolve(ROOT)
    stages: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-", dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        up = timed(
            stages,
            "upstream",
            upstream.resolve_with_fallback,
            upstream.UNREACHABLE_URL,
            upstream.UNREACHABLE_SUMS,
            "stage0",
            cache,
        )
        # Every role in one stage (single-stage.yml): the timing of one whole build.
        request = build.request_for(version, up, ROOT, work / "work", playbook="single-stage.yml")
        built = timed(stages, "build", build.build, request, "auto", 60, cache)
        raw = Path(built.raw)
        findings = timed(stages, "seal_check", sealcheck.check_disk, raw, version.name)
        if findings:
            print(f"bench: the image is not sealed: {findings}", file=sys.stderr)
            return 1
        out = work / "formats"
        out.mkdir()
        sizes: dict[str, int] = {}
        for fmt in ("raw", "qcow2", "vhd", "vmdk", "vhdx"):
            dest = out / f"image.{formats.FORMATS[fmt].extension}"
            timed(stages, f"convert_{fmt}", formats.convert, raw, fmt, dest)
            timed(stages, f"verify_{fmt}", formats.verify_file, raw, fmt, dest)
            sizes[fmt] = dest.stat().st_size
        timed(
            stages,
            "package_ova",
            formats.make_ova,
            out / "image.vmdk",
            out / "image.ova",
            "n",
            version.name,
            raw.stat().st_size,
            version.commit_time,
        )
        sizes["ova"] = (out / "image.ova").stat().st_size
        timed(stages, "sha256_raw", file_digest, raw)
        parallel = work / "parallel"
        timed(
            stages,
            "all_formats_parallel",
            formats.produce,
            raw,
            parallel,
            "n",
            version.name,
            ["raw", "qcow2", "vhd", "vmdk", "ova"],
            version.commit_time,
        )
        allocated = raw.stat().st_blocks * 512
        accelerator = built.accelerator
    result = {
        "what": "wall time of each stage of one local release (seconds); sizes in bytes",
        "machine": machine(),
        "accelerator": accelerator,
        "version": version.name,
        "stages_seconds": stages,
        "sizes_bytes": {"raw_allocated": allocated, **sizes},
    }
    return report(RESULTS / "stages.json", result)


if __name__ == "__main__":
    sys.exit(main())
