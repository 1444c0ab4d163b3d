"""Resolve and verify the upstream image that every build starts from.

    python -m imagefactory.upstream --url <URL or path> --checksum <spec> --fallback stage0|none --cache <dir>

Prints one JSON object: the verified local path, its sha256, and where it came from. The
image is verified before anything boots it. A checksum mismatch always stops the release (a
mismatch is never a reason to fall back), and so does an upstream that is missing: a path that
does not exist, an HTTP error such as 404, a checksum file that is unreadable, malformed or does
not list the image. Only an unreachable network (no route, refused, no DNS, timeout) falls back
to the stage-0 image, when the stack allows it, and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from imagefactory import aptrepo, files, host, packages
from imagefactory.checksums import file_digest, parse_expected, parse_sums, verify
from imagefactory.errors import FactoryError, run_step
from imagefactory.steps import UpstreamRequest, UpstreamResult

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def stage0_files(root: Path) -> tuple[Path, Path]:
    """The stage-0 recipe of a project tree, and the seal role's recorder that it runs to record
    its package set with the same script."""
    return (
        root / "imagefactory" / "stage0" / "build.sh",
        root / "ansible" / "roles" / "seal" / "files" / "record-packages.py",
    )


STAGE0_SCRIPT, RECORD_SCRIPT = stage0_files(PROJECT_ROOT)
STAGE0_IMAGE = "debian-12-stage0-amd64.qcow2"
FETCH_TIMEOUT = 20
# An upstream on a closed local port: unreachable at once, without traffic to any other address.
# Tests and benchmarks use it to take the stage-0 path the way a machine without internet does.
UNREACHABLE_URL = "http://127.0.0.1:9/debian-12-genericcloud-amd64.qcow2"
UNREACHABLE_SUMS = "file:http://127.0.0.1:9/SHA512SUMS"


class Unreachable(FactoryError):
    """The network did not answer: the only fault that may fall back to stage-0."""


def _fetch_error(url: str, exc: Exception) -> FactoryError:
    """An HTTP answer (404, 403...) means the upstream is wrong, not that the network is down."""
    if isinstance(exc, urllib.error.HTTPError):
        return FactoryError(f"{url} answered HTTP {exc.code} {exc.reason}; check imagefactory:upstreamUrl/Checksum")
    return Unreachable(f"cannot reach {url}: {getattr(exc, 'reason', exc)}")


Upstream = UpstreamResult  # the step's result is the resolved upstream


def is_url(location: str) -> bool:
    return urllib.parse.urlparse(location).scheme in ("http", "https")


def stage0_recipe_digest(root: Path = PROJECT_ROOT) -> str:
    """Changes whenever the stage-0 recipe (or the recorder it runs) changes, so a new recipe
    builds a new image; `root` is the project tree (a tag's exported tree for a rebuild)."""
    script, record = stage0_files(root)
    return hashlib.sha256(script.read_bytes() + record.read_bytes()).hexdigest()[:16]


def run_stage0(script: Path, record: Path, out: Path, cache: Path, repository: str = "") -> None:
    """Run a stage-0 recipe into `out` (made anew) and keep the packages it used, by digest.
    With `repository`, the tree is built from that local repository only (a rebuild)."""
    if os.geteuid() != 0:
        raise FactoryError(
            "the stage-0 image is built with mmdebstrap --mode=root and needs root; "
            "run the release as root once, or configure imagefactory:upstreamUrl"
        )
    shutil.rmtree(out, ignore_errors=True)
    # Only the recipe decides the bytes: no SOURCE_DATE_EPOCH or STAGE0_* of the caller's shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGE0_") and k != "SOURCE_DATE_EPOCH"}
    env["STAGE0_RECORD_SCRIPT"] = str(record)
    if repository:
        env["STAGE0_REPOSITORY"] = repository
    result = subprocess.run([str(script), str(out)], stdout=subprocess.DEVNULL, env=env, check=False)
    if result.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)
        raise FactoryError(f"the stage-0 recipe {script.name} failed with exit code {result.returncode}")
    export = out / aptrepo.EXPORT_TAR
    kept = aptrepo.ingest_tar(export, cache)
    export.unlink()
    print(
        f"upstream: kept {kept.debs} package file(s) of the stage-0 image in {aptrepo.cache_root(cache)}",
        file=sys.stderr,
    )


def _read(location: str) -> bytes:
    if is_url(location):
        try:
            with urllib.request.urlopen(location, timeout=FETCH_TIMEOUT) as response:  # noqa: S310 - http(s) only
                return response.read()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise _fetch_error(location, exc) from None
    path = Path(location.removeprefix("file://"))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FactoryError(f"cannot read {path}: {exc.strerror}") from None


def _download(url: str, dest: Path) -> None:
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response, open(part, "wb") as out:  # noqa: S310
            shutil.copyfileobj(response, out, 4 * 1024 * 1024)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise _fetch_error(url, exc) from None
    part.replace(dest)


