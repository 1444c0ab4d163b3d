"""UpstreamImage: the trusted image every build starts from, verified before anything boots it."""

from __future__ import annotations

from typing import TypedDict

import pulumi

from components._command import python_step, step_result
from imagefactory.steps import UpstreamRequest, UpstreamResult
from imagefactory.upstream import stage0_recipe_digest


class UpstreamImageArgs(TypedDict):
    url: pulumi.Input[str]
    """URL or local path of a cloud image (Debian genericcloud by default)."""
    checksum: pulumi.Input[str]
    """sha256:<hex>, sha512:<hex> or file:<SHA256SUMS/SHA512SUMS>; an image is never used unverified."""
    fallback: pulumi.Input[str]
    """stage0: build a Debian 12 image from Debian's packages when the URL cannot be fetched; none: fail."""


class UpstreamImage(pulumi.ComponentResource):
    """Resolves the configured upstream (or the stage-0 fallback) and verifies its digest."""

    path: pulumi.Output[str]
    sha256: pulumi.Output[str]
    source: pulumi.Output[str]
    via: pulumi.Output[str]

    def __init__(self, name: str, args: UpstreamImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imagefactory:local:UpstreamImage", name, None, opts)
        resolve = python_step(
            f"{name}-resolve",
            UpstreamRequest,
            {"url": args["url"], "checksum": args["checksum"], "fallback": args["fallback"]},
            triggers=[args["url"], args["checksum"], args["fallback"], stage0_recipe_digest()],
            opts=pulumi.ResourceOptions(parent=self),
        )
        result = step_result(resolve, UpstreamResult)
        self.path = result.apply(lambda r: r.path)
        self.sha256 = result.apply(lambda r: r.sha256)
        self.source = result.apply(lambda r: r.source)
        self.via = result.apply(lambda r: r.via)
        self.register_outputs({"path": self.path, "sha256": self.sha256, "source": self.source, "via": self.via})
