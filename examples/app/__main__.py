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
