"""Releases never change, and applications launch them by version (turn-and-burn).

A throwaway git repository gets two tags. The image stack publishes release-0.1.0, then
release-0.2.0 (whose release is killed twice on the way, see test_faults.py), and 0.1.0 must stay
byte-for-byte untouched. Moving a tag is refused. The
example application stack then runs 0.1.0 in a local VM, is bumped to 0.2.0 (the preview shows
a create-before-delete replacement and the new VM reports 0.2.0), and is rolled back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagefactory import reproducible
from tests.helpers import pulumi
from tests.integration.conftest import Project, new_project
from tests.integration.test_faults import (
    assert_clean_after_kill,
    live_keys,
    make_release,
    processes_of,
    release_and_kill,
)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    ).stdout.strip()


def quick_baseline(path: Path) -> None:
    """One small package instead of the baseline's list, and no time sync: the full baseline is
    covered by test_release; the one package is what the offline rebuild installs from the
    release's recorded packages."""
    defaults = path / "ansible" / "roles" / "baseline" / "defaults" / "main.yml"
    text = defaults.read_text()
    assert "  - bind9-dnsutils\n" in text
    defaults.write_text(
        text.replace("  - bind9-dnsutils\n", "").replace(
            "baseline_timesync_enabled: true", "baseline_timesync_enabled: false"
        )
    )


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file of a published version: (inode, mtime_ns, sha256)."""
    from imagefactory.checksums import file_digest

    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, file_digest(p)) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def two_releases(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """release-0.1.0, built from its tag (base and functional stages); release-0.2.0 comes in the
    first test. Independent of the session's release, so this module runs beside it."""
    project = new_project(tmp_path_factory.mktemp("releases") / "project", quick_baseline, tag="release-0.1.0")
    # The second release changes a functional role only: its base key is unchanged.
    functional = project.path / "ansible" / "roles" / "health" / "templates" / "health.py.j2"
    functional.write_text(functional.read_text() + "# second release\n")
    git(project.path, "commit", "-qam", "second release")
    git(project.path, "tag", "release-0.2.0")
    project.config("buildWorkingTree", "false")
    project.pulumi("config", "set", "--path", "imagefactory:releases[0]", "release-0.1.0")
    previewed = project.pulumi("preview", "--diff")
    preview = previewed.stdout + previewed.stderr  # the program's messages go to stderr
    assert "base-release-0.1.0-packer" in preview, "the first release builds its base from the tag"
    project.pulumi("up", "--yes", "--skip-preview")
    return project


def test_publishing_a_second_release_leaves_the_first_untouched(two_releases: Project) -> None:
    project = two_releases
    first = project.outputs()["images"]["release-0.1.0"]
    before = snapshot(Path(first["dir"]))
    project.pulumi("config", "set", "--path", "imagefactory:releases[1]", "release-0.2.0")
    preview = json.loads(project.pulumi("preview", "--json").stdout)
    ops = {step["urn"].split("::")[-1]: step["op"] for step in preview["steps"]}
    # `pulumi preview --json` lists unchanged resources only in its summary.
    assert {op for name, op in ops.items() if name.startswith("release-0.1.0")} <= {"same"}, ops
    assert ops["release-0.2.0-packer"] == "create"
    # Only the top stage builds: the base's recipe is unchanged, so 0.2.0 boots 0.1.0's base.
    assert ops["release-0.2.0-parent-verify"] == "create"
    assert not [name for name in ops if name.startswith("base-release-0.2.0")], ops

    # Faults on the way: killed during Packer, then during the conversions; each time nothing of
    # 0.2.0 is published, nothing of the run survives, and the next plain `make release` goes on.
    def packer_vm_runs() -> bool:
        return any("qemu-system" in line for line in processes_of(project))

    def converting() -> bool:
        return any((project.path / ".state" / "work").glob("release-0.2.0/.*.partial"))

    release_and_kill(project, packer_vm_runs)
    assert_clean_after_kill(project, "release-0.2.0")
    release_and_kill(project, converting, deadline=1800)
    assert_clean_after_kill(project, "release-0.2.0")
    make_release(project)
    assert live_keys() == [] and processes_of(project) == []

    images = project.outputs()["images"]
    assert set(images) == {"release-0.1.0", "release-0.2.0"}
    assert images["release-0.1.0"] == first, "0.1.0's outputs are unchanged"
    assert snapshot(Path(first["dir"])) == before, "0.1.0's files are byte-for-byte untouched"
    assert images["release-0.2.0"]["commit"] == git(project.path, "rev-parse", "release-0.2.0")
    assert images["release-0.1.0"]["commit"] == git(project.path, "rev-parse", "release-0.1.0")
    index = project.registry_index()["versions"]
    assert {v: e["commit"] for v, e in index.items()} == {v: i["commit"] for v, i in images.items()}
    bases = [image["chain"][1] for image in (images["release-0.1.0"], images["release-0.2.0"])]
    assert bases[0] == bases[1], "one base under both releases"
    assert not [name for name in ops if name.startswith("base-")], "the published base is never rebuilt"
    assert images["release-0.2.0"]["chain"][2]["recipe"] != images["release-0.1.0"]["chain"][2]["recipe"]


