"""Convert the one sealed RAW disk into every format, and describe the result.

    python -m imagefactory.formats --raw R --raw-sha256 H --out-base D --version V --commit C \
        --upstream-source U --upstream-sha256 S --build-time T --build-epoch E \
        --formats raw,qcow2,vhd,vmdk,ova [--name debian-12]                     (steps.FormatsRequest)

Every file is written under a temporary name and renamed when complete; the folder gets a
SHA256SUMS and a manifest.json. Conversions run in parallel. Each file is then checked:
`qemu-img info` must read it in its declared format with the RAW's virtual size, `qemu-img
check` must accept it where the format supports checking, and `qemu-img compare` must find
its content equal to the RAW.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory import accel, bootchain, bootcheck, gpt, host, ovf, packages
from imagefactory.checksums import file_digest, format_sums
from imagefactory.debugfs import Filesystem
from imagefactory.errors import FactoryError, last_json, run_step
from imagefactory.files import partial_name, run, write_atomic
from imagefactory.remaster import derived_uuid
from imagefactory.stages import upstream_link
from imagefactory.steps import FormatsRequest, FormatsResult
from imagefactory.upstream import stage0_packages

MIB = 1024 * 1024


@dataclass(frozen=True)
class FormatSpec:
    extension: str
    qemu_format: str
    """qemu-img's name for the format (for info/check/compare)."""
    convert_options: tuple[str, ...]
    checkable: bool


FORMATS = {
    "raw": FormatSpec("raw", "raw", (), False),
    "qcow2": FormatSpec("qcow2", "qcow2", ("-c", "-O", "qcow2", "-o", "compression_type=zlib"), True),
    # Azure needs a fixed VHD whose virtual size is a whole number of MiB; force_size keeps
    # qemu-img from rounding the size to a CHS geometry.
    "vhd": FormatSpec("vhd", "vpc", ("-O", "vpc", "-o", "subformat=fixed,force_size=on"), False),
    "vmdk": FormatSpec("vmdk", "vmdk", ("-O", "vmdk", "-o", "subformat=streamOptimized,adapter_type=ide"), True),
    "vhdx": FormatSpec("vhdx", "vhdx", ("-O", "vhdx", "-o", "subformat=dynamic"), True),
}


# Every format a stack may ask for: the disk formats above, and the OVA that packages the VMDK.
ALL_FORMATS = (*FORMATS, "ova")


VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z, where VHD timestamps start


def stamp_vhd(path: Path, version: str, epoch: int) -> None:
    """Replace the random UUID and the wall-clock timestamp of a fixed VHD's footer with values
    derived from the version and the commit time, and fix the footer checksum."""
    with open(path, "r+b") as handle:
        handle.seek(-512, os.SEEK_END)
        footer = bytearray(handle.read(512))
        if footer[:8] != b"conectix":
            raise FactoryError(f"{path.name} has no VHD footer")
        footer[24:28] = max(0, epoch - VHD_EPOCH).to_bytes(4, "big")
        footer[68:84] = derived_uuid(version, "vhd").bytes
        footer[64:68] = b"\0\0\0\0"
        footer[64:68] = (~sum(footer) & 0xFFFFFFFF).to_bytes(4, "big")
        handle.seek(-512, os.SEEK_END)
        handle.write(footer)


def stamp_vmdk(path: Path, final_name: str, version: str) -> None:
    """Make the embedded descriptor deterministic: a CID derived from the version, and the
    extent named after the published file (not the temporary name it was written under)."""
    with open(path, "r+b") as handle:
        header = handle.read(512)
        if header[:4] != b"KDMV":
            raise FactoryError(f"{path.name} is not a sparse VMDK")
        offset = int.from_bytes(header[28:36], "little") * 512
        size = int.from_bytes(header[36:44], "little") * 512
        handle.seek(offset)
        text = handle.read(size).split(b"\0", 1)[0].decode()
        cid = derived_uuid(version, "vmdk-cid").hex[:8]
        lines = []
        for line in text.splitlines():
            if line.startswith("CID="):
                line = f"CID={cid}"
            elif line.startswith("RW ") and '"' in line:
                line = line[: line.index('"')] + f'"{final_name}"'
            lines.append(line)
        new = ("\n".join(lines) + "\n").encode()
        if len(new) > size:
            raise FactoryError(f"{path.name}: the descriptor does not fit its {size}-byte area")
        handle.seek(offset)
        handle.write(new + b"\0" * (size - len(new)))


