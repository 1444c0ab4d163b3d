"""A real local release: from the stage-0 upstream to a sealed image in five formats.

The session fixture `released` runs one `pulumi up` on a copy of the project. These tests then
check what a user gets: the formats, their checksums, a guest that boots and reports its
version, a seal check that passes (and catches a planted key), and a second run that
rebuilds nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagefactory import launch_local, packages, upgrade, vm
from imagefactory.checksums import file_digest, parse_sums
from imagefactory.debugfs import Filesystem
from imagefactory.errors import FactoryError
from imagefactory.gpt import root_partition
from imagefactory.registry import verify_folder
from imagefactory.sealcheck import check_disk
from imagefactory.stamp import parse_stamp
from tests.integration.conftest import Project

FORMATS = {"raw": "raw", "qcow2": "qcow2", "vhd": "vpc", "vmdk": "vmdk", "ova": None}


def only_version(project: Project) -> tuple[str, dict]:
    images = project.outputs()["images"]
    assert len(images) == 1, images
    return next(iter(images.items()))


def test_every_format_is_published_with_a_matching_checksum(released: Project) -> None:
    version, image = only_version(released)
    assert version.startswith("dev-") and version.endswith("-dirty")
    assert set(image["formats"]) == set(FORMATS)
    folder = Path(image["dir"])
    sums = parse_sums((folder / "SHA256SUMS").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    # The sums cover every format and the package set published beside it, and nothing else.
    listed = {Path(entry["path"]).name for entry in image["formats"].values()}
    listed |= {manifest["packages"]["tsv"]["file"], manifest["packages"]["sbom"]["file"]}
    assert set(sums) == listed
    for name in listed - {Path(entry["path"]).name for entry in image["formats"].values()}:
        assert file_digest(folder / name) == sums[name][1], name
    for fmt, entry in image["formats"].items():
        path = Path(entry["path"])
        assert file_digest(path) == entry["sha256"] == sums[path.name][1], fmt
        assert path.stat().st_size == entry["bytes"], fmt
        if FORMATS[fmt]:
            info = json.loads(
                subprocess.run(
                    ["qemu-img", "info", "--output=json", "-f", FORMATS[fmt], str(path)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            assert info["virtual-size"] == image["formats"]["raw"]["bytes"], fmt
    assert manifest["version"] == version and manifest["commit"] == image["commit"]
    assert released.registry_index()["versions"][version]["commit"] == image["commit"]


@pytest.fixture(scope="module")
def guest(released: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[vm.Guest]:
    """The published QCOW2, launched as a user launches it: a NoCloud seed gives a login with sudo."""
    _, image = only_version(released)
    running = vm.Guest(Path(image["formats"]["qcow2"]["path"]), tmp_path_factory.mktemp("guest")).start()
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def as_user(guest: vm.Guest, command: str, timeout: int = 120) -> str:
    result = guest.ssh(command, timeout=timeout)
    assert result.returncode == 0, f"{command!r} failed in the guest ({result.returncode}): {result.stderr}"
    return result.stdout


def test_the_launched_image_reports_its_version(released: Project, guest: vm.Guest) -> None:
    version, image = only_version(released)
    stamp = parse_stamp(as_user(guest, "cat /etc/release"))
    assert stamp["IMAGE_VERSION"] == version
    assert stamp["IMAGE_COMMIT"] == image["commit"]
    assert stamp["UPSTREAM_DIGEST"] == f"sha256:{image['upstream']['sha256']}"


def test_the_cloud_init_user_can_administer_the_machine_with_sudo(guest: vm.Guest) -> None:
    result = guest.ssh("sudo -n id -u", timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "0", result.stderr
    # cloud-init writes the machine's own name into /etc/hosts, so sudo can resolve it.
    assert "unable to resolve host" not in result.stderr, result.stderr
    modes = as_user(guest, "stat -c '%a %U %n' /usr/bin/sudo /usr/bin/su /usr/bin/passwd /usr/bin/mount")
    for line in modes.splitlines():
        assert line.startswith("4755 root "), f"setuid bit lost: {line}"


def test_the_launched_machine_runs_under_uefi_without_secure_boot(guest: vm.Guest) -> None:
    assert as_user(guest, "test -d /sys/firmware/efi && echo uefi || echo bios").strip() == "uefi"
    assert "SecureBoot disabled" in as_user(guest, "sudo -n mokutil --sb-state")


def test_every_format_booted_under_its_platforms_firmware_before_it_was_published(released: Project) -> None:
    """The release gate (bootCheck: all): QEMU booted each published file itself (the VHD through
    the vpc driver, the VMDK through the vmdk driver) under SeaBIOS, OVMF, and OVMF with Microsoft's
    keys and Secure Boot enforced; each reported this version and the firmware it was given."""
    version, image = only_version(released)
    manifest = json.loads((Path(image["dir"]) / "manifest.json").read_text())
    booted = {(b["format"], b["firmware"]): b for b in manifest["boot_checks"]}
    assert set(booted) == {("qcow2", "uefi"), ("vhd", "bios"), ("vhd", "secureboot"), ("vmdk", "bios"), ("ova", "bios")}
    for (fmt, firmware), record in booted.items():
        if fmt == "ova":
            assert record["same_disk_as"] == "vmdk"  # the OVA carries the VMDK that booted, byte for byte
            continue
        assert record["version"] == version, (fmt, firmware)
        assert record["firmware_seen"] == ("bios" if firmware == "bios" else "uefi"), (fmt, firmware)
    assert booted[("vhd", "secureboot")]["secure_boot"] == "SecureBoot enabled"
    assert manifest["firmwares"] == ["bios", "uefi", "secureboot"], "read offline from the boot chain"
    assert booted[("qcow2", "uefi")]["secure_boot"].startswith("SecureBoot disabled")


def test_the_machine_boots_the_kernel_that_apt_keeps_current(guest: vm.Guest) -> None:
    """GRUB loads /vmlinuz and /initrd.img, the links Debian moves to each newly installed kernel, so
    a kernel upgrade (and the old kernel's autoremoval) leaves a machine that boots the new one."""
    assert "BOOT_IMAGE=/vmlinuz " in as_user(guest, "cat /proc/cmdline")
    kernel = as_user(guest, "readlink -f /vmlinuz").strip()
    assert kernel == f"/boot/vmlinuz-{as_user(guest, 'uname -r').strip()}"


def test_file_capabilities_survive_and_an_unprivileged_user_can_ping(guest: vm.Guest) -> None:
    assert "cap_net_raw" in as_user(guest, "/usr/sbin/getcap /usr/bin/ping")
    assert as_user(guest, "id -u").strip() != "0"
    gateway = as_user(guest, "ip -4 route show default").split()[2]  # QEMU's user-mode gateway
    assert " 0% packet loss" in as_user(guest, f"ping -c 2 -W 5 {gateway}")


def test_the_hardening_is_in_effect_in_the_running_machine(guest: vm.Guest) -> None:
    """What the hardening role records is what the booted kernel, sshd, PAM and login use."""
    import yaml

    from tests.helpers import ROOT

    defaults = yaml.safe_load((ROOT / "ansible" / "roles" / "hardening" / "defaults" / "main.yml").read_text())
    wanted = defaults["hardening_sysctl"]
    keys = " ".join(sorted(wanted))
    running = dict(line.split(" = ", 1) for line in as_user(guest, f"sudo -n sysctl {keys}").splitlines())
    assert running == {k: str(v) for k, v in wanted.items()}, "every hardening sysctl is live after boot"
    assert as_user(guest, "cat /proc/sys/fs/suid_dumpable").strip() == "0"
    assert as_user(guest, "ulimit -Hc").strip() == "0", "a login gets no core dumps"
    sshd = as_user(guest, "sudo -n sshd -T")
    assert f"ciphers {defaults['hardening_sshd_ciphers']}" in sshd
    assert f"kexalgorithms {defaults['hardening_sshd_kex']}" in sshd
    assert f"macs {defaults['hardening_sshd_macs']}" in sshd
    for path in defaults["hardening_setuid_remove"]:
        mode = as_user(guest, f"stat -c %a {path} 2>/dev/null || echo absent").strip()
        assert mode in ("755", "absent"), f"{path} keeps its setuid bit: {mode}"
    assert "pam_pwquality.so" in as_user(guest, "cat /etc/pam.d/common-password")
    lines = as_user(guest, "grep -E '^(UMASK|HOME_MODE|LOGIN_RETRIES)[[:space:]]' /etc/login.defs").splitlines()
    assert dict(line.split() for line in lines) == defaults["hardening_login_defs"]


def test_the_example_service_answers_its_health_check(released: Project, guest: vm.Guest) -> None:
    version, _ = only_version(released)
    fetch = "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/health').read().decode())\""
    answer = json.loads(as_user(guest, fetch))
    assert answer == {"status": "ok", "version": version, "stage": "functional"}


def test_the_sbom_lists_exactly_the_packages_the_running_machine_has(released: Project, guest: vm.Guest) -> None:
    """The published package set and SBOM are the image's: dpkg in the launched VM agrees, name for
    name and version for version, and the packages carry the digests the archive published for them."""
    version, image = only_version(released)
    folder = Path(image["dir"])
    recorded = packages.parse((folder / packages.TSV_NAME).read_text())
    query = "dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version} ${Architecture}\\n'"
    running = sorted(tuple(line.split()[1:]) for line in as_user(guest, query).splitlines() if line.startswith("ii"))
    assert sorted((p.name, p.version, p.arch) for p in recorded) == running
    undigested = [p.name for p in recorded if p.sha256 == "-"]
    assert len(undigested) * 10 <= len(recorded), f"no archive digest for {undigested}"
    sbom = json.loads((folder / packages.SBOM_NAME).read_text())
    assert sbom["metadata"]["component"]["version"] == version
    assert (
        len(sbom["components"])
        == len(recorded)
        == json.loads((folder / "manifest.json").read_text())["packages"]["count"]
    )
    assert image["sbom"]["sha256"] == file_digest(Path(image["sbom"]["path"]))


def test_the_image_is_built_on_the_published_base_and_says_so(released: Project, guest: vm.Guest) -> None:
    """The chain of custody: upstream -> base -> functional, in the output, the manifest and the image."""
    version, image = only_version(released)
    upstream, base, top = image["chain"]
    assert upstream["stage"] == "upstream" and upstream["sha256"] == released.outputs()["upstream"]["sha256"]
    assert (base["stage"], base["version"], top["stage"], top["version"]) == ("base", version, "functional", version)
    base_file = released.path / ".state/registry/stages/base" / version / base["file"]["name"]
    assert file_digest(base_file) == base["file"]["sha256"] == image["upstream"]["sha256"]
    assert (
        top["sealed_raw_sha256"] == json.loads((Path(image["dir"]) / "manifest.json").read_text())["sealed_raw_sha256"]
    )
    assert base["recipe"].startswith("sha256:") and top["recipe"].startswith("sha256:")
    stamp = parse_stamp(as_user(guest, "cat /etc/release"))
    assert (stamp["IMAGE_STAGE"], stamp["UPSTREAM_SOURCE"]) == ("functional", f"base {version}")
    printed = subprocess.run(
        [sys.executable, "-m", "imagefactory.ancestry", "--registry", ".state/registry", "--version", version],
        cwd=released.path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed.splitlines()[1].startswith(f"base        {version}  commit {image['commit'][:12]}"), printed
    assert "chain verified: 2 stage(s) on the upstream" in printed


def test_the_released_raw_is_sealed_and_a_planted_host_key_is_caught(released: Project, tmp_path: Path) -> None:
    version, image = only_version(released)
    raw = Path(image["formats"]["raw"]["path"])
    assert check_disk(raw, version) == []
    copy = tmp_path / "planted.raw"
    subprocess.run(["cp", "--sparse=always", str(raw), str(copy)], check=True)
    key = tmp_path / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    Filesystem(copy, root_partition(copy).offset, writable=True).write(key, "/etc/ssh/ssh_host_ed25519_key")
    findings = [str(f) for f in check_disk(copy, version)]
    assert findings == ["ssh-hostkeys: /etc/ssh/ssh_host_ed25519_key: still present"]
    assert file_digest(raw) == image["formats"]["raw"]["sha256"], "the released file itself is untouched"


def test_a_second_release_with_nothing_changed_rebuilds_nothing(released: Project) -> None:
    before = released.outputs()
    result = released.pulumi("up", "--yes", "--skip-preview")
    assert "unchanged" in result.stdout
    for word in ("created", "updated", "replaced", "deleted"):
        assert f" {word}" not in result.stdout.split("Resources:")[-1], result.stdout
    assert released.outputs() == before


def test_the_release_and_the_app_run_with_their_state_and_registry_in_s3(
    released: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A team moves to object storage: the stack's state is copied into a bucket (the file backend's
    tree is the S3 backend's layout), the registry is set to another bucket, and
    `pulumi up` against the S3 backend publishes the version there, building nothing. The example
    application, on the same S3 backend and without the builder's files, finds the version through
    its StackReference, asks the shared registry whether it may launch it, and boots the QCOW2 it
    fetches from the store."""
    from imagefactory import s3registry
    from tests.helpers import pulumi
    from tests.s3server import S3Server

    version, image = only_version(released)
    hidden = tmp_path / "hidden.qcow2"  # the builder's copy, out of the application's reach
    server = S3Server(tmp_path / "server")
    registry = server.registry("images", "team")  # Object Lock: tests/integration/test_s3registry.py
    stack_file = released.path / "stacks" / "Pulumi.local.yaml"
    original_stack_file = stack_file.read_text()
    app_dir = released.path / "examples" / "app"
    env = {
        **released.env,
        **server.env,
        "PULUMI_BACKEND_URL": f"s3://state/pulumi?endpoint={server.endpoint}&region=us-east-1&use_path_style=true",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }
    try:
        server.start()
        server.bucket("state")
        server.bucket("images")
        client = server.client()
        state = Path(released.env["PULUMI_BACKEND_URL"].removeprefix("file://"))
        for path in sorted(p for p in state.rglob("*") if p.is_file()):
            client.upload_file(str(path), "state", f"pulumi/{path.relative_to(state)}")

        on_s3 = Project(released.path, env)
        on_s3.config("registry", registry)
        result = on_s3.pulumi("up", "--yes", "--skip-preview")
        summary = result.stdout.split("Resources:")[-1]
        assert "1 created" in summary and "replaced" not in summary and "deleted" not in summary, result.stdout[-3000:]
        shared = on_s3.outputs()["images"][version]["shared"]
        assert shared["registry"] == "s3://images/team"
        assert {fmt: item["sha256"] for fmt, item in shared["formats"].items()} == {
            fmt: item["sha256"] for fmt, item in image["formats"].items()
        }
        store = s3registry.parse(registry)
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)  # the lookup below runs in this process
        found = s3registry.lookup(store, version, "qcow2")  # every file checked against the store's checksums
        assert found["formats"]["qcow2"]["url"] == shared["formats"]["qcow2"]["url"]
        # Nothing to push again: a second `pulumi up` on the S3 backend changes nothing.
        on_s3.pulumi("preview", "--expect-no-changes")

        # The application as it runs on another machine than the builder: the registry it names is
        # the shared one, and the builder's QCOW2 is not there, so the launch fetches it from the store.
        pulumi(app_dir, "stack", "init", "shared", "--secrets-provider", "passphrase", env=env)
        config = (("imageVersion", version), ("stateDir", str(tmp_path / "vms")), ("imageRegistry", registry))
        for key, value in config:
            pulumi(app_dir, "config", "set", key, value, "--stack", "shared", env=env)
        local_qcow2 = Path(image["formats"]["qcow2"]["path"])
        local_qcow2.rename(hidden)
        pulumi(app_dir, "up", "--yes", "--skip-preview", "--stack", "shared", env=env)
        launched = json.loads(pulumi(app_dir, "stack", "output", "--json", "--stack", "shared", env=env).stdout)
        assert launched["launch"]["reported_version"] == version
        fetched = tmp_path / "vms" / "images" / image["formats"]["qcow2"]["sha256"] / local_qcow2.name
        assert file_digest(fetched) == image["formats"]["qcow2"]["sha256"], "booted from the store's copy"
    finally:
        if hidden.exists():
            hidden.rename(Path(image["formats"]["qcow2"]["path"]))
        if server.process is not None:
            pulumi(app_dir, "destroy", "--yes", "--stack", "shared", env=env, check=False)
            pulumi(app_dir, "stack", "rm", "--yes", "--force", "shared", env=env, check=False)
        stack_file.write_text(original_stack_file)  # the file backend's stack, as it was
        server.stop()
    assert released.pulumi("preview", "--expect-no-changes").returncode == 0, "the file backend's stack is unchanged"


def test_changing_one_ansible_task_rebuilds(released: Project) -> None:
    version, _ = only_version(released)
    task = released.path / "ansible" / "roles" / "baseline" / "tasks" / "packages.yml"
    original = task.read_text()
    task.write_text(original.replace("install_recommends: false", "install_recommends: false  # changed"))
    try:
        preview = json.loads(released.pulumi("preview", "--json").stdout)
    finally:
        task.write_text(original)
    ops: dict[str, set[str]] = {}
    for step in preview["steps"]:
        ops.setdefault(step["urn"].split("::")[-1], set()).add(step["op"])
    assert "replace" in ops[f"{version}-packer"], ops
    assert ops.get("upstream-resolve", {"same"}) == {"same"}, "the upstream is not fetched again"
    base = {name: op for name, op in ops.items() if name.startswith(f"base-{version}-")}
    # `preview --json` lists unchanged resources only in its summary: no base step may be listed.
    assert all(op == {"same"} for op in base.values()), f"a functional task rebuilds no base: {base}"


def test_a_corrupted_copy_of_a_release_fails_its_checksums(released: Project, tmp_path: Path) -> None:
    _, image = only_version(released)
    folder = tmp_path / "copy"
    shutil.copytree(image["dir"], folder)
    qcow2 = folder / Path(image["formats"]["qcow2"]["path"]).name
    with open(qcow2, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"corrupted")
    with pytest.raises(FactoryError, match=qcow2.name):
        verify_folder(folder)


def test_the_user_can_install_a_package(guest: vm.Guest) -> None:
    """The sealed image dropped apt's lists; a user refreshes them and installs, as on any cloud VM."""
    as_user(guest, "sudo -n apt-get update -q", timeout=900)
    # The machine receives Debian's security and stable updates, not only the release's packages.
    policy = as_user(guest, "apt-cache policy")
    for suite in ("bookworm/main", "bookworm-updates/main", "bookworm-security/main"):
        assert f" {suite} amd64 Packages" in policy, f"apt has no {suite} source:\n{policy}"
    as_user(
        guest, "sudo -n DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends tree", timeout=900
    )
    assert as_user(guest, "tree -L 1 /srv").startswith("/srv")


def test_a_tampered_base_stops_the_next_functional_build_naming_both_digests(released: Project) -> None:
    """Before a stage boots its parent, it re-verifies the parent against its published digest."""
    version, image = only_version(released)
    base_file = Path(image["chain"][1]["file"]["name"])
    base_file = released.path / ".state/registry/stages/base" / version / base_file
    published = file_digest(base_file)
    original = base_file.read_bytes()
    task = released.path / "ansible" / "roles" / "baseline" / "tasks" / "packages.yml"
    task_text = task.read_text()
    try:
        with open(base_file, "r+b") as handle:  # root writes through the read-only mode
            handle.seek(1 << 20)
            handle.write(b"tampered")
        tampered = file_digest(base_file)
        task.write_text(task_text.replace("install_recommends: false", "install_recommends: false  # changed"))
        result = released.pulumi("up", "--yes", "--skip-preview", check=False)
        assert result.returncode != 0
        assert (
            f"{base_file.relative_to(released.path)} does not match its published digest: published sha256:{published}, actual sha256:{tampered}"
            in result.stdout
        ), result.stdout[-3000:]
        assert "packer build of" not in result.stdout, "nothing booted the tampered base"
    finally:
        task.write_text(task_text)
        base_file.write_bytes(original)
    assert file_digest(base_file) == published
    assert only_version(released)[1] == image, "the published version is untouched"


def test_every_role_applied_again_to_a_launched_machine_changes_nothing(
    released: Project, guest: vm.Guest, tmp_path: Path
) -> None:
    """Idempotence, as ansible-lint's check runs it, for every role an in-place upgrade applies
    (hardening, the full baseline with its packages and time sync, the service, the stamp): the
    roles the image was built with, applied again to a machine launched from it, report changed=0.
    The seal is never applied to a running machine (ansible/upgrade.yml)."""
    stamp = parse_stamp(as_user(guest, "cat /etc/release"))
    tree = tmp_path / "ansible"
    shutil.copytree(released.path / "ansible", tree)
    output, code = launch_local.apply_roles(guest, tree, upgrade.ansible_vars(stamp, ()), tmp_path / "apply.log")
    assert code == 0, output[-3000:]
    assert upgrade.recap(output) == {"ok": upgrade.recap(output)["ok"], "changed": 0, "unreachable": 0, "failed": 0}, (
        "\n".join(line for line in output.splitlines() if line.startswith(("changed:", "TASK")))[-4000:]
    )
    for role in ("hardening", "baseline", "health", "release"):
        assert f"TASK [{role} :" in output, f"the {role} role ran"
    assert "TASK [baseline : Install the baseline packages]" in output, "the full baseline, packages included"


def test_the_stage0_image_is_built_again_from_its_recorded_packages_with_the_same_bytes(
    released: Project, tmp_path: Path
) -> None:
    """The base stage's manifest publishes the stage-0 image's package set; the stage-0 recipe,
    with mmdebstrap reading only a local repository of that set from the package store, builds an
    image with the recorded digest (what `make rebuild … UPSTREAM=rebuild` does)."""
    from imagefactory import host, rebuild

    version, image = only_version(released)
    base = released.path / ".state/registry/stages/base" / version
    manifest = json.loads((base / "manifest.json").read_text())
    assert manifest["upstream"]["source"].startswith("stage0:")
    listed = base / manifest["upstream"]["packages"]
    assert parse_sums((base / "SHA256SUMS").read_text())[listed.name] == ("sha256", file_digest(listed))
    recorded = packages.parse(listed.read_text())
    assert {"systemd-sysv", "openssh-server", "cloud-init", "shim-signed"} <= {p.name for p in recorded}
    assert all(p.sha256 != "-" for p in recorded), "every stage-0 package has the digest its index gave"
    recipe = manifest["upstream"]["source"].removeprefix("stage0:")
    rebuilt = rebuild.rebuild_stage0(
        released.path, recorded, manifest["upstream"]["sha256"], host.cache_dir(), tmp_path, recipe
    )
    assert file_digest(rebuilt) == manifest["upstream"]["sha256"] == image["chain"][0]["sha256"]