def test_moving_a_released_tag_is_refused_before_anything_is_built(two_releases: Project) -> None:
    project = two_releases
    original = git(project.path, "rev-parse", "release-0.1.0")
    git(project.path, "tag", "-f", "release-0.1.0", "release-0.2.0")
    try:
        result = project.pulumi("preview", check=False)
    finally:
        git(project.path, "tag", "-f", "release-0.1.0", original)
    assert result.returncode != 0
    assert "tag release-0.1.0 now points at" in result.stdout
    assert "releases are immutable" in result.stdout
    assert "Traceback" not in result.stdout


def test_the_released_resources_are_protected(two_releases: Project) -> None:
    state = json.loads(project_export(two_releases))
    publish = [r for r in state["deployment"]["resources"] if r["urn"].endswith("release-0.1.0-publish")]
    assert publish and publish[0].get("protect") is True and publish[0].get("retainOnDelete") is True


def project_export(project: Project) -> str:
    return project.pulumi("stack", "export").stdout


class App:
    def __init__(self, image_project: Project, stack: str = "dev") -> None:
        self.path = image_project.path / "examples" / "app"
        self.env = image_project.env
        self.stack = stack

    def init(self) -> None:
        pulumi(self.path, "stack", "init", self.stack, "--secrets-provider", "passphrase", env=self.env)
        self.run("config", "set", "stateDir", str(self.path / ".state" / "vms"))

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return pulumi(self.path, *args, "--stack", self.stack, env=self.env, check=check)

    def use(self, version: str) -> None:
        self.run("config", "set", "imageVersion", version)

    def launch(self) -> dict:
        return json.loads(self.run("stack", "output", "--json").stdout)["launch"]


