"""The image factory. One `pulumi up` is one release of the versions this stack holds.

Flow, one direction only:
    stack config (imagefactory.settings) -> the versions to release (imagefactory.versions)
    -> components.release.Pipeline: UpstreamImage -> ReleaseVersion -> ImageBuild -> ImageFormats
       -> ImageRelease (registry) -> AwsImage / AzureImage, or a native cloud build
    -> output `images`: version -> ImageEntry (imagefactory.steps)
"""

from pathlib import Path

import pulumi

from components import config
from components.release import Pipeline
from imagefactory import host, registry, sources, versions
from imagefactory.errors import FactoryError

ROOT = Path(__file__).resolve().parent
settings = config.load(ROOT)
# Steps run in the project root and get the state folders as configured (relative by default),
# so the state never holds this checkout's path; the program itself reads the registry here.
registry_path = (ROOT / settings.registry_dir).resolve()
host.write(ROOT, host.HostFacts(settings.accelerator, settings.build_timeout_minutes))

try:
    planned = versions.plan(ROOT, settings.releases, settings.build_working_tree, settings.tag_prefix)
    for version in planned:
        registry.check_not_moved(registry_path, version.name, version.commit)
        registry.check_release_settings(
            registry_path,
            version.name,
            {
                "diskSizeMiB": settings.disk_size_mib,
                "formats": list(settings.formats),
                "imageName": settings.image_name,
            },
        )
    pipeline = Pipeline(settings, working_tree_digest=sources.tree_digest(ROOT))
except FactoryError as exc:
    raise pulumi.RunError(str(exc)) from None

upstream = pipeline.upstream()
images = pipeline.release(planned, upstream)

# Paths in the state are relative to the project root; the lookup table gives absolute ones.
lookup_table = {name: entry.apply(lambda e: registry.absolute_entry(e, ROOT)) for name, entry in images.items()}
pulumi.export("images", lookup_table)
if upstream is not None:
    pulumi.export("upstream", {"source": upstream.source, "sha256": upstream.sha256, "via": upstream.via})
    pulumi.export("registry", str(registry_path))
