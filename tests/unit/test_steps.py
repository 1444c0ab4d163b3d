"""The step contracts (imagefactory.steps): what a component sends is what the step parses.

Each request is sent the way pulumi-command sends it: its environment is set, its shell line
runs under a real shell, and the words the shell hands to Python are parsed by the request's
own parser. The values that come out must be the values that went in.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from imagefactory import steps
from imagefactory.errors import FactoryError

AWKWARD = 'a "quoted" $HOME `x` value; with spaces'


def sample(spec: Any) -> Any:
    """A value of the field's type that a shell would mangle if it ever reached the shell."""
    if spec.choices:
        return spec.choices[-1]
    if spec.kind is int:
        return 1795814353
    if spec.kind is Path:
        return Path(f"some dir/{spec.name} $x")
    return f"{spec.name}: {AWKWARD}"


def argv_from_shell(request: type[steps.Request], env: dict[str, str]) -> list[str]:
    """The argv that `exec python3 -P -m imagefactory.<script>` would get, from a real shell."""
    printer = "import json, sys; print(json.dumps(sys.argv[1:]))"
    line = f"exec python3 -c '{printer}' {request.script()}"
    out = subprocess.run(["/bin/sh", "-c", line], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("request_type", steps.ALL_REQUESTS, ids=lambda r: r.__name__)
def test_what_the_component_sends_is_what_the_step_parses(request_type: type[steps.Request]) -> None:
    specs = [s for s in request_type.specs() if s.shell is None]
    values = {s.name: sample(s) for s in specs}
    env = {key: str(value) for key, value in request_type.environment(**values).items()}
    words = argv_from_shell(request_type, {"PATH": "/usr/bin:/bin", **env})
    module_words = request_type.MODULE.split()  # e.g. registry publish
    assert words[: len(module_words)] == module_words
    parsed = request_type.parse(words[len(module_words) :], env)
    for name, value in values.items():
        assert getattr(parsed, name) == value, f"{request_type.__name__}.{name} did not survive the trip"


@pytest.mark.parametrize("request_type", steps.ALL_REQUESTS, ids=lambda r: r.__name__)
def test_each_contract_names_its_variables_once_and_shadows_nothing(request_type: type[steps.Request]) -> None:
    request_type.check_contract()


def test_a_contract_that_shadows_the_users_environment_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Bad(steps.Request):
        MODULE = "bad"
        path: str = steps.arg("PATH")

    with pytest.raises(TypeError, match="PATH"):
        Bad.check_contract()


def test_a_component_cannot_send_an_unknown_or_miss_a_required_input() -> None:
    with pytest.raises(TypeError, match=r"unknown inputs \['colour'\]"):
        steps.UpstreamRequest.environment(url="u", colour="blue")
    with pytest.raises(TypeError, match=r"missing inputs \['url'\]"):
        steps.UpstreamRequest.environment(checksum="sha256:x")


def test_a_result_missing_a_key_is_an_error_that_names_it() -> None:
    with pytest.raises(FactoryError, match=r"UpstreamResult is missing \['checksum'\]"):
        steps.parse_result(steps.UpstreamResult, 'progress\n{"path": "p", "sha256": "s", "source": "x", "via": "v"}\n')
    with pytest.raises(FactoryError, match="printed no BuildResult"):
        steps.parse_result(steps.BuildResult, "packer said something\n")


def test_a_result_is_read_from_the_last_line_and_round_trips() -> None:
    result = steps.SourcesResult(dir="d", commit="c" * 40)
    stdout = f"exporting\n{json.dumps(result.to_json())}\n"
    assert steps.parse_result(steps.SourcesResult, stdout) == result


@pytest.mark.parametrize(
    ("module", "request_type"),
    [
        ("imagefactory.build", steps.BuildRequest),
        ("imagefactory.formats", steps.FormatsRequest),
        ("imagefactory.upstream", steps.UpstreamRequest),
        ("imagefactory.sources", steps.SourcesRequest),
        ("imagefactory.build_cloud", steps.CloudBuildRequest),
    ],
)
def test_each_step_program_parses_its_contract(module: str, request_type: type[steps.Request]) -> None:
    """A step's `--help` lists exactly the contract's flags (plus its host facts): nothing is
    declared twice, so a flag added to one place and not the other cannot exist."""
    out = subprocess.run(
        ["python3", "-m", module, "--help"], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]
    ).stdout
    for spec in request_type.specs():
        if spec.cli and not spec.positional:
            assert spec.flag in out, f"{module} does not accept {spec.flag}"
    assert importlib.import_module(module)


def test_formats_refuses_a_raw_whose_seal_check_did_not_pass(tmp_path: Path) -> None:
    from imagefactory import formats

    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\0" * 4096)
    request = steps.FormatsRequest(
        raw=raw,
        raw_sha256="0" * 64,
        out_base=tmp_path / "out",
        version="dev-0123456789ab",
        commit="c" * 40,
        upstream_source="u",
        upstream_sha256="u" * 64,
        build_time="2026-01-01T00:00:00Z",
        build_epoch=0,
        formats="raw",
        sealed="False",
    )
    with pytest.raises(FactoryError, match=r"seal check .* did not pass"):
        formats.convert_all(request)
    assert not (tmp_path / "out").exists()


def test_an_input_left_out_reaches_the_step_as_its_default() -> None:
    env = steps.UpstreamRequest.environment(url="/img.qcow2")
    assert env == {"UPSTREAM_URL": "/img.qcow2", "UPSTREAM_CHECKSUM": "", "UPSTREAM_FALLBACK": "stage0"}