def make(image_project: Project, target: str, **variables: str) -> str:
    """A user's make target (promote, channels, revoke) in the image project; its output."""
    done = subprocess.run(
        ["make", "-s", target, *(f"{key}={value}" for key, value in variables.items())],
        cwd=image_project.path,
        env=image_project.env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"make {target} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout + done.stderr


def vm_ops(app: App) -> list[str]:
    preview = json.loads(app.run("preview", "--json").stdout)
    return [step["op"] for step in preview["steps"] if step["urn"].endswith("app-vm")]


IDENTITY = "cat /etc/machine-id; sudo cat /etc/ssh/ssh_host_ed25519_key.pub; cat ~/kept.txt"


def test_an_application_upgrades_in_place_keeping_the_machine_and_its_data(two_releases: Project) -> None:
    """0.1.0 is upgraded in place to 0.2.0 with 0.2.0's roles from its tag: same machine-id, same
    host keys, a file written before is still there; a failed run keeps 0.1.0 and the next up
    retries; applying 0.2.0 again changes nothing; a downgrade in place is refused."""
    from imagefactory.stamp import parse_stamp
    from imagefactory.vm import Guest

    app = App(two_releases, stack="inplace")
    app.init()
    app.run("config", "set", "upgradeStrategy", "in-place")
    app.use("release-0.1.0")
    try:
        app.run("up", "--yes", "--skip-preview")
        first = app.launch()
        assert first["reported_version"] == "release-0.1.0" and first["history"] == ["release-0.1.0"]
        vm = Guest.attach(Path(first["dir"]), first["ssh_port"], "health")

        def on_vm(command: str) -> str:
            result = vm.ssh(command)
            assert result.returncode == 0, result.stderr
            return result.stdout

        on_vm("echo 'written before the upgrade' > ~/kept.txt")
        identity = on_vm(IDENTITY)
        service = "systemctl show --property MainPID --value imagefactory-health.service"
        service_before = on_vm(service).strip()

        app.use("release-0.2.0")
        assert vm_ops(app) == ["update"], "in place, a new version updates the VM instead of replacing it"
        # A task of 0.2.0's roles fails (the package mirror is down): the VM keeps reporting 0.1.0.
        down = "/etc/apt/sources.list.d/down.list"
        on_vm(f"echo 'deb http://127.0.0.1:9/debian bookworm main' | sudo tee {down}")
        failed = app.run("up", "--yes", "--skip-preview", check=False)
        assert failed.returncode != 0
        assert "failed at task 'hardening : Install pam_pwquality'" in failed.stdout, failed.stdout[-3000:]
        assert "the VM still reports release-0.1.0" in failed.stdout
        assert parse_stamp(on_vm("cat /etc/release"))["IMAGE_VERSION"] == "release-0.1.0"
        # The cause fixed, the next up retries the upgrade.
        on_vm(f"sudo rm {down}")
        app.run("up", "--yes", "--skip-preview")
        second = app.launch()
        assert second["pid"] == first["pid"] and second["dir"] == first["dir"], "the same VM, never replaced"
        stamp = parse_stamp(on_vm("cat /etc/release"))
        assert stamp["IMAGE_VERSION"] == second["reported_version"] == "release-0.2.0"
        assert stamp["IMAGE_HISTORY"] == "release-0.1.0 release-0.2.0"
        assert stamp["IMAGE_COMMIT"] == git(two_releases.path, "rev-parse", "release-0.2.0")
        assert on_vm(IDENTITY) == identity, "machine-id, host keys and data are kept"
        assert on_vm("ls /etc/release.before-upgrade 2>/dev/null || true") == "", "no leftover of the failed run"
        # 0.2.0 changed the service's program: the running service was restarted onto it.
        assert on_vm(service).strip() not in ("", "0", service_before)
        fetch = "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/health').read().decode())\""
        assert json.loads(on_vm(fetch)) == {"status": "ok", "version": "release-0.2.0", "stage": "functional"}

        # Idempotence: 0.2.0's roles applied again over 0.2.0 change nothing.
        image = two_releases.outputs()["images"]["release-0.2.0"]["formats"]["qcow2"]
        env = {
            **two_releases.env,
            "PYTHONPATH": str(two_releases.path),
            "PULUMI_COMMAND_STDOUT": json.dumps(second),
            "IMAGE_PATH": image["path"],
            "IMAGE_SHA256": image["sha256"],
            "IMAGE_VERSION": "release-0.2.0",
            "VM_NAME": "app",
            "STATE_DIR": str(app.path / ".state" / "vms"),
            "UPGRADE_STRATEGY": "in-place",
            "REAPPLY": "1",
        }
        again = subprocess.run(
            [sys.executable, "-m", "imagefactory.launch_local", "upgrade"],
            cwd=two_releases.path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert again.returncode == 0, again.stderr[-3000:]
        assert json.loads(again.stdout.splitlines()[-1])["changed"] == 0, "every role is idempotent: changed=0"

        # Back to 0.1.0 in place is refused, naming the way out; the VM keeps 0.2.0.
        app.use("release-0.1.0")
        refused = app.run("up", "--yes", "--skip-preview", check=False)
        assert refused.returncode != 0
        assert "release-0.1.0 is older than release-0.2.0" in refused.stdout and "replace the machine" in refused.stdout
        assert parse_stamp(on_vm("cat /etc/release"))["IMAGE_VERSION"] == "release-0.2.0"
    finally:
        app.run("destroy", "--yes", check=False)


def test_an_application_launches_by_version_and_upgrades_by_turn_and_burn(two_releases: Project) -> None:
    app = App(two_releases)
    app.init()
    try:
        app.use("release-9.9.9")
        missing = app.run("preview", check=False)
        assert missing.returncode != 0
        assert "'release-9.9.9' is not published by the image stack; it has: release-0.1.0, release-0.2.0" in (
            missing.stdout
        )

        app.use("release-0.1.0")
        app.run("up", "--yes", "--skip-preview")
        first = app.launch()
        assert first["reported_version"] == "release-0.1.0"
        built_on = json.loads(app.run("stack", "output", "--json").stdout)["builtOn"]
        assert [line.split()[0] for line in built_on] == ["upstream", "base", "functional"], built_on
        assert Path(f"/proc/{first['pid']}").exists()

        # A version bump is a replacement (turn-and-burn), as the reviewer's preview shows.
        app.use("release-0.2.0")
        preview = json.loads(app.run("preview", "--json").stdout)
        vm_ops = [step["op"] for step in preview["steps"] if step["urn"].endswith("app-vm")]
        assert vm_ops == ["replace"], vm_ops

        # Follow a channel instead: `make promote` points stable at the running version, so the app
        # taking the channel changes nothing...
        make(two_releases, "promote", CHANNEL="stable", VERSION="release-0.1.0")
        app.run("config", "rm", "imageVersion")
        app.run("config", "set", "imageChannel", "stable")
        preview = json.loads(app.run("preview", "--json").stdout)
        vm_ops = [step["op"] for step in preview["steps"] if step["urn"].endswith("app-vm")]
        assert vm_ops in ([], ["same"]), vm_ops
        # ...and promoting 0.2.0 moves the app: its preview shows the replacement, its up makes it.
        make(two_releases, "promote", CHANNEL="stable", VERSION="release-0.2.0")
        preview = json.loads(app.run("preview", "--json").stdout)
        vm_ops = [step["op"] for step in preview["steps"] if step["urn"].endswith("app-vm")]
        assert vm_ops == ["replace"], vm_ops
        upgrade = app.run("up", "--yes", "--skip-preview").stdout
        created, deleting = upgrade.find("app-vm created replacement"), upgrade.find("app-vm deleting original")
        assert 0 <= created < deleting, "the new VM is created (and healthy) before the old one is deleted"
        second = app.launch()
        assert second["reported_version"] == "release-0.2.0"
        assert not Path(f"/proc/{first['pid']}").exists(), "the old VM is gone once the new one is healthy"
        listed = make(two_releases, "channels")
        assert "stable" in listed and "release-0.1.0" in listed and "release-0.2.0" in listed, listed

        # The version is revoked: the app's preview fails with the reason, the VM keeps running.
        make(two_releases, "revoke", VERSION="release-0.2.0", REASON="CVE-2026-0001 in openssh")
        refused = app.run("preview", check=False)
        assert refused.returncode != 0
        assert "channel stable points at release-0.2.0 is revoked since" in refused.stdout, refused.stdout[-3000:]
        assert "CVE-2026-0001 in openssh" in refused.stdout and "Traceback" not in refused.stdout
        assert f"keep running until this stack changes: app release-0.2.0 (pid {second['pid']})" in refused.stdout
        assert Path(f"/proc/{second['pid']}").exists(), "a revocation never stops a running machine"
        # Rolling back is promoting the previous version: the app moves with the channel.
        make(two_releases, "promote", CHANNEL="stable", VERSION="release-0.1.0")
        app.run("up", "--yes", "--skip-preview")
        rolled_back = app.launch()
        assert rolled_back["reported_version"] == "release-0.1.0", "rolling back is promoting the previous version"
        assert not Path(f"/proc/{second['pid']}").exists()
        # `pulumi destroy` stops the VM and deletes its folder (disk, key, seed), as README says.
        app.run("destroy", "--yes")
        assert not Path(f"/proc/{rolled_back['pid']}").exists(), "the VM is stopped"
        assert not Path(rolled_back["dir"]).exists(), "its disk, key and seed are deleted"
    finally:
        app.run("destroy", "--yes", check=False)


def ova_descriptor(ova: Path) -> str:
    import tarfile

    with tarfile.open(ova) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".ovf"))
        handle = tar.extractfile(member)
        assert handle is not None
        return handle.read().decode()


