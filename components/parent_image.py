"""ParentImage: a published parent stage, re-verified against its published digest before the
next stage boots it (the chain of custody's check; imagefactory.parent)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import pulumi

from components._command import python_step, step_result
from imagefactory.steps import ParentRequest, ParentResult


class ParentImageArgs(TypedDict):
    registry_dir: str
    """The stack's registry; a stage's own registry is <registry>/stages/<stage>."""
    stage: str
    version: str
    """The parent stage's version: the version whose build of that stage is reused."""
    child: str
    """The version whose next stage boots the parent."""
    rebuild_with: Sequence[pulumi.Input]
    """The child build's triggers: the parent is checked again whenever the child is rebuilt."""
    after: Sequence[pulumi.Resource]
    """What publishes the parent in this run, if anything: the check waits for it."""


class ParentImage(pulumi.ComponentResource):
    """Resolves a parent stage in the registry and proves its file is the one published."""

    path: pulumi.Output[str]
    sha256: pulumi.Output[str]
    source: pulumi.Output[str]
    chain: pulumi.Output[list]

    def __init__(self, name: str, args: ParentImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imagefactory:local:ParentImage", name, None, opts)
        check = python_step(
            f"{name}-verify",
            ParentRequest,
            {
                "registry": args["registry_dir"],
                "stage": args["stage"],
                "version": args["version"],
                "child": args["child"],
            },
            triggers=[args["stage"], args["version"], *args["rebuild_with"]],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args["after"])),
        )
        result = step_result(check, ParentResult)
        self.path = result.apply(lambda r: r.path)
        self.sha256 = result.apply(lambda r: r.sha256)
        self.source = result.apply(lambda r: r.source)
        self.chain = result.apply(lambda r: r.chain)
        self.register_outputs({"path": self.path, "sha256": self.sha256, "source": self.source, "chain": self.chain})
