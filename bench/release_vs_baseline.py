"""Benchmark a full local release against the plain baseline a user would otherwise run by hand.

    python -m bench.release_vs_baseline      (or: make bench)

In one process tree on this machine, in a scratch copy of the project:
- ours: `pulumi up` of the local stack (upstream, then the base and the functional stage, each
  Packer + Ansible, re-master, seal check, formats, registry);
- a top-stage-only rebuild: one functional role changed, `pulumi up` again (it boots the
  published base, see README "Multi-stage");
- baseline: `packer build` with the same template and every role in one playbook
  (single-stage.yml), then `qemu-img convert` for each format, one after the other;
- a no-op `pulumi up` (nothing changed) against a plain `packer build` (which always rebuilds);
- `pulumi preview` on a version bump;
- each format's conversion throughput against `cp --sparse=always` of the RAW (the disk's limit)
  and its size against the RAW's allocated size; the peak disk use of each run.
Results: bench/results/release_vs_baseline.json.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.stages import RESULTS, machine, report
from imagefactory import build, formats, host
from imagefactory.upstream import UNREACHABLE_SUMS, UNREACHABLE_URL, resolve_with_fallback
from tests.helpers import copy_project, init_git, pulumi, pulumi_env

ROOT = Path(__file__).resolve().parent.parent


class PeakDisk:
    """Samples the allocated size of a folder every second; `peak` is the largest seen."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.peak, self._stop = folder, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for dirpath, _, files in os.walk(self.folder):
                for name in files:
                    with contextlib.suppress(OSError):
                        total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            self.peak = max(self.peak, total)
            self._stop.wait(1.0)

    def __enter__(self) -> PeakDisk:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(func, *args, **kwargs):
    start = time.monotonic()
    value = func(*args, **kwargs)
    return value, round(time.monotonic() - start, 2)


STEP_DONE = re.compile(
    r"^\s*\S+\s+(?P<type>\S+)\s+(?P<name>\S+)\s+(?:created|updated|replaced|deleted)(?: replacement)?\s+\((?P<s>\d+)s\)"
)


def step_seconds(output: str) -> dict[str, int]:
    """Each resource step's wall time in one `pulumi up`, from its progress lines ("… created (384s)"),
    longest first; the steps that took no whole second are left out."""
    took: dict[str, int] = {}
    for line in output.splitlines():
        match = STEP_DONE.match(line)
        if match and int(match["s"]) > 0 and match["type"] != "pulumi:pulumi:Stack":
            took[match["name"]] = int(match["s"])
    return dict(sorted(took.items(), key=lambda item: -item[1]))


def packer_phases(log: str) -> dict[str, Any]:
    """The phases of one `packer build -timestamp-ui`: boot to SSH, cloud-init and the shell step,
    Ansible (and each role's share), then the halt and Packer's own finish; seconds."""
    import datetime as dt

    stamped = []
    for line in log.splitlines():
        head, sep, rest = line.partition(": ")  # RFC 3339 in the host's zone: 2026-11-29T16:00:08Z or …+01:00
        if sep:
            with contextlib.suppress(ValueError):
                stamped.append((dt.datetime.fromisoformat(head.replace("Z", "+00:00")).timestamp(), rest))
    if not stamped:
        return {}

    def first(text: str) -> float:
        return next((t for t, rest in stamped if text in rest), stamped[-1][0])

    start, end = stamped[0][0], stamped[-1][0]
    connected, tasks, recap = first("Connected to SSH"), first("TASK ["), first("PLAY RECAP")
    roles: dict[str, float] = {}
    marks = [(t, rest.split("TASK [", 1)[1]) for t, rest in stamped if "TASK [" in rest] + [(recap, "")]
    for (t, name), (after, _) in itertools.pairwise(marks):
        role = name.split(" : ", 1)[0] if " : " in name else "(play)"
        roles[role] = roles.get(role, 0.0) + after - t
    return {
        "boot_to_ssh": round(connected - start),
        "cloud_init_and_shell": round(tasks - connected),
        "ansible": round(recap - tasks),
        "ansible_roles": {role: round(seconds) for role, seconds in roles.items()},
        "halt_and_finish": round(end - recap),
        "total": round(end - start),
    }


