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

ROOT = Path(__file__).resolve().parents[2]

WAITING_TEST = """
import os, subprocess, time
from pathlib import Path

def test_waits():
    child = subprocess.Popen(["sleep", "300"])
    Path(os.environ["PIDS"], "{name}").write_text(str(child.pid))
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


def test_an_interrupt_stops_both_lanes(tmp_path: Path) -> None:
    project = _project(tmp_path)
    pids = tmp_path / "pids"
    pids.mkdir()
    runs = tmp_path / "runs"
    runs.mkdir()
    env = dict(os.environ, PIDS=str(pids), TMPDIR=str(runs))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    script = subprocess.Popen(
        ["bash", str(project / "tools" / "test.sh")],
        env=env,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(pids.iterdir())) < 2:
            assert time.monotonic() < deadline, "the two lanes' tests did not start"
            assert script.poll() is None, script.communicate()[0]
            time.sleep(0.2)
        children = {p.name: int(p.read_text()) for p in pids.iterdir()}
        os.killpg(script.pid, signal.SIGINT)  # Ctrl-C
        output, _ = script.communicate(timeout=90)
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
    for name, pid in children.items():
        still = _alive(pid)
        if still:
            os.kill(pid, signal.SIGKILL)
        assert not still, f"{name}'s child is still running after the interrupt"
    assert script.returncode == 130, output.decode()
    assert b"stopping lane two" in output
    assert list(runs.iterdir()) == [], "the test run's folder was left behind"