def expected_digest(checksum: str, image_name: str) -> tuple[str, str]:
    """(algorithm, hex) for the image, from an inline digest or a SHA256SUMS/SHA512SUMS file."""
    if not checksum:
        raise FactoryError("imagefactory:upstreamChecksum is empty; an upstream image is never used unverified")
    if checksum.startswith("file:"):
        location = checksum.removeprefix("file:")
        try:
            sums = parse_sums(_read(location).decode(errors="replace"))
        except Unreachable:
            raise
        except FactoryError as exc:
            raise FactoryError(f"checksum file {location}: {exc}") from None
        if image_name not in sums:
            raise FactoryError(f"checksum file {location} has no entry for {image_name}")
        return sums[image_name]
    return parse_expected(checksum)


def resolve(url: str, checksum: str, cache: Path) -> Upstream:
    """Fetch (or locate) and verify the configured upstream image."""
    name = Path(urllib.parse.urlparse(url).path).name if is_url(url) else Path(url).name
    algorithm, expected = expected_digest(checksum, name)
    if is_url(url):
        folder = cache / "upstream" / hashlib.sha256(url.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        local = folder / name
        if not local.exists() or file_digest(local, algorithm) != expected:
            print(f"upstream: downloading {url}", file=sys.stderr)
            _download(url, local)
        via = "download"
    else:
        local = Path(url.removeprefix("file://")).resolve()
        if not local.is_file():
            raise FactoryError(f"upstream image {local} does not exist; check imagefactory:upstreamUrl")
        via = "path"
    verify(local, algorithm, expected)
    sha256 = expected if algorithm == "sha256" else file_digest(local, "sha256")
    print(f"upstream: {name} verified ({algorithm}:{expected[:16]}…)", file=sys.stderr)
    return Upstream(str(local), sha256, url, f"{algorithm}:{expected}", via)


def build_stage0(cache: Path) -> Upstream:
    """Build (once per recipe) and verify the stage-0 image, exactly like a downloaded upstream."""
    folder = cache / "upstream" / f"stage0-{stage0_recipe_digest()}"
    image = folder / STAGE0_IMAGE
    sums = folder / "SHA256SUMS"

    def built() -> bool:  # the folder appears whole, in one rename
        return image.is_file() and sums.is_file() and (folder / packages.TSV_NAME).is_file()

    # Two releases on one machine may both need it: the second waits for the first's image. A
    # cached image is only read (no lock file is made, so a read-only cache serves it).
    if not built():
        with files.exclusive(folder.with_name(f".{folder.name}.lock")):
            if not built():
                print(
                    f"upstream: building the stage-0 Debian 12 image into {folder} (about 1-2 minutes)", file=sys.stderr
                )
                tmp = folder.with_name(folder.name + ".tmp")
                run_stage0(STAGE0_SCRIPT, RECORD_SCRIPT, tmp, cache)
                shutil.rmtree(folder, ignore_errors=True)
                tmp.replace(folder)
    resolved = resolve(str(image), f"file:{sums}", cache)
    return Upstream(resolved.path, resolved.sha256, f"stage0:{stage0_recipe_digest()}", resolved.checksum, "stage0")


def stage0_packages(source: str, sha256: str, cache: Path) -> Path | None:
    """The recorded package set of the stage-0 image an upstream source names ("stage0:<recipe>"),
    when the cache holds that image with this digest; None for any other upstream. A host fact:
    read when the formats step runs, never a resource input."""
    if not source.startswith("stage0:"):
        return None
    folder = cache / "upstream" / f"stage0-{source.removeprefix('stage0:')}"
    listed, sums = folder / packages.TSV_NAME, folder / "SHA256SUMS"
    try:
        recorded = parse_sums(sums.read_text()).get(STAGE0_IMAGE)
    except (OSError, FactoryError):
        return None
    return listed if recorded == ("sha256", sha256) and listed.is_file() else None


def resolve_with_fallback(url: str, checksum: str, fallback: str, cache: Path) -> Upstream:
    try:
        return resolve(url, checksum, cache)
    except Unreachable as exc:
        if fallback != "stage0":
            raise FactoryError(
                f"the upstream image cannot be fetched ({exc}) and imagefactory:upstreamFallback is "
                f"{fallback!r}; set it to stage0 or point imagefactory:upstreamUrl at a reachable image"
            ) from exc
        print(f"upstream: {exc}; using the stage-0 image built from Debian's packages instead", file=sys.stderr)
        return build_stage0(cache)


def main(argv: list[str] | None = None) -> int:
    parser = UpstreamRequest.parser(argparse.ArgumentParser(description="Resolve and verify the upstream image."))
    parser.add_argument("--cache", type=Path, help="default: the per-user cache (imagefactory.host)")
    args = parser.parse_args(argv)
    request = UpstreamRequest.from_namespace(args, os.environ)
    cache = args.cache or host.cache_dir()
    return run_step("upstream", lambda: resolve_with_fallback(request.url, request.checksum, request.fallback, cache))


if __name__ == "__main__":
    sys.exit(main())
