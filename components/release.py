"""The release wiring: which components each version of a stack goes through, by target.

    local / aws import / azure import, for each stage (imagefactory.stages), bottom first:
        ReleaseVersion -> [ParentImage: the stage below, re-verified] -> ImageBuild (Packer +
        Ansible, seal check) -> ImageFormats -> ImageRelease (a parent stage: its own registry)
        and on the top stage -> AwsImage / AzureImage (the same RAW / VHD, imported) -> ImageEntry
    aws native / azure native:
        ReleaseVersion -> NativeImageBuild (Packer's amazon-ebs / azure-arm) -> ImageEntry

Everything comes in as parameters (the validated Settings, the planned versions); nothing is
read from globals. These are plain functions rather than a ComponentResource on purpose: a new
parent would change the URN of every resource already released, and released resources are
protected, so an upgrade of this program would refuse to run on every existing stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from components._command import python_step, step_result
from components.image_build import ImageBuild
from components.image_formats import ImageFormats
from components.image_release import ImageRelease
from components.parent_image import ParentImage
from components.release_version import ReleaseVersion
from components.upstream_image import UpstreamImage
from imagefactory import bootchain, registry, stages, versions
from imagefactory.cloud import is_release_candidate
from imagefactory.errors import FactoryError
from imagefactory.settings import Settings
from imagefactory.steps import ImageEntry, PushRequest, SharedEntry


@dataclass(frozen=True)
class Pipeline:
    settings: Settings
    working_tree_digest: str
    """Digest of packer/ and ansible/ of the checkout: what rebuilds a development version."""
    chains: dict[str, stages.VersionChain] = field(default_factory=dict)
    """Each planned version's stage chain (stages.plan_chains); a single stage when empty."""

    @property
    def native(self) -> bool:
        s = self.settings
        return (s.target == "aws" and s.aws.mode == "native") or (s.target == "azure" and s.azure.mode == "native")

    @property
    def work_dir(self) -> Path:
        return Path(self.settings.work_dir)

    def upstream(self) -> UpstreamImage | None:
        """The verified upstream image every local build starts from (none for native builds)."""
        if self.native:
            return None
        s = self.settings
        return UpstreamImage(
            "upstream", {"url": s.upstream_url, "checksum": s.upstream_checksum, "fallback": s.upstream_fallback}
        )

    def release(self, planned: list[versions.Version], upstream: UpstreamImage | None) -> dict[str, pulumi.Output]:
        """Each planned version's `images` entry, by version name."""
        images: dict[str, pulumi.Output] = {}
        published: dict[tuple[str, str], ImageRelease] = {}
        built: dict[tuple[str, str], Any] = {}
        for version in planned:
            source = ReleaseVersion(version.name, {"version": version, "sources_dir": str(self.work_dir / "sources")})
            if upstream is None:
                images[version.name] = self.native_build(version, source, built)
            else:
                images[version.name] = self.local_build(version, source, upstream, published)
        return images

    def chain_of(self, version: versions.Version) -> stages.VersionChain:
        s = self.settings
        if version.name in self.chains:
            return self.chains[version.name]
        if len(s.stages) > 1:
            raise ValueError(f"no stage chain was planned for {version.name}")
        return stages.VersionChain(recipes=[""], keys=[""], parents=[])

    def native_build(
        self, version: versions.Version, source: ReleaseVersion, built: dict[tuple[str, str], Any] | None = None
    ) -> pulumi.Output[ImageEntry]:
        """Every stage in the cloud, bottom first: a parent stage is an AMI tagged ImageStage (AWS)
        or a gallery version in its own image definition (Azure), and its child starts from it; the
        oldest version with a stage's key builds it."""
        from components.cloud_build import NativeImageBuild, NativeImageBuildArgs

        s = self.settings
        built = {} if built is None else built
        built_at = versions.iso_time(version.commit_time)
        common: NativeImageBuildArgs = {
            "target": s.target,
            "version": version.name,
            "is_release": version.is_release,
            "commit": version.commit,
            "build_epoch": version.commit_time,
            "build_time": built_at,
            "source_dir": source.source_dir,
            "work_dir": str(self.work_dir),
            "tag_prefix": s.tag_prefix,
            "aws": s.aws,
            "azure": s.azure,
        }
        below: tuple[str, str, NativeImageBuild] | None = None
        chained = len(s.stages) > 1
        for number, stage in enumerate(s.stages[:-1]):
            plan = self.chain_of(version).parents[number]
            if plan.builds:
                built[(stage.name, plan.version)] = NativeImageBuild(
                    f"{stage.name}-{version.name}",
                    NativeImageBuildArgs(
                        **common,
                        image_name=f"{s.image_name}-{stage.name}",
                        playbook=stage.playbook,
                        stage=stage.name,
                        parent_stage=True,
                        after=self.stage_definitions(stage.name, built),
                        **({"parent": below} if below else {}),
                    ),
                )
            below = (stage.name, plan.version, built[(stage.name, plan.version)])
        top = s.stages[-1]
        build = NativeImageBuild(
            version.name,
            NativeImageBuildArgs(
                **common,
                image_name=s.image_name,
                playbook=top.playbook,
                **({"stage": top.name} if chained else {}),
                **({"parent": below} if below else {}),
            ),
        )

        def entry(result: dict, upstream: str) -> ImageEntry:
            built: ImageEntry = {
                "version": version.name,
                "commit": version.commit,
                "build_time": built_at,
                "upstream": {"source": upstream},
            }
            if s.target == "aws":
                built["aws"] = result["amis"]
            else:
                built["azure"] = result
            return built

        return pulumi.Output.all(build.result, build.upstream).apply(lambda r: entry(r[0], r[1]))

    def stage_definitions(self, stage: str, built: dict[tuple[str, str], Any]) -> list[pulumi.Resource]:
        """Azure: the gallery image definition of a parent stage (one per stack, made on first use,
        kept when the stack is destroyed, since gallery versions live in it); none on AWS."""
        s = self.settings
        if s.target != "azure":
            return []
        if ("definition", stage) not in built:
            from pulumi_azure_native import compute

            from imagefactory.cloud import stage_image_definition

            built[("definition", stage)] = compute.GalleryImage(
                f"{stage}-definition",
                gallery_name=s.azure.gallery,
                gallery_image_name=stage_image_definition(s.azure.image_definition, stage),
                resource_group_name=s.azure.resource_group,
                location=s.azure.location,
                os_type=compute.OperatingSystemTypes.LINUX,
                os_state=compute.OperatingSystemStateTypes.GENERALIZED,
                hyper_v_generation=compute.HyperVGeneration.V2,
                architecture=compute.Architecture.X64,
                identifier={
                    "publisher": s.azure.publisher,
                    "offer": s.azure.offer,
                    "sku": stage_image_definition(s.azure.sku, stage),
                },
                opts=pulumi.ResourceOptions(retain_on_delete=True),
            )
        return [built[("definition", stage)]]

    def local_build(
        self,
        version: versions.Version,
        source: ReleaseVersion,
        upstream: UpstreamImage,
        published: dict[tuple[str, str], ImageRelease] | None = None,
    ) -> pulumi.Output[ImageEntry]:
        """Every stage of one version, bottom first; the top stage is the version's image."""
        s = self.settings
        published = {} if published is None else published
        chain = self.chain_of(version)
        below = Parent(
            upstream.path,
            upstream.sha256,
            upstream.source,
            pulumi.Output.all(upstream.source, upstream.sha256, upstream.via).apply(
                lambda u: [stages.upstream_link(u[0], u[1], u[2])]
            ),
        )
        top = len(s.stages) - 1
        rebuild = [version.name, version.commit, "" if version.is_release else self.working_tree_digest]
        for number, stage in enumerate(s.stages[:-1]):
            plan = chain.parents[number]
            if plan.builds:
                release = self.stage_build(version, source, below, stage, plan)
                published[(stage.name, plan.version)] = release
            child = version.name if number + 1 == top else f"{s.stages[number + 1].name}-{version.name}"
            builder = published.get((stage.name, plan.version))
            parent = ParentImage(
                f"{child}-parent",
                {
                    "registry_dir": str(Path(s.registry_dir)),
                    "stage": stage.name,
                    "version": plan.version,
                    "child": version.name,
                    "rebuild_with": rebuild,
                    "after": [builder] if builder else [],
                },
            )
            below = Parent(parent.path, parent.sha256, parent.source, parent.chain)
        return self.top_build(version, source, below, chain)

    def stage_build(
        self,
        version: versions.Version,
        source: ReleaseVersion,
        below: Parent,
        stage: stages.Stage,
        plan: stages.StagePlan,
    ) -> ImageRelease:
        """A parent stage: built, sealed, checked and published in its own registry, in the one
        format its child boots. It is never retired with its resources: images are built on it."""
        s = self.settings
        _, release = self.sealed_image(
            f"{stage.name}-{version.name}",
            version,
            source,
            below,
            stage,
            work_dir=self.work_dir / "stages" / stage.name,
            source_digest=plan.recipe,
            formats=[stages.PARENT_FORMAT],
            image_name=f"{s.image_name}-{stage.name}",
            recipe=plan.recipe,
            key=plan.key,
            registry_dir=stages.stage_registry(Path(s.registry_dir), stage.name),
            retire_on_delete=False,
        )
        return release

    def sealed_image(
        self,
        name: str,
        version: versions.Version,
        source: ReleaseVersion,
        below: Parent,
        stage: stages.Stage,
        *,
        work_dir: Path,
        source_digest: str,
        formats: list[str],
        image_name: str,
        recipe: str,
        key: str,
        registry_dir: Path,
        retire_on_delete: bool,
        ova_manifest: str = "sha256",
    ) -> tuple[ImageBuild, ImageRelease]:
        """One stage of one version: Packer + Ansible on what is below it, the seal check, its
        formats and their publication. `source_digest` rebuilds a development version (a release's
        commit decides alone)."""
        build = ImageBuild(
            name,
            {
                "version": version.name,
                "commit": version.commit,
                "build_epoch": version.commit_time,
                "source_dir": source.source_dir,
                "source_digest": "" if version.is_release else source_digest,
                "upstream_path": below.path,
                "upstream_sha256": below.sha256,
                "upstream_source": below.source,
                "work_dir": str(work_dir),
                "disk_size_mib": self.settings.disk_size_mib,
                "playbook": stage.playbook,
                "stage": stage.name,
            },
        )
        converted = ImageFormats(
            name,
            {
                "version": version.name,
                "commit": version.commit,
                "build_epoch": version.commit_time,
                "build_time": build.build_time,
                "raw_path": build.raw_path,
                "raw_sha256": build.raw_sha256,
                "seal_report": build.seal_report,
                "upstream_source": below.source,
                "upstream_sha256": below.sha256,
                "formats": formats,
                "out_dir": str(work_dir / version.name),
                "image_name": image_name,
                "code_dir": source.source_dir,
                "stage": stage.name,
                "recipe": recipe,
                "stage_key": key,
                "parents": below.chain.apply(json.dumps),
                "ova_manifest": ova_manifest,
            },
        )
        release = ImageRelease(
            name,
            {
                "version": version.name,
                "is_release": version.is_release,
                "staging_dir": converted.staging_dir,
                "manifest": converted.manifest,
                "registry_dir": str(registry_dir),
                "retire_on_delete": retire_on_delete,
            },
        )
        return build, release

    def top_build(
        self, version: versions.Version, source: ReleaseVersion, upstream: Parent, chain: stages.VersionChain
    ) -> pulumi.Output[ImageEntry]:
        s = self.settings
        build, release = self.sealed_image(
            version.name,
            version,
            source,
            upstream,
            s.stages[-1],
            work_dir=self.work_dir,
            source_digest=self.working_tree_digest,
            formats=list(s.formats),
            ova_manifest=s.ova_manifest,
            image_name=s.image_name,
            recipe=chain.recipes[-1],
            key=chain.keys[-1],
            registry_dir=Path(s.registry_dir),
            retire_on_delete=True,
        )
        entry: pulumi.Output[ImageEntry] = release.entry
        published = pulumi.ResourceOptions(depends_on=[release])
        if s.shared_registry:
            entry = self.shared(version, entry, published)
        # `make revoke` is carried to the clouds by the next `pulumi up` (README, Channels and revocation).
        revoked = registry.revocation(Path(s.registry_dir), version.name)
        try:
            firmwares = bootchain.version_firmwares(registry.published_manifest(Path(s.registry_dir), version.name))
        except FactoryError as exc:  # an unreadable manifest: one line, as every other bad input
            raise pulumi.RunError(str(exc)) from None
        if s.target == "aws":
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
                    "image_name": s.image_name,
                    "settings": s.aws,
                    "revoked": revoked["reason"] if revoked else "",
                    "firmwares": firmwares,
                },
                published,
            )
            entry = pulumi.Output.all(entry, ami.amis).apply(lambda v: ImageEntry(**v[0], aws=v[1]))
        elif s.target == "azure":
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
                    "image_name": s.image_name,
                    "tag_prefix": s.tag_prefix,
                    "settings": s.azure,
                    "release_candidate": version.is_release and is_release_candidate(version.name, s.tag_prefix),
                    "revoked": {"at": revoked["at"], "reason": revoked["reason"]} if revoked else {},
                    "firmwares": firmwares,
                },
                published,
            )
            entry = pulumi.Output.all(entry, gallery.gallery_image_version_id).apply(
                lambda v: ImageEntry(**v[0], azure={"gallery_image_version_id": v[1]})
            )
        return entry

    def shared(
        self, version: versions.Version, entry: pulumi.Output[ImageEntry], published: pulumi.ResourceOptions
    ) -> pulumi.Output[ImageEntry]:
        """The published version, pushed to the shared S3 registry (imagefactory.s3registry); its
        entry gains `shared`: the object of each format. A release's push is protected like it."""
        released = version.is_release
        inputs: dict[str, Any] = {"registry": self.settings.shared_registry, "folder": entry.apply(lambda e: e["dir"])}
        # `make revoke` reaches the store with the next `pulumi up`, as it reaches the clouds.
        revoked = registry.revocation(Path(self.settings.registry_dir), version.name)
        if revoked:
            inputs["revocation"] = json.dumps({"at": revoked["at"], "reason": revoked["reason"]}, sort_keys=True)
        push = python_step(
            f"{version.name}-push",
            PushRequest,
            inputs,
            triggers=[version.name, entry.apply(lambda e: {f: i["sha256"] for f, i in sorted(e["formats"].items())})],
            opts=pulumi.ResourceOptions.merge(
                published, pulumi.ResourceOptions(protect=released, retain_on_delete=released)
            ),
        )
        remote = step_result(push, SharedEntry)
        return pulumi.Output.all(entry, remote).apply(lambda v: ImageEntry(**v[0], shared=v[1]))


@dataclass(frozen=True)
class Parent:
    """What a stage boots: the verified upstream, or the stage below it, re-verified."""

    path: pulumi.Output[str]
    sha256: pulumi.Output[str]
    source: pulumi.Output[str]
    chain: pulumi.Output[list]