def convert(raw: Path, fmt: str, dest: Path, version: str = "", epoch: int = 0) -> Path:
    tmp = partial_name(dest)
    tmp.unlink(missing_ok=True)
    if fmt == "raw":
        try:
            os.link(raw, tmp)
        except OSError:
            run(["cp", "--sparse=always", str(raw), str(tmp)])
    else:
        run(["qemu-img", "convert", "-f", "raw", *FORMATS[fmt].convert_options, str(raw), str(tmp)])
    if fmt == "vhd":
        stamp_vhd(tmp, version, epoch)
    elif fmt == "vmdk":
        stamp_vmdk(tmp, dest.name, version)
    tmp.replace(dest)
    return dest


def verify_file(raw: Path, fmt: str, path: Path) -> dict[str, object]:
    """qemu-img must read the file as its declared format, with the RAW's size and content."""
    spec = FORMATS[fmt]
    info = json.loads(run(["qemu-img", "info", "--output=json", "-f", spec.qemu_format, str(path)]))
    if info.get("format") != spec.qemu_format:
        raise FactoryError(f"{path.name}: qemu-img reads it as {info.get('format')}, not {spec.qemu_format}")
    raw_size = raw.stat().st_size
    if info["virtual-size"] != raw_size:
        raise FactoryError(f"{path.name}: virtual size {info['virtual-size']} differs from the RAW's {raw_size}")
    if spec.checkable:
        run(["qemu-img", "check", "-q", "-f", spec.qemu_format, str(path)])
    if fmt != "raw":
        run(["qemu-img", "compare", "-q", "-f", "raw", "-F", spec.qemu_format, str(raw), str(path)])
    return {"virtual_size": info["virtual-size"], "qemu_format": spec.qemu_format}


def _tar_member(tar: tarfile.TarFile, path: Path, arcname: str, mtime: int) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = path.stat().st_size
    info.mtime = mtime
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with open(path, "rb") as handle:
        tar.addfile(info, handle)


