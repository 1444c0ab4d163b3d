"""The one module that reads stack configuration (every key is declared in Pulumi.yaml)."""

from __future__ import annotations

import pulumi

from imagefactory.errors import FactoryError
from imagefactory.settings import Settings, validate

_KEYS_OBJECT = ("releases", "formats", "aws", "azure")
_KEYS_BOOL = ("buildWorkingTree",)
_KEYS_INT = ("diskSizeMiB", "buildTimeoutMinutes")
_KEYS_STR = (
    "target",
    "tagPrefix",
    "upstreamUrl",
    "upstreamChecksum",
    "upstreamFallback",
    "registryDir",
    "workDir",
    "accelerator",
    "imageName",
)


def load() -> Settings:
    """Read and validate `imagefactory:*`; a bad value stops the program with one clear line."""
    config = pulumi.Config("imagefactory")
    raw: dict[str, object] = {}
    try:
        for key in _KEYS_STR:
            if (value := config.get(key)) is not None:
                raw[key] = value
        for key in _KEYS_OBJECT:
            if (value := config.get_object(key)) is not None:
                raw[key] = value
        for key in _KEYS_BOOL:
            if (value := config.get_bool(key)) is not None:
                raw[key] = value
        for key in _KEYS_INT:
            if (value := config.get_int(key)) is not None:
                raw[key] = value
    except pulumi.ConfigTypeError as exc:
        raise pulumi.RunError(f"imagefactory:{exc.key} has the wrong type: {exc}") from None
    try:
        return validate(raw)
    except FactoryError as exc:
        raise pulumi.RunError(str(exc)) from None