def test_a_release_is_rebuilt_offline_from_its_tag_and_recorded_packages(two_releases: Project, tmp_path: Path) -> None:
    """Change the checkout's conversion/OVF code and an Ansible role, then `make rebuild` the tag:
    the tag's own code and roles run, apt in the build VM reads only the local repository of the
    release's recorded packages (and installs the one package the quick baseline adds from it),
    and every file is bit-identical to the registry's copy."""
    project = two_releases
    first = project.outputs()["images"]["release-0.1.0"]
    recorded = (Path(first["dir"]) / "packages.tsv").read_text()
    ping = next(line.split("\t") for line in recorded.splitlines() if line.startswith("iputils-ping\t"))
    assert len(ping[3]) == 64, f"the package's digest is recorded: {ping}"
    changed = {
        project.path / "imagefactory" / "ovf.py": ("<Annotation>", "<Annotation>changed in the checkout: "),
        project.path / "ansible" / "roles" / "release" / "templates" / "release.j2": ("", "CHECKOUT_ONLY=1\n"),
    }
    originals = {path: path.read_text() for path in changed}
    keep = tmp_path / "rebuilt"
    try:
        for path, (old, new) in changed.items():
            path.write_text(originals[path].replace(old, new, 1) if old else originals[path] + new)
        output = make(project, "rebuild", VERSION="release-0.1.0", KEEP=str(keep))
    finally:
        for path, text in originals.items():
            path.write_text(text)
    report = json.loads((project.path / ".state" / "rebuild.json").read_text())
    assert "release-0.1.0 (functional): bit-identical to the registry's copy" in output, output[-3000:]
    assert report["bit_identical"] and {row["artifact"] for row in report["artifacts"]} >= set(first["formats"])
    # The package the functional stage adds came from the local repository, by its recorded digest.
    assert f"/pool/{ping[3]}.deb" in report["packages"]["downloaded"], report["packages"]
    again = report["formats"]
    # Had the files differed, the layers would say where.
    compared = reproducible.compare(
        {"raw": project.path / first["formats"]["raw"]["path"], "formats": first["formats"]},
        {"raw": Path(again["raw"]["path"]), "formats": again},
        tmp_path / "compare",
    )
    found = [{k: d.get(k) for k in ("layer", "path", "field", "a", "b")} for d in compared["found"]][:40]
    assert compared["passed"], f"layers {compared['layers_that_differ']} differ; {compared['unexplained']}; {found}"
    descriptor = ova_descriptor(Path(again["ova"]["path"]))
    assert "changed in the checkout" not in descriptor and "<Annotation>release-0.1.0" in descriptor


