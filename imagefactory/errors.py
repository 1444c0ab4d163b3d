"""The one error type that users see: a message that names the bad input and what is accepted."""

import json
from typing import Any


def last_json(stdout: str) -> dict[str, Any]:
    """The JSON object on the last line of a step's output (every step ends with one); {} if none."""
    lines = stdout.strip().splitlines()
    try:
        value = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class FactoryError(Exception):
    """A user-facing failure. The command-line entry points print it without a traceback."""
