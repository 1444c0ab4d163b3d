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
from imagefactory import channels, launch_local, registry, s3registry, upgrade
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
image_registry = config.get("imageRegistry") or "../../.state/registry"
state_dir = config.get("stateDir") or ".state/vms"
try:
    if image_registry.startswith("s3://"):
        # Another machine than the builder's: the shared registry decides (it refuses a revoked
        # version), and the launch fetches the QCOW2 from it.
        if channel:
            raise FactoryError(
                "imageChannel needs the image stack's registry folder (channels are kept there, not in the shared "
                "registry); on another machine pin imageVersion"
            )
        version = str(pinned)
        s3registry.lookup(s3registry.parse(image_registry, "imageRegistry"), version, "qcow2")
    else:
        registry_dir: Path | None = Path(image_registry)
        target = config.get("target") or "local"
        if target != "local" and not (registry_dir / "index.json").is_file() and not config.get("imageRegistry"):
            # A native cloud build has no registry folder; the image stack marks a revoked version on
            # the cloud (AMI tag ImageRevoked, gallery version out of latest). Said, never skipped silently.
            pulumi.log.warn(
                f"no image registry at {registry_dir}: this app cannot check revocations; a revoked version is "
                f"marked on {target} by the image stack (set imageRegistry to check it here)"
            )
            registry_dir = None
        elif not (registry_dir / "index.json").is_file():
            # Never launch unchecked: without the registry no revocation could be seen.
            raise FactoryError(
                f"imageRegistry {registry_dir} holds no image registry (no index.json), so revocations cannot be "
                "checked; accepted: the image stack's registry folder (its `registry` output), absolute or relative "
                "to this project, or its shared s3://… registry"
            )
        if registry_dir is None:
            if channel:
                raise FactoryError("imageChannel needs the image stack's registry folder (imageRegistry)")
            version = str(pinned)
        else:
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
if strategy == "in-place" and image_registry.startswith("s3://"):
    raise pulumi.RunError(
        "upgradeStrategy in-place reads the version's stamp and roles from the image project on this machine; with "
        "a shared s3:// imageRegistry use replace"
    )
if strategy == "in-place":
    # Refused at preview already, as at up: a downgrade (or a development version) in place.
    for machine in launch_local.running(Path(state_dir), "app"):
        try:
            upgrade.plan(machine.split()[1], version, {})
        except FactoryError as exc:
            raise pulumi.RunError(f"{exc} ({machine})") from None
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
        **({"registry": image_registry} if image_registry.startswith("s3://") else {}),
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
