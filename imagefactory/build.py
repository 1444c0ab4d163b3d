"""Run one Packer build (QEMU source, Ansible provisioner) and report the sealed RAW disk.

    python -m imagefactory.build --version V --commit C --build-epoch E --source-dir D --upstream-path P \
        --upstream-sha256 S --upstream-source U --work-dir W [--disk-size-mib N]   (steps.BuildRequest)
        [--cache C --accelerator auto|kvm|tcg --timeout-minutes M]                 (host facts)

Packer's output streams to stderr (the Pulumi command provider shows it live) and to a log
file. On success one JSON line goes to stdout. On failure the build folder is removed, so a
failed build leaves no artifact behind, and the log stays for diagnosis.

The SSH key Packer logs in with is made for this build only, in memory-backed storage
(/dev/shm) where available, and deleted when the build ends.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from imagefactory import accel, aptrepo, fstree, host
from imagefactory.checksums import file_digest
from imagefactory.errors import FactoryError, last_json, run_step
from imagefactory.locks import alive
from imagefactory.remaster import remaster
from imagefactory.steps import BuildRequest, BuildResult, UpstreamResult
from imagefactory.versions import Version, iso_time, validate_version_name

BUILD_USER = "imagebuild"


KEY_PREFIX = "imagefactory-key-"


def _key_base() -> Path:
    shm = Path("/dev/shm")  # noqa: S108 - memory-backed storage keeps the key off disk
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def _secret_dir() -> Path:
    """A folder for this build's key, named by this process so a killed build's key is found."""
    return Path(tempfile.mkdtemp(prefix=f"{KEY_PREFIX}{os.getpid()}-", dir=_key_base()))


def remove_orphan_keys(base: Path | None = None) -> list[Path]:
    """Delete the key folders of builds whose process is gone (a build killed with SIGKILL)."""
    removed = []
    for folder in (base or _key_base()).glob(f"{KEY_PREFIX}*"):
        pid = folder.name.removeprefix(KEY_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def make_build_key(folder: Path) -> tuple[Path, str]:
    key = folder / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "imagefactory-build", "-f", str(key)], check=True
    )
    return key, (folder / "id_ed25519.pub").read_text().strip()


_packer_tail = threading.local()
_running: set[subprocess.Popen[str]] = set()  # this process's Packer runs (two side by side in make reproducible)
_running_lock = threading.Lock()
_stopping = threading.Event()


def stop_running_builds() -> None:
    """Ask every Packer run of this process to stop, as Ctrl-C does (it stops its VM and cleans
    up, and its build fails), and refuse to start another until `allow_builds`. For a build
    whose partner has failed (make reproducible, side by side)."""
    with _running_lock:
        _stopping.set()
        for proc in _running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)


def allow_builds() -> None:
    with _running_lock:
        _stopping.clear()


def run_packer(
    args: list[str], log: Path, cwd: Path, env: dict[str, str], on_interrupt: Callable[[], None] = lambda: None
) -> int:
    """Run Packer, copying each line to stderr and the log; keep the tail for the error message.
    On an interrupt, `on_interrupt` runs first (it deletes the build key), then Packer is stopped."""
    tail: deque[str] = deque(maxlen=25)
    with open(log, "a", encoding="utf-8") as log_file:
        with _running_lock:  # started and listed at once, so a stop finds it
            if _stopping.is_set():
                raise FactoryError("the build was stopped before Packer started (another build of its pair failed)")
            proc = subprocess.Popen(
                args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
            )
            _running.add(proc)
        if proc.stdout is None:
            raise FactoryError("could not read Packer's output")
        try:
            for line in proc.stdout:
                sys.stderr.write(line)
                sys.stderr.flush()
                log_file.write(line)
                tail.append(line.rstrip())
        except BaseException:
            # Interrupted: the key goes first (a SIGKILL may follow), then Packer may stop its VM
            # and delete its output.
            on_interrupt()
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        finally:
            with _running_lock:
                _running.discard(proc)
        code = proc.wait()
    _packer_tail.lines = list(tail)  # the last lines, for the caller's error (per thread: side-by-side builds)
    return code


def check_disk_size(upstream: Path, disk_size_mib: int) -> None:
    """Refuse, before anything boots, a disk smaller than the upstream image (it cannot shrink)."""
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(upstream)], capture_output=True, text=True, check=False
    )
    if info.returncode != 0:
        raise FactoryError(f"qemu-img cannot read the upstream image {upstream}: {info.stderr.strip()}")
    needed = -(-json.loads(info.stdout)["virtual-size"] // (1024 * 1024))
    if disk_size_mib < needed:
        raise FactoryError(
            f"imagefactory:diskSizeMiB is {disk_size_mib}, smaller than the upstream image {upstream.name} "
            f"({needed} MiB); accepted: {needed} or more"
        )


def build(
    opts: BuildRequest,
    accelerator_choice: str,
    timeout_minutes: int,
    cache: Path,
    apt_repository: Path | None = None,
    served: list[str] | None = None,
) -> BuildResult:
    """Build, re-master and report one image. The accelerator, timeout and cache are host facts:
    they never change an image's bytes, so they are not part of the request. The packages the
    build installs are kept in the cache's package store (imagefactory.aptrepo). A rebuild
    (imagefactory.rebuild) passes `apt_repository`, a local repository of the release's
    recorded packages, which is then apt's only source in the build VM; `served` receives the
    requests the repository answered."""
    version = validate_version_name(opts.version)
    # Refused before Packer starts: the re-master cannot keep owners and setuid bits without it.
    fstree.require_root(f"building {version}")
    source = opts.source_dir.resolve()
    if not (source / "packer").is_dir() or not (source / "ansible" / opts.playbook).is_file():
        raise FactoryError(f"source folder {source} has no packer/ and ansible/{opts.playbook}")
    upstream = Path(opts.upstream_path)
    if not upstream.is_file():
        raise FactoryError(f"upstream image {upstream} does not exist; re-run so UpstreamImage fetches it")
    # Checked again right before it boots: the file may have changed since it was verified.
    actual = file_digest(upstream)
    if actual != opts.upstream_sha256:
        raise FactoryError(
            f"{upstream} does not match the digest it was verified with: expected sha256:{opts.upstream_sha256}, "
            f"actual sha256:{actual}; nothing was booted"
        )
    check_disk_size(upstream, opts.disk_size_mib)
    accelerator = accel.choose(accelerator_choice, upstream, cache)

    work = opts.work_dir.resolve() / version
    work.mkdir(parents=True, exist_ok=True)
    logs = opts.work_dir.resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    log = logs / f"{version}-{stamp}.log"
    output = work / f"build-{stamp}"
    build_time = iso_time(opts.build_epoch)

    for orphan in remove_orphan_keys():
        print(f"build: removed the SSH key of a killed build ({orphan})", file=sys.stderr)
    secrets = _secret_dir()
    export = work / f"packages-{stamp}.tar"
    serving = contextlib.ExitStack()
    served_log: list[str] = []
    try:
        key, public_key = make_build_key(secrets)
        source_vars = {}
        if apt_repository is not None:
            server = serving.enter_context(aptrepo.serve(apt_repository))
            if served is not None:
                served_log = server.served
            # QEMU's user network maps 10.0.2.2 to the host's loopback, where the repository listens.
            source_vars = {"package_source_repository": f"http://10.0.2.2:{server.port}/"}
        extra_vars = secrets / "build-vars.json"
        extra_vars.write_text(
            json.dumps(
                {
                    **source_vars,
                    "seal_packages_export": str(export),
                    "image_version": version,
                    "image_commit": opts.commit,
                    "upstream_digest": f"sha256:{opts.upstream_sha256}",
                    "upstream_source": opts.upstream_source,
                    "image_stage": opts.stage,
                    "build_time": build_time,
                    "seal_build_user": BUILD_USER,
                    "source_date_epoch": str(opts.build_epoch),
                }
            )
        )
        variables = {
            "image_version": version,
            "image_commit": opts.commit,
            "upstream_path": str(upstream.resolve()),  # Packer runs in packer/: never a relative path
            "upstream_checksum": f"sha256:{opts.upstream_sha256}",
            "output_directory": str(output),
            "disk_size_mib": str(opts.disk_size_mib),
            "accelerator": accelerator,
            "build_user": BUILD_USER,
            "ssh_private_key_file": str(key),
            "ssh_public_key": public_key,
            "ansible_extra_vars_file": str(extra_vars),
            "serial_log": str(logs / f"{version}-{stamp}.serial.log"),
            "build_timeout": f"{timeout_minutes}m",
            "playbook": opts.playbook,
        }
        env = dict(os.environ)
        env.update({f"PKR_VAR_{name}": value for name, value in variables.items()})
        env["CHECKPOINT_DISABLE"] = "1"
        env["PACKER_NO_COLOR"] = "1"
        print(f"build: packer build of {version} ({accelerator}); log: {log}", file=sys.stderr)
        code = run_packer(
            ["packer", "build", "-color=false", "-timestamp-ui", "-on-error=cleanup", "-only=qemu.local", "."],
            log,
            source / "packer",
            env,
            on_interrupt=lambda: shutil.rmtree(secrets, ignore_errors=True),
        )
    except BaseException:
        shutil.rmtree(output, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(secrets, ignore_errors=True)
        serving.close()
        if served is not None:
            served.extend(served_log)

    raw = output / "disk.raw"
    try:
        if code == 0 and raw.is_file():
            keep_packages(export, cache)
    finally:
        export.unlink(missing_ok=True)
    if code != 0 or not raw.is_file():
        shutil.rmtree(output, ignore_errors=True)
        tail = "\n".join(getattr(_packer_tail, "lines", [])[-12:])
        raise FactoryError(
            f"packer build of {version} failed (exit code {code}); no image was kept. Full log: {log}\n{tail}"
        )
    print(f"build: re-mastering the root filesystem of {version} for a reproducible RAW", file=sys.stderr)
    try:
        remastered = remaster(raw, version, opts.build_epoch, output / "remaster")
    except BaseException:  # a failure or an interrupt: keep nothing half-made
        shutil.rmtree(output, ignore_errors=True)
        raise
    sha256 = file_digest(raw)
    result = BuildResult(
        version=version,
        commit=opts.commit,
        raw=host.portable(raw),
        sha256=sha256,
        bytes=raw.stat().st_size,
        accelerator=accelerator,
        log=host.portable(log),
        build_time=build_time,
        remaster=remastered,
    )
    (output / "build.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


def keep_packages(export: Path, cache: Path) -> None:
    """Keep the packages the build used, by digest, for a later rebuild of this version."""
    if not export.is_file():
        print(f"build: the build VM exported no packages ({export.name}); a rebuild may miss some", file=sys.stderr)
        return
    try:
        kept = aptrepo.ingest_tar(export, cache)
    except (FactoryError, OSError) as exc:  # the image is good; only a later rebuild may miss packages
        print(f"build: the packages the build used were not kept: {exc}", file=sys.stderr)
        return
    print(
        f"build: kept {kept.debs} package file(s) ({kept.new_debs} new) and {kept.stanzas} index entries "
        f"in {aptrepo.cache_root(cache)}",
        file=sys.stderr,
    )
    if kept.unmatched:
        print(f"build: no index entry vouches for {', '.join(kept.unmatched)}; not kept", file=sys.stderr)


def remove_previous(stdout: str) -> None:
    """Delete the build folder recorded in a previous run's JSON output (used on delete)."""
    raw = Path(last_json(stdout).get("raw", ""))
    if raw.parent.name.startswith("build-"):
        shutil.rmtree(raw.parent, ignore_errors=True)
        with contextlib.suppress(OSError):
            raw.parent.parent.rmdir()  # the version's folder, once nothing else is in it


