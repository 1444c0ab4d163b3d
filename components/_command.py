"""How every component runs a step of the pipeline: one pulumi_command local.Command that
calls a module of the pure `imagefactory` package with its inputs in the environment.

Values never get formatted into the shell string: the script names environment variables,
and pulumi-command passes them through `environment=`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import pulumi
from pulumi_command import local

from imagefactory.steps import Request, parse_result

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def step_script(module_args: str) -> str:
    """The shell line that runs `python -m imagefactory.<module_args>`.

    It names no path of this machine: `python3` is the project's virtualenv on PATH
    (tools/env.sh), the command runs in the project root (the provider's working directory), and
    `-P` keeps that folder off sys.path so PYTHONPATH alone decides whose code runs."""
    return f"exec python3 -P -m imagefactory.{module_args}"


def _as_text(value: Any) -> pulumi.Input[str]:
    """Environment values are strings; an int input (or an Output of one) is written in decimal."""
    if isinstance(value, pulumi.Output):
        return value.apply(lambda v: v if isinstance(v, str) else str(v))
    return value if isinstance(value, str) else str(value)


def python_step(
    name: str,
    request: type[Request],
    inputs: dict[str, Any],
    triggers: list[Any],
    opts: pulumi.ResourceOptions,
    delete: str | None = None,
    code_dir: pulumi.Input[str] = ".",
    update: str | None = None,
) -> local.Command:
    """A Command that runs one step: its shell line and environment both come from the step's
    request contract (imagefactory.steps), `inputs` being the request's fields by name.

    Its inputs hold the step's content and paths relative to the project root only, never a
    host fact (see imagefactory.host), so a moved checkout changes no resource. `code_dir` is
    the tree whose `imagefactory` package runs: a release's steps that shape its bytes run from
    its tag's tree, so newer code in the checkout never changes a release. `update` is the
    step run when an input changes and no trigger did (without it, a changed input re-runs the
    create)."""
    environment = {key: _as_text(value) for key, value in request.environment(**inputs).items()}
    env: dict[str, pulumi.Input[str]] = {"PYTHONPATH": code_dir, "PYTHONUNBUFFERED": "1", **environment}
    return local.Command(
        name,
        create=step_script(request.script()),
        update=update,
        delete=delete,
        environment=env,
        triggers=triggers,
        logging=local.Logging.STDERR,
        opts=opts,
    )


def step_result(command: local.Command, result: type[T]) -> pulumi.Output[T]:
    """The step's typed result: its last stdout line, as `result` (a steps.Result, or dict for
    steps whose result is a plain mapping such as the registry's ImageEntry)."""
    return command.stdout.apply(lambda out: parse_result(result, out))
