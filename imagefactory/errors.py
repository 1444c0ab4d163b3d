"""The one error type that users see: a message that names the bad input and what is accepted."""

import json
import signal
import sys
from collections.abc import Callable
from typing import Any


def last_json(stdout: str) -> dict[str, Any]:
    """The JSON object on the last line of a step's output (every step ends with one); {} if none."""
    lines = stdout.strip().splitlines()
    try:
        value = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def first_lines(items: list[str], limit: int) -> str:
    """The first `limit` of `items` for an error message, one per indented line, then how many more."""
    more = f"\n  … and {len(items) - limit} more" if len(items) > limit else ""
    return "\n  ".join(items[:limit]) + more


class FactoryError(Exception):
    """A user-facing failure. The command-line entry points print it without a traceback."""


def run_step(name: str, work: Callable[[], Any]) -> int:
    """Run one step's work the way every step reports: its result as the last stdout line (one
    JSON object), a FactoryError as one line on stderr (exit 1), an interrupt or a cancel (SIGTERM
    from `pulumi cancel`) unwound like Ctrl-C so cleanups run (exit 130). Never a traceback."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        result = work()
    except FactoryError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted; nothing was kept", file=sys.stderr)
        return 130
    if result is not None:
        # A steps.Result (its to_json) or a plain mapping such as the registry's ImageEntry.
        print(json.dumps(result.to_json() if hasattr(result, "to_json") else result))
    return 0