def ours(project: Path, env: dict[str, str]) -> dict[str, Any]:
    with PeakDisk(project / ".state") as disk:
        _, total = timed(pulumi, project, "up", "--yes", "--skip-preview", "--stack", "local", env=env)
    outputs = json.loads(pulumi(project, "stack", "output", "--json", "--stack", "local", env=env).stdout)
    version, image = next(iter(outputs["images"].items()))
    build_json = next((project / ".state" / "work" / version).glob("build-*/build.json"))
    built = json.loads(build_json.read_text())
    _, noop = timed(pulumi, project, "up", "--yes", "--skip-preview", "--stack", "local", env=env)
    (project / "bench" / "bump.txt").write_text("a change that makes a new dev version\n")
    _, preview = timed(pulumi, project, "preview", "--stack", "local", env=env)
    health = project / "ansible" / "roles" / "health" / "templates" / "health.py.j2"
    health.write_text(health.read_text() + "# a functional change: only the top stage rebuilds\n")
    top, top_only = timed(pulumi, project, "up", "--yes", "--skip-preview", "--stack", "local", env=env)
    top_log = max(
        (p for p in (project / ".state" / "work" / "logs").glob("*.log") if not p.name.endswith(".serial.log")),
        key=lambda p: p.stat().st_mtime,
    )
    # The version bump retired the first development version: measure the conversions on the RAW
    # that is published now (the top-stage rebuild's).
    outputs = json.loads(pulumi(project, "stack", "output", "--json", "--stack", "local", env=env).stdout)
    image = next(iter(outputs["images"].values()))
    manifest = json.loads((Path(image["dir"]) / "manifest.json").read_text())
    return {
        "release_seconds": total,
        "top_stage_rebuild_seconds": top_only,
        "top_stage_steps_seconds": step_seconds(top.stdout),
        "top_stage_packer": packer_phases(top_log.read_text()),
        "noop_up_seconds": noop,
        "preview_on_version_bump_seconds": preview,
        "peak_disk_bytes": disk.peak,
        "version": version,
        "raw": image["formats"]["raw"]["path"],
        "accelerator": built["accelerator"],
        "formats": image["formats"],
        "boot_checks": manifest.get("boot_checks", []),  # the release gate (bootCheck auto: the QCOW2 of a dev build)
    }


