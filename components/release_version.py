"""ReleaseVersion: where a version's sources come from.

A release (git tag release-X.Y.Z) is built from the tree of its tag, exported with `git
archive`, so an uncommitted change can never leak into it and any release can be rebuilt
later. A development version builds the working tree (".": the project root every step runs in).
"""

from __future__ import annotations

from typing import TypedDict

import pulumi

from components._command import python_step, step_result
from imagefactory.steps import SourcesRequest, SourcesResult
from imagefactory.versions import Version


class ReleaseVersionArgs(TypedDict):
    version: Version
    """The resolved version (imagefactory.versions.resolve)."""
    sources_dir: str
    """Where exported tag trees live (one folder per version and commit), relative to the project
    root when inside it."""


class ReleaseVersion(pulumi.ComponentResource):
    """Exposes the version's name, commit and the folder its image is built from."""

    name: str
    commit: str
    source_dir: pulumi.Output[str]

    def __init__(self, name: str, args: ReleaseVersionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imagefactory:local:ReleaseVersion", name, None, opts)
        version = args["version"]
        self.name = version.name
        self.commit = version.commit
        if version.is_release:
            export = python_step(
                f"{name}-source",
                SourcesRequest,
                {
                    "repo": ".",
                    "commit": version.commit,
                    "dest": f"{args['sources_dir']}/{version.name}-{version.commit[:12]}",
                },
                triggers=[version.name, version.commit],
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.source_dir = step_result(export, SourcesResult).apply(lambda r: r.dir)
        else:
            self.source_dir = pulumi.Output.from_input(".")
        self.register_outputs({"name": self.name, "commit": self.commit, "source_dir": self.source_dir})
