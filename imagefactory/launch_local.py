"""Launch a released image as a local QEMU VM, health-check it, and tear it down.

    python -m imagefactory.launch_local create   (inputs in the environment, see below)
    python -m imagefactory.launch_local upgrade  (in place: same inputs, plus PULUMI_COMMAND_STDOUT)
    python -m imagefactory.launch_local delete   (reads PULUMI_COMMAND_STDOUT of the create)

The VM runs on a copy-on-write overlay of the released QCOW2, which stays untouched. The
health check logs in over SSH (the login comes from a NoCloud seed, as on any cloud) and reads
/etc/release; a VM that does not report the requested version is stopped and the step fails.

Environment of `create`: IMAGE_PATH, IMAGE_SHA256, IMAGE_VERSION, VM_NAME, STATE_DIR, and
optionally ACCELERATOR (auto|kvm|tcg), UPGRADE_STRATEGY (in-place), MEMORY_MIB, HEALTH_TIMEOUT,
SHARED_REGISTRY (an s3://… registry the QCOW2 is fetched from when IMAGE_PATH is not on this
machine). `keep` is the update of a replaced-on-a-new-version launch when only a setting changed:
the running VM stays.

An in-place upgrade (UPGRADE_STRATEGY=in-place) moves the running VM to IMAGE_VERSION without
replacing it: the version's own roles, from its tag's tree (`git archive`), are applied over SSH
(ansible/upgrade.yml: every stage's roles, never the seal), the stamp becomes the image's stamp
plus IMAGE_HISTORY, and the VM must then report the version. The VM keeps its disk, machine-id,
host keys and data. A failed run puts the old stamp back, so the VM reports its old version,
and names the task that failed; a killed run is found by the next one (the old stamp is still
kept aside on the VM), which puts that stamp back and applies again. REAPPLY=1 applies the
version the VM already runs again: drift repair, and the idempotence check (a second apply of
the same version reports changed=0).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imagefactory import accel, gpt, host, upgrade, versions
from imagefactory.checksums import file_digest
from imagefactory.debugfs import Filesystem
from imagefactory.errors import FactoryError, last_json, run_step
from imagefactory.stamp import parse_stamp
from imagefactory.steps import LaunchRequest
from imagefactory.vm import Guest


def create(env: dict[str, str]) -> dict[str, object]:
    request = LaunchRequest.parse([], env)
    image = request.image_path
    version = request.version
    if not image.is_file() and request.shared_registry:
        image = fetch_shared(request)
    if not image.is_file():
        raise FactoryError(f"image {image} of {version} does not exist; is the version still published?")
    if file_digest(image) != request.image_sha256:
        raise FactoryError(f"{image} does not match the digest the image stack published for {version}")
    cache = host.cache_dir()
    accelerator = accel.choose(request.accelerator, image, cache)
    folder = request.state_dir.resolve() / f"{request.vm_name}-{version}-{os.urandom(3).hex()}"
    in_place = request.strategy == "in-place"
    memory = int(env.get("MEMORY_MIB", "1024"))
    guest = Guest(image, folder, accelerator, memory, user="health", standalone=in_place).start()
    try:
        print(f"launch: {request.vm_name} booting {version} ({accelerator}); waiting for SSH", file=sys.stderr)
        guest.wait_ready(int(env.get("HEALTH_TIMEOUT", "600")))
        result = guest.ssh("cat /etc/release")
        reported = parse_stamp(result.stdout).get("IMAGE_VERSION")
        if reported != version:
            raise FactoryError(f"health check failed: the VM reports {reported!r}, not {version!r}")
    except BaseException:
        guest.stop()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    (folder / "version").write_text(f"{version}\n")  # what it runs now (an in-place upgrade moves it)
    print(f"launch: {request.vm_name} is healthy and reports {version}", file=sys.stderr)
    return {
        "version": version,
        "pid": guest.process.pid if guest.process else 0,
        "ssh_port": guest.port,
        "dir": str(folder),
        "accelerator": accelerator,
        "reported_version": reported,
        **({"history": [version]} if in_place else {}),
    }


def fetch_shared(request: LaunchRequest) -> Path:
    """The version's QCOW2 from the shared registry, kept under the state folder by its digest:
    what an application on another machine than the builder boots. The store refuses a revoked
    version; the download is checked against its SHA-256 and renamed into place only then."""
    from imagefactory import s3registry

    store = s3registry.parse(request.shared_registry or "", "SHARED_REGISTRY")
    folder = request.state_dir.resolve() / "images" / request.image_sha256
    cached = folder / request.image_path.name
    if cached.is_file() and file_digest(cached) == request.image_sha256:
        return cached
    print(
        f"launch: {request.image_path} is not on this machine; fetching {request.version} from {store.url}",
        file=sys.stderr,
    )
    return s3registry.fetch(store, request.version, "qcow2", folder)


# The code tree this module runs from: a checkout of the image project, whose tags are the releases.
PROJECT = Path(__file__).resolve().parent.parent
# On the VM, while an in-place run is under way: the stamp from before it.
BACKUP = "/etc/release.before-upgrade"
# Put it back: drop it when the stamp is still the same, move it over the stamp otherwise.
RESTORE = f"sudo cmp -s {BACKUP} /etc/release && sudo rm -f {BACKUP} || sudo mv -f {BACKUP} /etc/release"


def image_project(image: Path) -> Path:
    """The checkout of the image project that published `image` (its registry lives in that
    checkout's state folder): its tags are the releases whose roles an in-place run applies. The
    checkout this code runs from when the image is outside any git work tree."""
    found = subprocess.run(
        ["git", "-C", str(image.resolve().parent), "rev-parse", "--show-toplevel"], capture_output=True, text=True
    )
    return Path(found.stdout.strip()) if found.returncode == 0 and found.stdout.strip() else PROJECT


def upgrade_in_place(env: dict[str, str], previous_stdout: str, repo: Path | None = None) -> dict[str, object]:
    """Move the running VM of the previous launch to IMAGE_VERSION in place (see the module doc)."""
    request = LaunchRequest.parse([], env)
    record = last_json(previous_stdout)
    if request.strategy != "in-place":
        raise FactoryError("an in-place upgrade needs UPGRADE_STRATEGY=in-place; otherwise the VM is replaced")
    folder, pid = Path(record.get("dir", "")), int(record.get("pid", 0))
    if not record or not pid or not _is_our_qemu(pid, folder):
        raise FactoryError(
            f"the VM {request.vm_name} of {record.get('version', '?')} is not running ({folder}); an in-place upgrade "
            "needs the running machine: replace it instead (pulumi up --replace on its launch)"
        )
    target = request.version
    if not request.image_path.is_file() or file_digest(request.image_path) != request.image_sha256:
        raise FactoryError(f"{request.image_path} is missing or does not match the digest published for {target}")
    guest = Guest.attach(folder, int(record["ssh_port"]), "health")
    # A run that was killed (pulumi cancel, a lost host) left its backup of the old stamp: put
    # it back, so the machine says what it runs for sure, and apply again.
    unfinished = _ssh(guest, f"sudo test -e {BACKUP} && echo unfinished || true").strip() == "unfinished"
    if unfinished:
        _ssh(guest, RESTORE)
        print(
            f"launch: an earlier in-place run on {request.vm_name} did not finish; its old stamp is back",
            file=sys.stderr,
        )
    stamp = parse_stamp(_ssh(guest, "cat /etc/release"))
    current = stamp.get("IMAGE_VERSION", "")
    step = upgrade.plan(current, target, stamp)
    if not step.needed and not unfinished and env.get("REAPPLY") != "1":
        print(f"launch: {request.vm_name} already runs {target}", file=sys.stderr)
        return {**record, "version": target, "reported_version": current, "history": list(step.history)}
    image_stamp = _image_stamp(request.image_path, folder)
    if image_stamp.get("IMAGE_VERSION") != target:
        raise FactoryError(f"{request.image_path} is stamped {image_stamp.get('IMAGE_VERSION')!r}, not {target!r}")
    values = upgrade.ansible_vars(image_stamp, step.history)
    log = folder / f"upgrade-{target}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.log"
    print(
        f"launch: applying the roles of {target} to {request.vm_name} ({current}) in place; log: {log}", file=sys.stderr
    )
    output, code = "", -1
    with tempfile.TemporaryDirectory(prefix="imagefactory-upgrade-") as tmp:
        tree = _tag_tree(repo or image_project(request.image_path), target, image_stamp["IMAGE_COMMIT"], Path(tmp))
        _ssh(guest, f"sudo cp -a /etc/release {BACKUP}")
        try:
            output, code = apply_roles(guest, tree, values, log)
        finally:
            if code != 0:  # failed or interrupted: the machine keeps saying what it ran
                restored = guest.ssh(RESTORE, timeout=120)
    if code != 0:
        task = upgrade.failed_task(output) or "(no task failed: ansible-playbook could not run)"
        now = parse_stamp(_ssh(guest, "cat /etc/release", check=False)).get("IMAGE_VERSION")
        if restored.returncode != 0:
            state = (
                f"putting its old stamp back failed ({restored.stderr.strip()[-200:]}), so it reports {now}; "
                f"{BACKUP} holds the old stamp and the next run puts it back first"
            )
        else:
            state = f"the VM still reports {now}"
        raise FactoryError(
            f"the in-place upgrade of {request.vm_name} from {current} to {target} failed at task {task!r}; {state}. "
            f"Fix the cause and run pulumi up again. Log: {log}\n" + "\n".join(output.splitlines()[-15:])
        )
    _ssh(guest, f"sudo rm -f {BACKUP}")
    reported = parse_stamp(_ssh(guest, "cat /etc/release")).get("IMAGE_VERSION")
    if reported != target:
        raise FactoryError(
            f"health check failed after the in-place upgrade: the VM reports {reported!r}, not {target!r}"
        )
    (folder / "version").write_text(f"{target}\n")
    changed = counts.get("changed", -1) if (counts := upgrade.recap(output)) else -1
    print(
        f"launch: {request.vm_name} upgraded in place to {target} ({changed} changes); it reports {reported}",
        file=sys.stderr,
    )
    return {
        **record,
        "version": target,
        "reported_version": reported,
        "history": list(step.history),
        "changed": changed,
    }


def _ssh(guest: Guest, command: str, check: bool = True) -> str:
    result = guest.ssh(command, timeout=120)
    if check and result.returncode != 0:
        raise FactoryError(f"`{command}` on the VM failed (exit {result.returncode}): {result.stderr.strip()[-300:]}")
    return result.stdout


def _image_stamp(image: Path, scratch: Path) -> dict[str, str]:
    """The /etc/release of a published QCOW2, read offline (a sparse raw copy, then debugfs)."""
    raw = scratch / "stamp-read.raw"
    try:
        subprocess.run(["qemu-img", "convert", "-q", "-O", "raw", str(image), str(raw)], check=True)
        text = Filesystem(raw, gpt.root_partition(raw).offset).read("/etc/release")
    finally:
        raw.unlink(missing_ok=True)
    if text is None:
        raise FactoryError(f"{image} has no /etc/release; it was not built by this project")
    return parse_stamp(text.decode())


def _tag_tree(repo: Path, version: str, commit: str, into: Path) -> Path:
    """The ansible/ folder of the release's tag, which must still be the commit the image was built from."""
    tagged = versions.tag_commit(repo, version)
    if tagged != commit:
        raise FactoryError(
            f"tag {version} points at {tagged[:12]}, but the image was built from {commit[:12]}: the tag moved, so its "
            "roles are not the image's; restore the tag or replace the machine"
        )
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", commit, "ansible"], capture_output=True
    )
    if archive.returncode != 0:
        raise FactoryError(f"git archive of {version} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    if not (into / "ansible" / upgrade.PLAYBOOK).is_file():
        raise FactoryError(
            f"{version} predates in-place upgrades (its tree has no ansible/{upgrade.PLAYBOOK}); replace the machine"
        )
    return into / "ansible"


def apply_roles(guest: Guest, tree: Path, values: dict[str, str], log: Path) -> tuple[str, int]:
    """Run ansible/upgrade.yml of `tree` against the running guest; its output and exit code."""
    (tree / "upgrade-vars.json").write_text(json.dumps(values))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(tree / "ansible.cfg"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_SSH_RETRIES": "5",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }
    args = [
        "ansible-playbook",
        "-i",
        "127.0.0.1,",
        upgrade.PLAYBOOK,
        "--extra-vars",
        "@upgrade-vars.json",
        "--extra-vars",
        json.dumps(
            {
                "ansible_port": guest.port,
                "ansible_user": guest.user,
                "ansible_ssh_private_key_file": str(guest.key),
                "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
            }
        ),
    ]
    try:
        # In this step's process group: whatever stops the step's group stops ansible with it.
        process = subprocess.Popen(args, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except FileNotFoundError:
        raise FactoryError("ansible-playbook is not installed; run make setup") from None
    try:
        output, _ = process.communicate()
    except BaseException:  # interrupted (Ctrl-C, pulumi cancel): stop ansible too
        process.terminate()
        process.wait()
        raise
    log.write_text(output)
    return output, process.returncode


def delete(previous_stdout: str) -> None:
    record = last_json(previous_stdout)
    if not record:
        return
    folder = Path(record.get("dir", ""))
    pid = int(record.get("pid", 0))
    if pid and _is_our_qemu(pid, folder):
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.2)
    if folder.name and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    print(f"launch: stopped the VM of {record.get('version')}", file=sys.stderr)


def running(state_dir: Path, vm_name: str) -> list[str]:
    """The VMs of `vm_name` that run now from `state_dir`, as "<name> <version> (pid N)"."""
    found = []
    for folder in sorted(state_dir.glob(f"{vm_name}-*")):
        try:
            pid = int((folder / "qemu.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            version = (folder / "version").read_text().strip()
        except OSError:  # launched before the file existed: the folder names the first version
            version = folder.name[len(vm_name) + 1 :].rsplit("-", 1)[0]
        if _is_our_qemu(pid, folder):
            found.append(f"{vm_name} {version} (pid {pid})")
    return found


def _is_our_qemu(pid: int, folder: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "qemu-system" in cmdline and str(folder) in cmdline


def keep(previous_stdout: str) -> dict[str, object]:
    """The update of a replace-strategy launch whose version did not change (only a setting did,
    e.g. where its image comes from): the running VM stays, and is still what the launch reports."""
    record = last_json(previous_stdout)
    if not record:
        raise FactoryError("no earlier launch to keep; replace the machine (pulumi up --replace on its launch)")
    print(f"launch: {record.get('version')} keeps running; only a setting of its launch changed", file=sys.stderr)
    return record


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["create"]:
        return run_step("launch", lambda: create(dict(os.environ)))
    if args == ["upgrade"]:
        return run_step(
            "launch", lambda: upgrade_in_place(dict(os.environ), os.environ.get("PULUMI_COMMAND_STDOUT", ""))
        )
    if args == ["keep"]:
        return run_step("launch", lambda: keep(os.environ.get("PULUMI_COMMAND_STDOUT", "")))
    if args == ["delete"]:
        return run_step("launch", lambda: delete(os.environ.get("PULUMI_COMMAND_STDOUT", "")))
    print("usage: python -m imagefactory.launch_local create|upgrade|keep|delete", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
