"""The reproducibility check can fail: any artifact difference fails it unless it is found and allowed."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from imagefactory import fstree, gpt, reproducible
from imagefactory.debugfs import Filesystem
from imagefactory.errors import FactoryError
from tests.unit.conftest import make_gpt_disk


def _run(raw: Path) -> dict[str, object]:
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    return {"raw": str(raw), "formats": {"raw": {"sha256": digest}}, "dir": str(raw.parent)}


def _set_mtime(raw: Path, path: str, seconds: int) -> None:
    root = gpt.root_partition(raw)
    Filesystem(raw, root.offset, writable=True).run_script([f'sif "{path}" mtime {seconds}'])


def test_identical_builds_pass_at_the_first_layer(tmp_path: Path) -> None:
    a = make_gpt_disk(tmp_path / "a", {"/etc/release": "IMAGE_VERSION=1\n"})
    b = tmp_path / "b.raw"
    shutil.copy(a, b)
    report = reproducible.compare(_run(a), _run(b), tmp_path / "work")
    assert report["passed"] is True
    assert report["layers_that_differ"] == []


def test_a_file_that_differs_fails_the_check_and_is_named(tmp_path: Path) -> None:
    a = make_gpt_disk(tmp_path / "a", {"/etc/release": "IMAGE_VERSION=1\n"})
    b = tmp_path / "b.raw"
    shutil.copy(a, b)
    other = tmp_path / "other"
    other.write_text("IMAGE_VERSION=2\n")
    root = gpt.root_partition(b)
    Filesystem(b, root.offset, writable=True).run_script(['rm "/etc/release"', f'write "{other}" "/etc/release"'])
    report = reproducible.compare(_run(a), _run(b), tmp_path / "work")
    assert report["passed"] is False
    layer5 = next(layer for layer in report["layers"] if layer["layer"] == 5)
    assert {(d["path"], d["field"]) for d in layer5["differences"]} >= {("/etc/release", "sha256")}


def test_a_difference_in_times_only_is_found_in_layer_six_and_fails(tmp_path: Path) -> None:
    """The file manifest leaves times out; the root partition's bytes still differ, and the check says why."""
    a = make_gpt_disk(tmp_path / "a", {"/etc/release": "IMAGE_VERSION=1\n"})
    b = tmp_path / "b.raw"
    shutil.copy(a, b)
    _set_mtime(b, "/etc/release", 1_000_000_000)
    report = reproducible.compare(_run(a), _run(b), tmp_path / "work")
    assert report["passed"] is False
    layer5 = next(layer for layer in report["layers"] if layer["layer"] == 5)
    assert layer5["identical"] is True
    layer6 = next(layer for layer in report["layers"] if layer["layer"] == 6)
    assert ("/etc/release", "mtime") in {(d["path"], d["field"]) for d in layer6["differences"]}


def test_an_allowlisted_difference_passes_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = make_gpt_disk(tmp_path / "a", {"/etc/release": "IMAGE_VERSION=1\n"})
    b = tmp_path / "b.raw"
    shutil.copy(a, b)
    _set_mtime(b, "/etc/release", 1_000_000_000)
    monkeypatch.setattr(reproducible, "ALLOWLIST", [("*", "*", "this test allows everything")])
    monkeypatch.setattr(reproducible, "SUPERBLOCK_ALLOWED", dict.fromkeys(("Last write time", "Last mount time"), "t"))
    report = reproducible.compare(_run(a), _run(b), tmp_path / "work")
    assert report["not_allowed"] == 0
    assert report["unexplained"] is None
    assert report["passed"] is True


def test_artifacts_that_differ_with_nothing_found_inside_are_unexplained() -> None:
    layers = [
        {"layer": 1, "identical": False, "different": ["ova"], "bit_identical": ["raw"]},
        {"layer": 2, "identical": True},
        {"layer": 3, "identical": True, "partitions": [{"partition": 2, "a": "x", "b": "x", "root": True}]},
    ]
    verdict = reproducible.judge(layers, [])
    assert verdict["passed"] is False
    assert "ova differ" in verdict["unexplained"]


def test_a_partition_no_layer_reads_inside_is_unexplained() -> None:
    layers = [
        {"layer": 1, "identical": False, "different": ["raw"], "bit_identical": []},
        {"layer": 2, "identical": True},
        {"layer": 3, "identical": False, "partitions": [{"partition": 1, "a": "x", "b": "y", "root": False}]},
    ]
    allowed = [{"layer": 6, "path": "/x", "field": "mtime", "allowed": True}]
    verdict = reproducible.judge(layers, allowed)
    assert verdict["passed"] is False
    assert verdict["unexplained"].startswith("partition(s) 1 differ")


def test_debugfs_times_are_read_per_path(tmp_path: Path) -> None:
    a = make_gpt_disk(tmp_path / "a", {"/etc/release": "IMAGE_VERSION=1\n"})
    _set_mtime(a, "/etc/release", 0x12345678)
    root = gpt.root_partition(a)
    found = fstree.times(Filesystem(a, root.offset))
    assert found["/etc/release"]["mtime"].split(".")[0] == "12345678"
    assert set(found["/etc/release"]) >= {"ctime", "atime", "mtime"}


