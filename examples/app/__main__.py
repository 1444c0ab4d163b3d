"""Example application stack: run the image version named by `imageVersion`, or the version a
channel of the image registry points at (`imageChannel`, e.g. stable).

Reads the image stack through a StackReference and launches that version. Bumping
`imageVersion` (or promoting the channel) replaces the machine (turn-and-burn); setting the
previous version (or promoting it again) rolls back. With `upgradeStrategy: in-place` a newer
version updates the running machine instead (README, "Upgrading fleets"). A revoked version is never launched: the
preview fails with the reason the revocation gave.
"""

from pathlib import Path

import pulumi

from components.launch_template import STRATEGIES, LaunchTemplate, require_version
from imagefactory import channels, launch_local, registry
from imagefactory.errors import FactoryError

config = pulumi.Config()
pinned, channel = config.get("imageVersion"), config.get("imageChannel")
if bool(pinned) == bool(channel):
    raise pulumi.RunError(
        "set exactly one of imageVersion (a published version, e.g. release-0.1.0) and imageChannel "
        "(a channel of the image registry, e.g. stable: make channels lists them)"
    )
# The image stack's registry (its `registry` output), where channels and revocations are kept.
# Relative paths are from this project's folder, where Pulumi runs the program (as stateDir is).
registry_dir = Path(config.get("imageRegistry") or "../../.state/registry")
if not (registry_dir / "index.json").is_file():
    # Never launch unchecked: without the registry no revocation could be seen.
    raise pulumi.RunError(
        f"imageRegistry {registry_dir} holds no image registry (no index.json), so revocations cannot be checked; "
        "accepted: the image stack's registry folder (its `registry` output), absolute or relative to this project"
    )
state_dir = config.get("stateDir") or ".state/vms"
try:
    version = channels.resolve(registry_dir, channel) if channel else str(pinned)
    registry.check_not_revoked(registry_dir, version)
except FactoryError as exc:
    vms = launch_local.running(Path(state_dir), "app")
    still = f": {', '.join(vms)}" if vms else " (none runs now)"
    raise pulumi.RunError(f"{exc}; the machines already running keep running until this stack changes{still}") from None
if channel:
    pulumi.log.info(f"channel {channel} points at {version}")
strategy = config.get("upgradeStrategy") or "replace"
if strategy not in STRATEGIES:
    raise pulumi.RunError(f"upgradeStrategy is {strategy!r}; accepted: {', '.join(STRATEGIES)}")
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
        "state_dir": state_dir,
        # replace (turn-and-burn, the default) or in-place (README, "Upgrading fleets").
        "upgrade": strategy,
    },
)
pulumi.export("imageVersion", version)
pulumi.export("imageChannel", channel)
pulumi.export("launch", app.launch)


def built_on(entry: dict) -> list[str]:
    """Where the machines came from: the upstream, then each stage of the image (README, Multi-stage)."""
    lines = []
    for link in entry.get("chain", []):
        digest = link.get("sha256") or link.get("sealed_raw_sha256")
        lines.append(f"{link['stage']} {link.get('version') or link.get('source')} sha256:{digest}")
    return lines


pulumi.export("builtOn", image.apply(built_on))