def baseline(project: Path, upstream_path: str, upstream_sha256: str, version: str, commit: str) -> dict:
    """packer build (same template, same playbook) and one qemu-img convert per format."""
    out = project / ".state" / "baseline"
    out.mkdir(parents=True)
    secrets = Path(tempfile.mkdtemp(prefix="bench-key-"))
    try:
        key, public = build.make_build_key(secrets)
        extra = secrets / "vars.json"
        extra.write_text(
            json.dumps(
                {
                    "image_version": version,
                    "image_commit": commit,
                    "upstream_digest": "x",
                    "upstream_source": "x",
                    "build_time": "2025-01-01T00:00:00Z",
                    "source_date_epoch": "1735689600",
                    "seal_build_user": build.BUILD_USER,
                }
            )
        )
        env = dict(os.environ)
        env.update(
            {
                f"PKR_VAR_{k}": v
                for k, v in {
                    "image_version": version,
                    "image_commit": commit,
                    "upstream_path": upstream_path,
                    "upstream_checksum": f"sha256:{upstream_sha256}",
                    "output_directory": str(out / "packer"),
                    "accelerator": "tcg",
                    "ssh_private_key_file": str(key),
                    "ssh_public_key": public,
                    "ansible_extra_vars_file": str(extra),
                    "serial_log": str(out / "serial.log"),
                    "playbook": "single-stage.yml",
                }.items()
            }
        )
        with PeakDisk(out) as disk:
            result, packer_seconds = timed(
                subprocess.run,
                ["packer", "build", "-timestamp-ui", "-only=qemu.local", "."],
                cwd=project / "packer",
                env=env,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise RuntimeError(result.stdout[-3000:])
            raw = out / "packer" / "disk.raw"
            converts = {}
            for fmt in ("qcow2", "vhd", "vmdk"):
                spec = formats.FORMATS[fmt]
                _, seconds = timed(
                    subprocess.run,
                    [
                        "qemu-img",
                        "convert",
                        "-f",
                        "raw",
                        *spec.convert_options,
                        str(raw),
                        str(out / f"disk.{spec.extension}"),
                    ],
                    check=True,
                )
                converts[fmt] = seconds
    finally:
        shutil.rmtree(secrets, ignore_errors=True)
    return {
        "packer_build_seconds": packer_seconds,
        "packer_phases": packer_phases(result.stdout),
        "convert_seconds": converts,
        "total_seconds": round(packer_seconds + sum(converts.values()), 2),
        "peak_disk_bytes": disk.peak,
    }


def throughput(raw: Path, scratch: Path) -> dict[str, object]:
    size = raw.stat().st_size
    allocated = raw.stat().st_blocks * 512
    _, cp_seconds = timed(subprocess.run, ["cp", "--sparse=always", str(raw), str(scratch / "copy.raw")], check=True)
    rows = {"cp_sparse": {"seconds": cp_seconds, "mib_per_s": round(size / 2**20 / max(cp_seconds, 0.01), 1)}}
    for fmt in ("qcow2", "vhd", "vmdk", "vhdx"):
        dest = scratch / f"t.{formats.FORMATS[fmt].extension}"
        _, seconds = timed(formats.convert, raw, fmt, dest, "bench", 0)
        rows[fmt] = {
            "seconds": seconds,
            "mib_per_s": round(size / 2**20 / max(seconds, 0.01), 1),
            "bytes": dest.stat().st_size,
            "ratio_to_raw_allocated": round(dest.stat().st_size / allocated, 3),
        }
        dest.unlink()
    return {"raw_virtual_bytes": size, "raw_allocated_bytes": allocated, "formats": rows}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-", dir=os.environ.get("BENCH_TMP")) as tmp:
        project = copy_project(Path(tmp) / "project")
        commit = init_git(project)
        env = pulumi_env(project)
        pulumi(project, "stack", "init", "local", "--secrets-provider", "passphrase", env=env)
        for key, value in (
            ("upstreamUrl", UNREACHABLE_URL),
            ("upstreamChecksum", UNREACHABLE_SUMS),
        ):
            pulumi(project, "config", "set", f"imagefactory:{key}", value, "--stack", "local", env=env)
        mine = ours(project, env)
        upstream_out = json.loads(pulumi(project, "stack", "output", "--json", "--stack", "local", env=env).stdout)[
            "upstream"
        ]

        cache = host.cache_dir()
        up = resolve_with_fallback(UNREACHABLE_URL, UNREACHABLE_SUMS, "stage0", cache)
        if up.sha256 != upstream_out["sha256"]:
            raise RuntimeError("the baseline must start from the same upstream image as the release")
        base = baseline(project, up.path, up.sha256, mine["version"], commit)
        scratch = Path(tmp) / "scratch"
        scratch.mkdir()
        conversions = throughput(Path(mine["raw"]), scratch)
    result = {
        "what": "full local release (pulumi up) against packer build + qemu-img convert by hand; seconds, bytes",
        "machine": machine(),
        "accelerator": mine["accelerator"],
        "ours": {k: v for k, v in mine.items() if k not in ("raw", "formats")},
        "baseline": base,
        "ratio_ours_to_baseline": round(mine["release_seconds"] / base["total_seconds"], 2),
        "noop": {"pulumi_up_seconds": mine["noop_up_seconds"], "packer_build_seconds": base["packer_build_seconds"]},
        "multistage": {
            "full_two_stage_release_seconds": mine["release_seconds"],
            "top_stage_rebuild_seconds": mine["top_stage_rebuild_seconds"],
            "single_stage_packer_build_seconds": base["packer_build_seconds"],
            "ratio_top_stage_rebuild_to_packer_build": round(
                mine["top_stage_rebuild_seconds"] / base["packer_build_seconds"], 2
            ),
            "top_stage_packer_build_seconds": mine["top_stage_packer"].get("total"),
            "ratio_top_stage_packer_build_to_packer_build": round(
                mine["top_stage_packer"].get("total", 0) / base["packer_build_seconds"], 2
            ),
            "goal": 0.6,
        },
        "conversions": conversions,
        "note": "ours also verifies the upstream, re-masters the filesystem, checks the seal, makes an OVA, "
        "checks every file with qemu-img and publishes; the baseline does none of that",
    }
    return report(RESULTS / "release_vs_baseline.json", result)


if __name__ == "__main__":
    sys.exit(main())