def request_for(
    version: Version,
    upstream: UpstreamResult,
    source_dir: Path,
    work_dir: Path,
    disk_size_mib: int = 3072,
    playbook: str = "site.yml",
    stage: str = "",
) -> BuildRequest:
    """The build request for a resolved version and upstream (used by the benchmarks and the
    reproducibility check, which run builds outside Pulumi)."""
    return BuildRequest(
        version=version.name,
        commit=version.commit,
        build_epoch=version.commit_time,
        source_dir=source_dir,
        upstream_path=upstream.path,
        upstream_sha256=upstream.sha256,
        upstream_source=upstream.source,
        work_dir=work_dir,
        disk_size_mib=disk_size_mib,
        playbook=playbook,
        stage=stage,
    )


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] == ["--remove-previous"]:
        remove_previous(os.environ.get("PULUMI_COMMAND_STDOUT", ""))
        return 0
    parser = BuildRequest.parser(argparse.ArgumentParser(description="Run one Packer build of the image."))
    facts = host.read()
    parser.add_argument("--cache", type=Path, default=host.cache_dir())
    parser.add_argument("--accelerator", default=facts.accelerator, choices=("auto", "kvm", "tcg"))
    parser.add_argument("--timeout-minutes", type=int, default=facts.build_timeout_minutes)
    args = parser.parse_args(argv)
    request = BuildRequest.from_namespace(args, os.environ)
    # A cancelled `pulumi up` sends SIGTERM; run_step unwinds it like Ctrl-C, so the key is
    # deleted and Packer (signalled by run_packer) stops its VM and cleans up.
    return run_step("build", lambda: build(request, args.accelerator, args.timeout_minutes, args.cache))


if __name__ == "__main__":
    sys.exit(main())
