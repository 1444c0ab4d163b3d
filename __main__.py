"""The image factory. One `pulumi up` is one release of the versions this stack holds.

Flow, one direction only:
    stack config (imagefactory.settings) -> the versions to release (imagefactory.versions)
    -> each version's stage chain (imagefactory.stages: which parent stages are built, which reused)
    -> components.release.Pipeline: UpstreamImage -> ReleaseVersion -> per stage [ParentImage] ->
       ImageBuild -> ImageFormats -> ImageRelease (registry) -> AwsImage / AzureImage, or a native
       cloud build
    -> output `images`: version -> ImageEntry (imagefactory.steps), and `channels`: channel ->
       the version it points at, with its history (imagefactory.channels)
"""

import json
from pathlib import Path

import pulumi

from components import config
from components.release import Pipeline
from imagefactory import channels, formats, host, registry, s3registry, sources, stages, versions
from imagefactory.errors import FactoryError
from imagefactory.upstream import stage0_recipe_digest

ROOT = Path(__file__).resolve().parent
settings = config.load(ROOT)
# Steps run in the project root and get the state folders as configured (relative by default),
# so the state never holds this checkout's path; the program itself reads the registry here.
registry_path = (ROOT / settings.registry_dir).resolve()
facts = host.HostFacts(
    settings.accelerator, settings.build_timeout_minutes, settings.boot_check, settings.stages[-1].name
)
host.write(ROOT, facts)

try:
    if settings.shared_registry:  # reachable, these credentials, Object Lock if asked: before anything builds
        s3registry.check(s3registry.parse(settings.shared_registry))
    planned = versions.plan(ROOT, settings.releases, settings.build_working_tree, settings.tag_prefix)
    for version in planned:
        registry.check_not_moved(registry_path, version.name, version.commit)
        if version.is_release and "ova" in settings.formats:
            tree_ovf = versions.file_at(ROOT, version.commit, "imagefactory/ovf.py")
            formats.check_manifest_digest_supported(version.name, settings.ova_manifest, tree_ovf)
        registry.check_release_settings(
            registry_path,
            version.name,
            {
                "diskSizeMiB": settings.disk_size_mib,
                "formats": list(settings.formats),
                "imageName": settings.image_name,
                "ovaManifest": settings.ova_manifest,
            },
        )
    native = Pipeline(settings, "").native

    def stage_index(stage: str) -> dict:
        """A stage's published versions: the local registry's (a native chain has no local registry:
        its parents are built by the versions this stack plans)."""
        return {"versions": {}} if native else registry.read_index(stages.stage_registry(registry_path, stage))

    key = stages.upstream_key(
        settings.upstream_url, settings.upstream_checksum, settings.upstream_fallback, stage0_recipe_digest()
    )

    def manifest(version: str) -> dict:
        path = registry_path / version / "manifest.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    # A published version keeps the parents its chain names, whatever the registry holds since.
    pinned = {} if native else stages.pinned_parents(registry.read_index(registry_path), manifest)
    chains = stages.plan_chains(ROOT, planned, settings.stages, key, stage_index, pinned)
    for name, chain in chains.items():
        for plan in chain.parents:
            pulumi.log.info(stages.describe_plan(name, plan))
    for note in stages.outdated_parents(chains, settings.stages[-1].name, stage_index):
        pulumi.log.warn(note)
    pipeline = Pipeline(settings, working_tree_digest=sources.tree_digest(ROOT), chains=chains)
except FactoryError as exc:
    raise pulumi.RunError(str(exc)) from None

upstream = pipeline.upstream()
images = pipeline.release(planned, upstream)

# Paths in the state are relative to the project root; the lookup table gives absolute ones.
lookup_table = {name: entry.apply(lambda e: registry.absolute_entry(e, ROOT)) for name, entry in images.items()}
pulumi.export("images", lookup_table)
if settings.presign_seconds:
    # Pre-signed URLs are bearer links: a secret output of their own, signed again by every run (a
    # pre-signed URL expires; an output must not go stale), and none for a revoked version.
    store = s3registry.parse(settings.shared_registry)
    seconds = settings.presign_seconds
    signed = {
        name: entry.apply(lambda e: s3registry.presigned(store, e["shared"], seconds)["formats"])
        for name, entry in images.items()
        if not registry.revocation(registry_path, name)
    }
    pulumi.export("presigned", pulumi.Output.secret(signed))
if upstream is not None:
    pulumi.export("upstream", {"source": upstream.source, "sha256": upstream.sha256, "via": upstream.via})
    pulumi.export("registry", str(registry_path))
    # The channels as of this update (make promote moves one between updates; make channels is live).
    try:
        pulumi.export("channels", channels.summary(registry_path))
    except FactoryError as exc:
        raise pulumi.RunError(str(exc)) from None