def test_a_rebuild_names_the_recorded_packages_it_cannot_find_and_builds_nothing(two_releases: Project) -> None:
    """With an empty package cache, the offline rebuild stops before any VM boots."""
    project = two_releases
    env = {**project.env, "IMAGEFACTORY_PACKAGES": str(project.path / ".state" / "empty-package-store")}
    done = subprocess.run(
        ["make", "-s", "rebuild", "VERSION=release-0.1.0"], cwd=project.path, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "package(s) recorded by release-0.1.0 are not in the package cache" in done.stderr, done.stderr[-2000:]
    assert "nothing was built" in done.stderr and "packer build" not in done.stdout + done.stderr
    listed = (project.path / ".state" / "rebuild-missing.txt").read_text().splitlines()
    assert any(line.startswith("iputils-ping ") for line in listed), listed[:5]
    assert not (project.path / ".state" / "rebuild.json").exists(), "no verdict is left behind"


def test_a_moved_checkout_with_another_accelerator_and_timeout_rebuilds_nothing(
    two_releases: Project, tmp_path: Path
) -> None:
    """Host facts are never resource inputs: copy the checkout with its state elsewhere, switch
    the accelerator, raise the timeout; the preview is empty and `make release` builds nothing.
    A real content change to a published release is refused naming the release and the key."""
    moved_path = tmp_path / "moved" / "checkout"
    moved_path.parent.mkdir()
    subprocess.run(["cp", "-a", str(two_releases.path), str(moved_path)], check=True)
    env = {**two_releases.env, "PULUMI_BACKEND_URL": f"file://{moved_path / '.state' / 'pulumi'}"}
    moved = Project(moved_path, env)
    moved.config("accelerator", "tcg")
    moved.config("buildTimeoutMinutes", "120")
    moved.pulumi("preview", "--expect-no-changes")
    result = subprocess.run(["make", "release"], cwd=moved_path, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.split("Resources:")[-1]
    for word in ("created", "updated", "replaced", "deleted"):
        assert f" {word}" not in summary, result.stdout[-4000:]
    images = moved.outputs()["images"]
    for entry in images.values():
        assert entry["dir"].startswith(str(moved_path)), "the lookup table names the moved checkout's files"

    moved.config("diskSizeMiB", "4096")
    refused = moved.pulumi("preview", check=False)
    assert refused.returncode != 0
    assert "release-0.1.0 was published with imagefactory:diskSizeMiB 3072" in refused.stdout, refused.stdout[-3000:]
    assert "marked for protection" not in refused.stdout and "Traceback" not in refused.stdout