def test_the_command_exits_nonzero_and_says_why_when_the_check_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make reproducible` follows `passed`: two builds whose root differs only in times exit 1."""
    a = make_gpt_disk(tmp_path / "a", {"/etc/release": "IMAGE_VERSION=1\n"})
    b = tmp_path / "b.raw"
    shutil.copy(a, b)
    _set_mtime(b, "/etc/release", 1_000_000_000)
    builds = {"a": a, "b": b}
    monkeypatch.setattr(reproducible.versions, "resolve", lambda root: SimpleNamespace(name="dev-x", commit="c"))
    monkeypatch.setattr(reproducible.upstream, "resolve_with_fallback", lambda *args: None)
    monkeypatch.setattr(reproducible, "build_once", lambda label, *args: {**_run(builds[label]), "seconds": 1})
    monkeypatch.setattr(reproducible, "__file__", str(tmp_path / "pkg" / "reproducible.py"))
    report = tmp_path / "report.json"
    assert reproducible.main(["--report", str(report)]) == 1
    assert json.loads(report.read_text())["passed"] is False
    assert "layer" not in capsys.readouterr().err


def test_every_pair_must_pass_and_the_report_shows_the_failing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An intermittent cause shows in one pair of several: the run fails and reports that pair."""
    a = make_gpt_disk(tmp_path / "a", {"/etc/release": "IMAGE_VERSION=1\n"})
    same, other = tmp_path / "same.raw", tmp_path / "other.raw"
    shutil.copy(a, same)
    shutil.copy(a, other)
    _set_mtime(other, "/etc/release", 1_000_000_000)
    builds = {("pair-1", "a"): a, ("pair-1", "b"): same, ("pair-2", "a"): a, ("pair-2", "b"): other}
    built = lambda label, folder, *args: {**_run(builds[(folder.name, label)]), "seconds": 1}  # noqa: E731
    monkeypatch.setattr(reproducible, "build_once", built)
    version = SimpleNamespace(name="dev-x", commit="c")
    partial: list[dict] = []
    report = reproducible.run_pairs(2, tmp_path / "runs", version, None, tmp_path, tmp_path, True, partial.append)  # type: ignore[arg-type]
    assert [o["passed"] for o in report["pairs"]] == [True, False]
    assert report["passed"] is False and report["complete"] is True
    # After the first pair, the report so far: one pair passed, yet the run does not pass.
    assert [(p["complete"], p["passed"], len(p["pairs"])) for p in partial] == [(False, False, 1)]
    assert 6 in report["layers_that_differ"], "the report is the failing pair's"


def test_side_by_side_the_two_builds_of_a_pair_run_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each build waits for the other to have started: one after the other, the wait times out."""
    import threading

    a = make_gpt_disk(tmp_path / "a", {"/etc/release": "IMAGE_VERSION=1\n"})
    both_started = threading.Barrier(2, timeout=10)

    def built(label: str, folder: Path, *args: object) -> dict:
        both_started.wait()
        return {**_run(a), "seconds": 1}

    monkeypatch.setattr(reproducible, "build_once", built)
    version = SimpleNamespace(name="dev-x", commit="c")
    report = reproducible.run_pairs(1, tmp_path / "runs", version, None, tmp_path, tmp_path, True, side_by_side=True)  # type: ignore[arg-type]
    assert report["passed"] is True and report["pairs"][0]["built"] == "side by side"


@pytest.mark.parametrize("partner", ["running Packer", "not yet at Packer"])
def test_side_by_side_a_failed_build_stops_the_other(
    partner: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When one build of a pair fails, the other is not waited for: its running Packer is
    stopped, or a Packer it has yet to start is refused. The first failure is the error."""
    import signal

    from imagefactory import build

    stopped: list[object] = []

    def until(condition: Callable[[], object]) -> None:  # waits on state, not on a timer (10 s at most)
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)

    def packer(folder: Path) -> int:  # stands for Packer: it runs until it is stopped (a minute at most)
        return build.run_packer(["sleep", "60"], folder / "b.log", folder, {"PATH": "/usr/bin:/bin"})

    def built(label: str, folder: Path, *args: object) -> dict:
        folder.mkdir(parents=True, exist_ok=True)
        if label == "a":
            if partner == "running Packer":
                until(lambda: build._running)
            raise FactoryError("build a failed")
        if partner == "not yet at Packer":
            until(build._stopping.is_set)  # b is busy before Packer while run_pairs sees a's failure
        try:
            stopped.append(packer(folder))
        except FactoryError as exc:
            stopped.append(str(exc))
        raise FactoryError("build b was stopped")

    monkeypatch.setattr(reproducible, "build_once", built)
    version = SimpleNamespace(name="dev-x", commit="c")
    with pytest.raises(FactoryError, match="build a failed"):
        reproducible.run_pairs(1, tmp_path / "runs", version, None, tmp_path, tmp_path, True, side_by_side=True)  # type: ignore[arg-type]
    if partner == "running Packer":
        assert stopped == [-signal.SIGINT], "build b's Packer ran to its end instead of being stopped"
    else:
        assert len(stopped) == 1 and "stopped before Packer started" in str(stopped[0]), stopped
    assert not build._stopping.is_set(), "once the pair has ended, later builds may start"


def test_the_readme_quotes_the_recorded_reproducibility_run() -> None:
    """README's reproducibility result is the one in bench/results, not a run that was not recorded."""
    import re

    root = Path(__file__).resolve().parents[2]
    report = json.loads((root / "bench" / "results" / "reproducibility.json").read_text())
    readme = (root / "README.md").read_text()
    quoted = readme[readme.index("<!-- reproducible -->") : readme.index("<!-- /reproducible -->")]
    assert report["commit"][:12] in quoted
    assert report["complete"] is True and report["passed"] is True, "the recorded run is the five-pair proof"
    assert len(report["pairs"]) >= 5 and all(p["passed"] for p in report["pairs"])
    assert all(p["bit_identical_artifacts"] == ["raw", "qcow2", "vhd", "vmdk", "ova"] for p in report["pairs"])
    assert report["allowlist"] == [] and "empty allowlist" in quoted
    seconds = " ".join(re.findall(r"\d+/\d+", quoted))
    assert seconds == " ".join(f"{round(a)}/{round(b)}" for a, b in (p["build_seconds"] for p in report["pairs"]))