def make_ova(
    vmdk: Path, dest: Path, name: str, version: str, capacity: int, mtime: int, manifest_digest: str = "sha256"
) -> Path:
    """USTAR tar of descriptor, manifest and disk, in that order (as OVF 1.0 requires); the
    manifest's digests are `manifest_digest` (ovf.MANIFEST_DIGESTS)."""
    base = dest.stem
    work = dest.parent / f".{base}.ova-parts"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        ovf_path = work / f"{base}.ovf"
        ovf_path.write_text(ovf.descriptor(name, version, f"{base}.vmdk", vmdk.stat().st_size, capacity))
        mf_path = work / f"{base}.mf"
        digests = {
            ovf_path.name: file_digest(ovf_path, manifest_digest),
            f"{base}.vmdk": file_digest(vmdk, manifest_digest),
        }
        mf_path.write_text(ovf.manifest(digests, manifest_digest))
        tmp = partial_name(dest)
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            _tar_member(tar, ovf_path, ovf_path.name, mtime)
            _tar_member(tar, mf_path, mf_path.name, mtime)
            _tar_member(tar, vmdk, f"{base}.vmdk", mtime)
        tmp.replace(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def check_manifest_digest_supported(version: str, digest: str, tree_ovf: str | None) -> None:
    """A release's formats step runs its tag's own code: a tag older than the ovaManifest setting
    always writes SHA-256, so another digest for it is refused (tree_ovf: its imagefactory/ovf.py)."""
    if digest != "sha256" and "MANIFEST_DIGESTS" not in (tree_ovf or ""):
        raise FactoryError(
            f"imagefactory:ovaManifest is {digest!r}, but {version}'s tree predates that setting and writes SHA-256 "
            f"manifests only; keep sha256 for it, or publish the change as a new release"
        )


def verify_ova(ova: Path) -> dict[str, str]:
    """Check every file of an OVA against its .mf (SHA-1 or SHA-256 lines): file -> algorithm.
    Refuses an OVA whose manifest is missing, names a file it lacks, or does not match."""
    with tarfile.open(ova) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        manifests = [n for n in members if n.endswith(".mf")]
        if len(manifests) != 1:
            raise FactoryError(f"{ova.name} has {len(manifests)} manifests (.mf); an OVA has one")
        try:
            entries = ovf.read_manifest(tar.extractfile(members[manifests[0]]).read().decode())  # type: ignore[union-attr]  # a regular file
        except (ValueError, UnicodeDecodeError) as exc:
            raise FactoryError(f"{ova.name}: its manifest {manifests[0]} cannot be read: {exc}") from None
        # The manifest lists every file but itself and a signing certificate (.cert).
        unlisted = sorted(n for n in set(members) - set(entries) - set(manifests) if not n.endswith(".cert"))
        if unlisted:
            raise FactoryError(f"{ova.name}: {', '.join(unlisted)} not in its manifest")
        for member, (algorithm, expected) in entries.items():
            if member not in members:
                raise FactoryError(f"{ova.name}: its manifest lists {member}, which it does not hold")
            digest = hashlib.new(algorithm)
            with tar.extractfile(members[member]) as handle:  # type: ignore[union-attr]  # a regular file
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            if digest.hexdigest() != expected:
                raise FactoryError(f"{ova.name}: {member} does not match its {algorithm} in the manifest")
    return {member: algorithm for member, (algorithm, _) in entries.items()}


def produce(
    raw: Path, out: Path, name: str, version: str, formats: list[str], mtime: int, ova_manifest: str = "sha256"
) -> dict[str, dict]:
    unknown = [f for f in formats if f not in ALL_FORMATS]
    if unknown:
        raise FactoryError(f"unknown format(s) {', '.join(unknown)}; accepted: {', '.join(ALL_FORMATS)}")
    size = raw.stat().st_size
    if size % MIB:
        raise FactoryError(f"{raw.name} is {size} bytes, not a whole number of MiB (Azure requires it for VHD)")
    out.mkdir(parents=True, exist_ok=True)
    base = f"{name}-{version}"
    disk_formats = [f for f in formats if f != "ova"]
    if "ova" in formats and "vmdk" not in disk_formats:
        disk_formats.append("vmdk")
    paths: dict[str, Path] = {}
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {
            f: pool.submit(convert, raw, f, out / f"{base}.{FORMATS[f].extension}", version, mtime)
            for f in disk_formats
        }
        for fmt, future in futures.items():
            paths[fmt] = future.result()
        checks = {f: pool.submit(verify_file, raw, f, paths[f]) for f in disk_formats}
        details = {f: c.result() for f, c in checks.items()}
    if "ova" in formats:
        paths["ova"] = make_ova(paths["vmdk"], out / f"{base}.ova", name, version, size, mtime, ova_manifest)
        verify_ova(paths["ova"])
        details["ova"] = {"virtual_size": size, "contains": f"{base}.vmdk"}
        if ova_manifest != "sha256":  # recorded when not the default, so a default OVA's entry is unchanged
            details["ova"]["manifest_digest"] = ova_manifest
        if "vmdk" not in formats:
            paths.pop("vmdk").unlink()
            details.pop("vmdk")
    result = {}
    for fmt in formats:
        path = paths[fmt]
        result[fmt] = {"file": path.name, "bytes": path.stat().st_size, "sha256": file_digest(path), **details[fmt]}
    return result


def remove_previous(stdout: str) -> None:
    """Delete the staging folder recorded in a previous run's JSON output (used on delete)."""
    folder = Path(last_json(stdout).get("dir", ""))
    if folder.name.startswith("formats-"):
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # the version's folder, once nothing else is in it


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] == ["--remove-previous"]:
        remove_previous(os.environ.get("PULUMI_COMMAND_STDOUT", ""))
        return 0
    parser = FormatsRequest.parser(argparse.ArgumentParser(description="Convert the sealed RAW into every format."))
    args = FormatsRequest.from_namespace(parser.parse_args(argv), os.environ)
    return run_step("formats", lambda: convert_all(args))


def chain_of(args: FormatsRequest) -> list[dict[str, object]]:
    """The chain of custody down to this image: what it was built on, then itself."""
    if args.parents:
        parents = json.loads(args.parents)
    else:
        parents = [upstream_link(args.upstream_source, args.upstream_sha256, "")]
    if not isinstance(parents, list) or not parents or parents[0].get("stage") != "upstream":
        raise FactoryError(f"PARENT_CHAIN is {args.parents[:200]!r}; accepted: a JSON list that starts at the upstream")
    own = {
        "stage": args.stage or "image",
        "version": args.version,
        "commit": args.commit,
        "recipe": args.recipe,
        "sealed_raw_sha256": args.raw_sha256,
    }
    return [*parents, own]


def package_files(raw: Path, out: Path, name: str, version: str, epoch: int) -> dict[str, Any]:
    """The package set the seal role recorded inside the image, published beside the formats as
    packages.tsv and a CycloneDX SBOM; empty when the image recorded none."""
    text = Filesystem(raw, gpt.root_partition(raw).offset).read(packages.PACKAGES_FILE)
    if text is None:
        print(f"formats: {raw.name} recorded no package set ({packages.PACKAGES_FILE})", file=sys.stderr)
        return {}
    recorded = packages.parse(text.decode(), packages.PACKAGES_FILE)
    write_atomic(out / packages.TSV_NAME, packages.to_tsv(recorded))
    write_atomic(out / packages.SBOM_NAME, packages.sbom(recorded, name, version, epoch))
    files = {
        key: {"file": name, "sha256": file_digest(out / name), "bytes": (out / name).stat().st_size}
        for key, name in (("tsv", packages.TSV_NAME), ("sbom", packages.SBOM_NAME))
    }
    return {"count": len(recorded), **files, "sbom_format": "CycloneDX 1.6"}


