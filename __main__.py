"""The image factory. One `pulumi up` is one release of the versions this stack holds.

Flow, one direction only:
    stack config -> ReleaseVersion -> UpstreamImage -> ImageBuild (Packer + Ansible, seal check)
    -> ImageFormats (RAW, QCOW2, VHD, VMDK, OVA) -> ImageRelease (registry)
    -> AwsImage / AzureImage (import of the same RAW / VHD, cloud targets) -> output `images`
A cloud stack in `native` mode builds with Packer's amazon-ebs / azure-arm source instead.
"""

from pathlib import Path

import pulumi

from components import config
from components.image_build import ImageBuild
from components.image_formats import ImageFormats
from components.image_release import ImageRelease
from components.release_version import ReleaseVersion
from components.upstream_image import UpstreamImage
from imagefactory import host, registry, sources, versions
from imagefactory.cloud import is_release_candidate
from imagefactory.errors import FactoryError

ROOT = Path(__file__).resolve().parent
settings = config.load(ROOT)
# Steps run in the project root and get these folders as configured (relative by default), so
# the state never holds this checkout's path; the program itself reads the registry here.
registry_dir = Path(settings.registry_dir)
work_dir = Path(settings.work_dir)
registry_path = (ROOT / registry_dir).resolve()
host.write(ROOT, host.HostFacts(settings.accelerator, settings.build_timeout_minutes))
native = (settings.target == "aws" and settings.aws.mode == "native") or (
    settings.target == "azure" and settings.azure.mode == "native"
)

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
    working_tree_digest = sources.tree_digest(ROOT)
except FactoryError as exc:
    raise pulumi.RunError(str(exc)) from None


def build_time(version: versions.Version) -> str:
    return versions.iso_time(version.commit_time)


def native_build(version: versions.Version, source: ReleaseVersion) -> pulumi.Output:
    from components.cloud_build import NativeImageBuild

    build = NativeImageBuild(
        version.name,
        {
            "target": settings.target,
            "version": version.name,
            "is_release": version.is_release,
            "commit": version.commit,
            "build_epoch": version.commit_time,
            "build_time": build_time(version),
            "source_dir": source.source_dir,
            "work_dir": str(work_dir),
            "image_name": settings.image_name,
            "tag_prefix": settings.tag_prefix,
            "aws": settings.aws,
            "azure": settings.azure,
        },
    )
    key = "aws" if settings.target == "aws" else "azure"
    return pulumi.Output.all(build.result, build.upstream).apply(
        lambda r: {
            "version": version.name,
            "commit": version.commit,
            "build_time": build_time(version),
            "upstream": {"source": r[1]},
            key: r[0].get("amis", r[0]),
        }
    )


def local_build(version: versions.Version, source: ReleaseVersion, upstream: UpstreamImage) -> pulumi.Output:
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
            "disk_size_mib": settings.disk_size_mib,
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
            "code_dir": source.source_dir,
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
    entry = release.entry
    published = pulumi.ResourceOptions(depends_on=[release])
    if settings.target == "aws":
        from components.aws_image import AwsImage

        ami = AwsImage(
            version.name,
            {
                "version": version.name,
                "is_release": version.is_release,
                "commit": version.commit,
                "upstream": upstream.sha256,
                "raw_path": entry.apply(lambda e: e["formats"]["raw"]["path"]),
                "raw_sha256": build.raw_sha256,
                "build_time": build.build_time,
                "image_name": settings.image_name,
                "settings": settings.aws,
            },
            published,
        )
        entry = pulumi.Output.all(entry, ami.amis).apply(lambda v: {**v[0], "aws": v[1]})
    elif settings.target == "azure":
        from components.azure_image import AzureImage

        gallery = AzureImage(
            version.name,
            {
                "version": version.name,
                "is_release": version.is_release,
                "commit": version.commit,
                "upstream": upstream.sha256,
                "vhd_path": entry.apply(lambda e: e["formats"]["vhd"]["path"]),
                "vhd_sha256": entry.apply(lambda e: e["formats"]["vhd"]["sha256"]),
                "build_time": build.build_time,
                "image_name": settings.image_name,
                "tag_prefix": settings.tag_prefix,
                "settings": settings.azure,
                "release_candidate": version.is_release and is_release_candidate(version.name, settings.tag_prefix),
            },
            published,
        )
        entry = pulumi.Output.all(entry, gallery.gallery_image_version_id).apply(
            lambda v: {**v[0], "azure": {"gallery_image_version_id": v[1]}}
        )
    return entry


if settings.target == "azure" and any(not v.is_release for v in planned):
    dev = ", ".join(v.name for v in planned if not v.is_release)
    raise pulumi.RunError(
        f"the azure target publishes gallery versions X.Y.Z from release tags only; {dev} is a "
        "development version: set imagefactory:buildWorkingTree to false"
    )

upstream = None
if not native:
    upstream = UpstreamImage(
        "upstream",
        {
            "url": settings.upstream_url,
            "checksum": settings.upstream_checksum,
            "fallback": settings.upstream_fallback,
        },
    )

images: dict[str, pulumi.Output] = {}
for version in planned:
    source = ReleaseVersion(version.name, {"version": version, "sources_dir": str(work_dir / "sources")})
    images[version.name] = native_build(version, source) if upstream is None else local_build(version, source, upstream)

# Paths in the state are relative to the project root; the lookup table gives absolute ones.
lookup_table = {name: entry.apply(lambda e: registry.absolute_entry(e, ROOT)) for name, entry in images.items()}
pulumi.export("images", lookup_table)
if upstream is not None:
    pulumi.export("upstream", {"source": upstream.source, "sha256": upstream.sha256, "via": upstream.via})
    pulumi.export("registry", str(registry_path))
