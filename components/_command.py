"""How every component runs a step of the pipeline: one pulumi_command local.Command that
calls a module of the pure `imagefactory` package with its inputs in the environment.

Values never get formatted into the shell string: the script names environment variables,
and pulumi-command passes them through `environment=`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pulumi
from pulumi_command import local

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def python_step(
    name: str,
    module_args: str,
    environment: dict[str, pulumi.Input[str]],
    triggers: list[Any],
    opts: pulumi.ResourceOptions,
    delete: str | None = None,
    code_dir: pulumi.Input[str] | None = None,
) -> local.Command:
    """A Command that runs `python -m imagefactory.<module_args>` (a shell fragment of "$VARS").

    `code_dir` is the tree whose `imagefactory` package runs: a release's steps that shape its
    bytes run from its tag's tree, so newer code in the checkout never changes a release."""
    code: pulumi.Input[str] = code_dir if code_dir is not None else str(PROJECT_ROOT)
    env: dict[str, pulumi.Input[str]] = {
        "PYTHON": sys.executable,
        "PYTHONPATH": code,
        "PYTHONUNBUFFERED": "1",
        **environment,
    }
    return local.Command(
        name,
        create=f'exec "$PYTHON" -m imagefactory.{module_args}',
        delete=delete,
        environment=env,
        dir=code,
        triggers=triggers,
        logging=local.Logging.STDERR,
        opts=opts,
    )


def json_stdout(command: local.Command) -> pulumi.Output[dict[str, Any]]:
    """The step's result: its last stdout line is one JSON object."""
    return command.stdout.apply(lambda out: json.loads(out.strip().splitlines()[-1]) if out else {})
