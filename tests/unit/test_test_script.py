"""tools/test.sh, the test run of `make test`: a Ctrl-C stops both lanes of image tests.

The script runs for real on a small project of its own whose "image tests" each start a child
process and wait; the terminal's Ctrl-C is a SIGINT to the script's process group.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

WAITING_TEST = """
import os, subprocess, sys, time
from pathlib import Path

def record(name, pid):
    partial = Path(os.environ["PIDS"], name + ".partial")
    partial.write_text(str(pid))
    partial.rename(partial.with_suffix(""))

def test_waits(tmp_path):
    record("{name}.pytest", os.getpid())
    # A child in the test's process group, and one in a session of its own (as a launched VM),
    # whose command line names the test's folder.
    child = subprocess.Popen(["sleep", "300"])
    vm = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", str(tmp_path)], start_new_session=True
    )
    record("{name}.child", child.pid)
    record("{name}.vm", vm.pid)
    time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "tools").mkdir(parents=True)
    shutil.copy2(ROOT / "tools" / "test.sh", project / "tools" / "test.sh")
    integration = project / "tests" / "integration"
    integration.mkdir(parents=True)
    for name in ("test_release", "test_releases"):
        (integration / f"{name}.py").write_text(WAITING_TEST.format(name=name))
    for name in ("test_failures", "test_faults"):
        (integration / f"{name}.py").write_text("def test_nothing():\n    pass\n")
    (project / "tests" / "test_other.py").write_text("def test_other():\n    pass\n")
    return project


def _environment(runs: Path, **extra: str) -> dict[str, str]:
    """This interpreter's pytest first on PATH; the script's run folder made under `runs`."""
    runs.mkdir()
    env = dict(os.environ, TMPDIR=str(runs), **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


@pytest.mark.parametrize("presses", [1, 2])
def test_an_interrupt_stops_both_lanes(presses: int, tmp_path: Path) -> None:
    """A Ctrl-C, or two (the second while the first is being handled), stops everything."""
    project = _project(tmp_path)
    pids = tmp_path / "pids"
    pids.mkdir()
    runs = tmp_path / "runs"
    env = _environment(runs, PIDS=str(pids))
    script = subprocess.Popen(
        ["bash", str(project / "tools" / "test.sh")],
        env=env,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    children: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 60
        while len(list(pids.glob("*.vm"))) < 2:
            assert time.monotonic() < deadline, "the two lanes' tests did not start"
            assert script.poll() is None, script.communicate()[0]
            time.sleep(0.2)
        children = {p.name: int(p.read_text()) for p in pids.iterdir()}
        os.killpg(script.pid, signal.SIGINT)  # Ctrl-C
        if presses == 2:
            time.sleep(2)  # the script is now stopping (it waits for lane two, then sweeps for 5 s)
            os.killpg(script.pid, signal.SIGINT)
        output, _ = script.communicate(timeout=150)
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
        lane2 = children.get("test_releases.pytest")
        if lane2 is not None and _alive(lane2):
            os.killpg(lane2, signal.SIGKILL)  # its own session: the script's group is not it
    still = [name for name, pid in children.items() if _alive(pid)]
    for name in still:
        os.kill(children[name], signal.SIGKILL)
    assert still == [], "still running after the interrupt"
    assert script.returncode == 130, output.decode()
    assert b"stopping lane two" in output
    assert len(children) == 6
    assert list(runs.iterdir()) == [], "the test run's folder was left behind"


@pytest.mark.parametrize("failing", [None, "test_release", "test_releases", "test_other"])
def test_the_exit_code_follows_every_lane(failing: str | None, tmp_path: Path) -> None:
    """Lane one, lane two (in its own session) and the other tests each decide the exit code."""
    project = _project(tmp_path)
    integration = project / "tests" / "integration"
    for name in ("test_release", "test_releases"):
        (integration / f"{name}.py").write_text("def test_quick():\n    pass\n")
    if failing:
        folder = project / "tests" if failing == "test_other" else integration
        (folder / f"{failing}.py").write_text(f"def test_fails():\n    assert False, 'failed in {failing}'\n")
    runs = tmp_path / "runs"
    env = _environment(runs)
    done = subprocess.run(
        ["bash", str(project / "tools" / "test.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == (1 if failing else 0), done.stdout + done.stderr
    assert "the release history, built beside the session's release (exit code " in done.stdout
    if failing:
        assert f"failed in {failing}" in done.stdout, "the failing lane's report is shown"
    assert list(runs.iterdir()) == []
