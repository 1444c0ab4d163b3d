"""Example application stack: run the image version named by `imageVersion`.

Reads the image stack through a StackReference and launches that version. Bumping
`imageVersion` replaces the machine (turn-and-burn); setting the previous version rolls back.
"""

import pulumi

from components.launch_template import LaunchTemplate, require_version

config = pulumi.Config()
version = config.require("imageVersion")
image_stack = config.get("imageStack") or "organization/imagefactory/local"
target = config.get("target") or "local"

images = pulumi.StackReference(image_stack).get_output("images")
image = images.apply(lambda table: require_version(table or {}, version))

app = LaunchTemplate(
    "app",
    {
        "target": target,
        "version": version,
        "image": image,
        "state_dir": config.get("stateDir") or ".state/vms",
    },
)
pulumi.export("imageVersion", version)
pulumi.export("launch", app.launch)


def built_on(entry: dict) -> list[str]:
    """Where the machines came from: the upstream, then each stage of the image (README, Multi-stage)."""
    lines = []
    for link in entry.get("chain", []):
        digest = link.get("sha256") or link.get("sealed_raw_sha256")
        lines.append(f"{link['stage']} {link.get('version') or link.get('source')} sha256:{digest}")
    return lines


pulumi.export("builtOn", image.apply(built_on))
