"""Integration fixtures: the real Pulumi engine, Packer, QEMU and Ansible, on a copy of the project.

Every test works in a temporary copy with its own git repository, file backend and registry,
so the user's own stacks are never touched. The stage-0 upstream image is cached in the
per-user cache and shared with `make release`.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagefactory.upstream import UNREACHABLE_SUMS, UNREACHABLE_URL
from tests.helpers import copy_project, init_git, pulumi, pulumi_env

# A SIGTERM (tools/test.sh stopping lane two, a CI runner cancelling the job) unwinds the tests like
# Ctrl-C, so each test's `finally` and each fixture's teardown get to run (Python's default would end
# the process on the spot). A `pulumi up` cut short may leave a VM its state does not know; the
# VMs run under the test run's folder, where tools/test.sh stops whatever is left.
if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    signal.signal(signal.SIGTERM, signal.default_int_handler)


@dataclass
class Project:
    path: Path
    env: dict[str, str]
    stack: str = "local"

    def pulumi(self, *args: str, check: bool = True):  # type: ignore[no-untyped-def]  # a test helper; its callers pass whatever the mocked API takes
        return pulumi(self.path, *args, "--stack", self.stack, env=self.env, check=check)

    def config(self, key: str, value: str) -> None:
        self.pulumi("config", "set", f"imagefactory:{key}", value)

    def outputs(self) -> dict:
        return json.loads(self.pulumi("stack", "output", "--json", "--show-secrets").stdout or "{}")

    def registry_index(self) -> dict:
        index = self.path / ".state" / "registry" / "index.json"
        return json.loads(index.read_text()) if index.exists() else {"versions": {}}


def new_project(folder: Path, prepare: Callable[[Path], None] | None = None, tag: str | None = None) -> Project:
    path = copy_project(folder)
    if prepare:
        prepare(path)
    init_git(path, tag)
    project = Project(path, pulumi_env(path))
    pulumi(path, "stack", "init", project.stack, "--secrets-provider", "passphrase", env=project.env)
    # An upstream on a closed local port: the pipeline falls back to the stage-0 image as on a
    # machine without internet, and sends nothing to any other address.
    project.config("upstreamUrl", UNREACHABLE_URL)
    project.config("upstreamChecksum", UNREACHABLE_SUMS)
    # The release gate boots each format; the session's release (`released`) runs it whole, and
    # the other builds skip it, so its four boots are paid once.
    project.config("bootCheck", "none")
    return project


@pytest.fixture(scope="session")
def released(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """One real release of the working tree: stage-0 upstream, Packer build, seal check, formats."""
    project = new_project(tmp_path_factory.mktemp("release") / "project")
    # A change outside the build inputs: the version is dev-<sha>-dirty, so a later change to
    # an Ansible task keeps the version name and must still rebuild.
    (project.path / "README.md").write_text("changed after the commit\n")
    project.config("bootCheck", "all")
    project.pulumi("up", "--yes", "--skip-preview")
    return project


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """moto's AWS server on a free port of 127.0.0.1, for one test module: its endpoint URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
