"""The image factory: one `pulumi up` is one release of the images this stack holds."""

import pulumi

from components import config

settings = config.load()
pulumi.export("target", settings.target)
