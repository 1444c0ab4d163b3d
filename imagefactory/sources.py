"""What goes into an image build, as a digest: the trigger that makes a changed task rebuild."""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from imagefactory.errors import FactoryError, run_step
from imagefactory.host import portable
from imagefactory.steps import SourcesRequest, SourcesResult

BUILD_INPUTS = ("packer", "ansible")
SKIP_PARTS = {".ansible", "__pycache__", ".pytest_cache"}


def tree_digest(root: Path, folders: tuple[str, ...] = BUILD_INPUTS) -> str:
    """sha256 over the relative path, mode and content of every file under `folders`."""
    digest = hashlib.sha256()
    for folder in folders:
        base = root / folder
        files = sorted(p for p in base.rglob("*") if p.is_file() and not SKIP_PARTS.intersection(p.parts))
        for path in files:
            rel = path.relative_to(root).as_posix()
            digest.update(rel.encode() + b"\0")
            digest.update(b"x" if path.stat().st_mode & 0o111 else b"-")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def export_commit(repo: Path, commit: str, dest: Path) -> Path:
    """Write the tree of `commit` (not the working tree) to `dest`, atomically."""
    if dest.is_dir() and (dest / ".source-commit").read_text().strip() == commit:
        return dest
    result = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", commit], capture_output=True, check=False
    )
    if result.returncode != 0:
        raise FactoryError(f"git archive {commit} failed: {result.stderr.decode().strip()}")
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
            tar.extractall(tmp, filter="data")
    except tarfile.TarError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FactoryError(f"the tree of {commit[:12]} cannot be exported safely: {exc}") from exc
    (tmp / ".source-commit").write_text(commit + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = SourcesRequest.parser(
        argparse.ArgumentParser(description="Export the tree of a release's commit for its build.")
    )
    args = SourcesRequest.from_namespace(parser.parse_args(argv), {})
    return run_step(
        "sources",
        lambda: SourcesResult(dir=portable(export_commit(args.repo, args.commit, args.dest)), commit=args.commit),
    )


if __name__ == "__main__":
    sys.exit(main())
