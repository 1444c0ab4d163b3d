"""The one module that reads stack configuration (every key is declared in Pulumi.yaml)."""

from __future__ import annotations

from pathlib import Path

import pulumi
from pulumi.runtime import config as runtime_config

from imagefactory.errors import FactoryError
from imagefactory.settings import KEYS, Settings, validate

NAMESPACE = "imagefactory"


def _configured_keys() -> set[str]:
    """Every `imagefactory:*` key the stack sets, including ones Pulumi.yaml does not declare."""
    names = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    return {name.split(":", 1)[1] for name in names if name.startswith(f"{NAMESPACE}:")}


def load(project_root: Path) -> Settings:
    """Read and validate `imagefactory:*`; a bad value stops the program with one clear line."""
    config = pulumi.Config(NAMESPACE)
    readers = {
        "string": config.get,
        "array": config.get_object,
        "object": config.get_object,
        "boolean": config.get_bool,
        "integer": config.get_int,
    }
    raw: dict[str, object] = {}
    for key in sorted(_configured_keys() | set(KEYS)):
        kind = KEYS.get(key, "string")
        try:
            value = readers[kind](key)
        except pulumi.ConfigTypeError as exc:
            if kind not in ("array", "object"):
                raise pulumi.RunError(f"{exc.key} is {exc.value!r}; accepted: a value of type {kind}") from None
            value = config.get(key)  # not JSON: validation names the key and the shape it needs
        if value is not None:
            raw[key] = value
    try:
        return validate(raw, project_root)
    except FactoryError as exc:
        raise pulumi.RunError(str(exc)) from None