def boot_gate(args: FormatsRequest, files: dict[str, Path]) -> list[dict[str, Any]]:
    """Before anything is published, each format boots (imagefactory.bootcheck). The mode and
    the stage users launch are host facts: a parent stage is booted by its child's build."""
    facts = host.read()
    if args.stage and facts.top_stage and args.stage != facts.top_stage:
        return []
    mode = facts.boot_check or bootcheck.default_mode(not args.version.startswith("dev-"))
    if not bootcheck.plan(list(files), mode):
        print(f"formats: boot check ({mode}): none of {', '.join(files)} is booted in this mode", file=sys.stderr)
        return []
    accelerator = accel.choose(facts.accelerator, args.raw, host.cache_dir())
    print(f"formats: boot check ({mode}) of {args.version} under {accelerator}", file=sys.stderr)
    return bootcheck.run(files, args.version, mode, accelerator, args.out_base / f".boot-{os.getpid()}")


def convert_all(args: FormatsRequest) -> FormatsResult:
    """Every format of the sealed RAW in a new folder, with its SHA256SUMS and manifest."""
    if args.sealed not in ("", "True"):
        raise FactoryError(f"the seal check of {args.raw} did not pass (sealed={args.sealed}); nothing is converted")
    out = args.out_base / f"formats-{args.raw_sha256[:12]}-{os.urandom(4).hex()}"
    if not args.raw.is_file():
        raise FactoryError(f"sealed RAW {args.raw} does not exist; rebuild the image")
    if file_digest(args.raw) != args.raw_sha256:
        raise FactoryError(f"{args.raw} changed since it was sealed and checked; rebuild the image")
    for stale in args.out_base.glob(".formats-*.partial"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a run that was killed
    tmp_out = out.with_name(f".{out.name}.partial")
    print(f"formats: converting {args.version} to {args.formats}", file=sys.stderr)
    if (args.ova_manifest or "sha256") not in ovf.MANIFEST_DIGESTS:
        raise FactoryError(f"OVA_MANIFEST is {args.ova_manifest!r}; accepted: {', '.join(ovf.MANIFEST_DIGESTS)}")
    formats = produce(
        args.raw,
        tmp_out,
        args.name,
        args.version,
        args.formats.split(","),
        args.build_epoch,
        args.ova_manifest or "sha256",
    )
    recorded = package_files(args.raw, tmp_out, args.name, args.version, args.build_epoch)
    upstream = {"source": args.upstream_source, "sha256": args.upstream_sha256}
    # The stage-0 image's own package set, from the cache folder that holds that image: what a
    # rebuild of this version builds it again from (imagefactory.rebuild).
    listed_upstream = stage0_packages(args.upstream_source, args.upstream_sha256, host.cache_dir())
    if listed_upstream is not None:
        text = packages.to_tsv(packages.parse(listed_upstream.read_text(), str(listed_upstream)))
        write_atomic(tmp_out / packages.UPSTREAM_TSV_NAME, text)
        upstream["packages"] = packages.UPSTREAM_TSV_NAME
    booted = boot_gate(args, {fmt: tmp_out / entry["file"] for fmt, entry in formats.items()})
    result = FormatsResult(
        version=args.version,
        commit=args.commit,
        name=args.name,
        disk_size_mib=args.raw.stat().st_size // MIB,
        build_time=args.build_time,
        upstream=upstream,
        sealed_raw_sha256=args.raw_sha256,
        formats=formats,
        dir=host.portable(out),
        stage=args.stage,
        recipe=args.recipe,
        stage_key=args.stage_key,
        chain=chain_of(args),
        packages=recorded,
        boot_checks=booted,
        firmwares=bootchain.firmwares(bootchain.check(args.raw)),
    )
    manifest = {k: v for k, v in result.to_json().items() if k != "dir"}  # manifest.json: all but the folder
    write_atomic(tmp_out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    listed = {
        v["file"]: v["sha256"] for v in [*formats.values(), *(v for k, v in recorded.items() if k in ("tsv", "sbom"))]
    }
    if "packages" in upstream:
        listed[upstream["packages"]] = file_digest(tmp_out / upstream["packages"])
    write_atomic(tmp_out / "SHA256SUMS", format_sums(listed))
    tmp_out.replace(out)
    return result


if __name__ == "__main__":
    sys.exit(main())
