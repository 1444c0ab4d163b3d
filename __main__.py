"""The image factory. One `pulumi up` is one release of the versions this stack holds.

Flow, one direction only:
    stack config -> ReleaseVersion -> UpstreamImage -> ImageBuild (Packer + Ansible, seal check)
    -> ImageFormats (RAW, QCOW2, VHD, VMDK, OVA) -> ImageRelease (registry) -> output `images`
"""

import os
from pathlib import Path

import pulumi

from components import config
from components.image_build import ImageBuild
from components.image_formats import ImageFormats
from components.image_release import ImageRelease
from components.release_version import ReleaseVersion
from components.upstream_image import UpstreamImage
from imagefactory import registry, sources, versions
from imagefactory.errors import FactoryError

ROOT = Path(__file__).resolve().parent
settings = config.load()
if settings.target != "local":
    raise pulumi.RunError(
        f"imagefactory:target {settings.target!r} is not available in this release; accepted values: local"
    )

registry_dir = (ROOT / settings.registry_dir).resolve()
work_dir = (ROOT / settings.work_dir).resolve()
cache_dir = Path(os.environ.get("IMAGEFACTORY_CACHE", Path.home() / ".cache" / "imagefactory")).resolve()

try:
    planned = versions.plan(ROOT, settings.releases, settings.build_working_tree, settings.tag_prefix)
    for version in planned:
        registry.check_not_moved(registry_dir, version.name, version.commit)
    working_tree_digest = sources.tree_digest(ROOT)
except FactoryError as exc:
    raise pulumi.RunError(str(exc)) from None

upstream = UpstreamImage(
    "upstream",
    {
        "url": settings.upstream_url,
        "checksum": settings.upstream_checksum,
        "fallback": settings.upstream_fallback,
        "cache_dir": str(cache_dir),
    },
)

images: dict[str, pulumi.Output] = {}
for version in planned:
    source = ReleaseVersion(version.name, {"version": version, "sources_dir": str(work_dir / "sources")})
    build = ImageBuild(
        version.name,
        {
            "version": version.name,
            "commit": version.commit,
            "build_epoch": version.commit_time,
            "source_dir": source.source_dir,
            "source_digest": "" if version.is_release else working_tree_digest,
            "upstream_path": upstream.path,
            "upstream_sha256": upstream.sha256,
            "upstream_source": upstream.source,
            "work_dir": str(work_dir),
            "cache_dir": str(cache_dir),
            "accelerator": settings.accelerator,
            "disk_size_mib": settings.disk_size_mib,
            "timeout_minutes": settings.build_timeout_minutes,
        },
    )
    formats = ImageFormats(
        version.name,
        {
            "version": version.name,
            "commit": version.commit,
            "build_epoch": version.commit_time,
            "build_time": build.build_time,
            "raw_path": build.raw_path,
            "raw_sha256": build.raw_sha256,
            "seal_report": build.seal_report,
            "upstream_source": upstream.source,
            "upstream_sha256": upstream.sha256,
            "formats": list(settings.formats),
            "out_dir": str(work_dir / version.name),
            "image_name": settings.image_name,
        },
    )
    release = ImageRelease(
        version.name,
        {
            "version": version.name,
            "is_release": version.is_release,
            "staging_dir": formats.staging_dir,
            "manifest": formats.manifest,
            "registry_dir": str(registry_dir),
        },
    )
    images[version.name] = release.entry

pulumi.export("images", images)
pulumi.export("upstream", {"source": upstream.source, "sha256": upstream.sha256, "via": upstream.via})
pulumi.export("registry", str(registry_dir))
