"""How every component runs a step of the pipeline: one pulumi_command local.Command that
calls a module of the pure `imagefactory` package with its inputs in the environment.

Values never get formatted into the shell string: the script names environment variables,
and pulumi-command passes them through `environment=`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
from pulumi_command import local

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def step_script(module_args: str) -> str:
    """The shell line that runs `python -m imagefactory.<module_args>`.

    It names no path of this machine: `python3` is the project's virtualenv on PATH
    (tools/env.sh), the command runs in the project root (the provider's working directory), and
    `-P` keeps that folder off sys.path so PYTHONPATH alone decides whose code runs."""
    return f"exec python3 -P -m imagefactory.{module_args}"


def python_step(
    name: str,
    module_args: str,
    environment: dict[str, pulumi.Input[str]],
    triggers: list[Any],
    opts: pulumi.ResourceOptions,
    delete: str | None = None,
    code_dir: pulumi.Input[str] = ".",
) -> local.Command:
    """A Command that runs `python -m imagefactory.<module_args>` (a shell fragment of "$VARS").

    Its inputs hold the step's content and paths relative to the project root only, never a
    host fact (see imagefactory.host), so a moved checkout changes no resource. `code_dir` is
    the tree whose `imagefactory` package runs: a release's steps that shape its bytes run from
    its tag's tree, so newer code in the checkout never changes a release."""
    env: dict[str, pulumi.Input[str]] = {"PYTHONPATH": code_dir, "PYTHONUNBUFFERED": "1", **environment}
    return local.Command(
        name,
        create=step_script(module_args),
        delete=delete,
        environment=env,
        triggers=triggers,
        logging=local.Logging.STDERR,
        opts=opts,
    )


def json_stdout(command: local.Command) -> pulumi.Output[dict[str, Any]]:
    """The step's result: its last stdout line is one JSON object."""
    return command.stdout.apply(lambda out: json.loads(out.strip().splitlines()[-1]) if out else {})
