"""Re-verify a published parent stage before its child boots it: the chain of custody's check.

    python -m imagefactory.parent --registry R --stage base --version V --child C   (steps.ParentRequest)

The parent's file must match the digest the registry recorded when it was published (the
append-only ledger), its SHA256SUMS and its manifest. A mismatch stops the release, naming the
file and both digests. On success one JSON line (steps.ParentResult) goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from imagefactory import host, registry
from imagefactory.checksums import file_digest
from imagefactory.errors import FactoryError, run_step
from imagefactory.stages import PARENT_FORMAT, stage_link, stage_registry
from imagefactory.steps import ParentRequest, ParentResult


def resolve_parent(top_registry: Path, stage: str, version: str, child: str) -> ParentResult:
    where = stage_registry(top_registry, stage)
    index = registry.read_index(where)
    if version not in index["versions"]:
        available = ", ".join(sorted(index["versions"])) or "none"
        raise FactoryError(
            f"stage {stage} {version}, the parent of {child}, is not published in {where}; it has: {available}"
        )
    revoked = registry.revocation(where, version)
    if revoked:
        raise FactoryError(
            f"stage {stage} {version}, the parent of {child}, is revoked since {revoked['at']}: {revoked['reason']}; "
            f"{child} is not built on it: change the stage's recipe (a new base version is built) or its upstream"
        )
    folder = where / version
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file():
        raise FactoryError(f"{manifest_file} is missing: the parent {stage} {version} of {child} cannot be checked")
    try:
        manifest = json.loads(manifest_file.read_text())
        item = manifest.get("formats", {}).get(PARENT_FORMAT)
    except (ValueError, AttributeError):
        raise FactoryError(
            f"{manifest_file} is not a manifest (damaged); {stage} {version} cannot be checked"
        ) from None
    if not isinstance(item, dict) or "file" not in item:
        raise FactoryError(f"stage {stage} {version} has no {PARENT_FORMAT} file, which its child {child} boots")
    path = folder / item["file"]
    published = registry.read_ledger(where).get(version, {}).get("content", {}).get("formats", {}).get(PARENT_FORMAT)
    if published is None:
        raise FactoryError(f"the ledger of {where} has no record of {stage} {version}; its digest cannot be proven")
    if not path.is_file():
        raise FactoryError(f"{path} is missing: the parent {stage} {version} of {child} was deleted or moved")
    actual = file_digest(path)
    if actual != published:
        raise FactoryError(
            f"{path} does not match its published digest: published sha256:{published}, actual sha256:{actual}; "
            f"the parent {stage} {version} was changed after it was published, so {child} is not built on it"
        )
    # The manifest and SHA256SUMS must agree with the file and with the index too.
    registry.verify(where, version)
    print(f"parent: {stage} {version} verified (sha256:{actual[:16]}…) for {child}", file=sys.stderr)
    chain = [*manifest.get("chain", [])[:-1], stage_link(stage, manifest, PARENT_FORMAT)]
    return ParentResult(
        path=host.portable(path),
        sha256=actual,
        source=f"{stage} {version}",
        stage=stage,
        version=version,
        chain=chain,
    )


def main(argv: list[str] | None = None) -> int:
    parser = ParentRequest.parser(argparse.ArgumentParser(description="Re-verify a published parent stage."))
    request = ParentRequest.from_namespace(parser.parse_args(argv), os.environ)
    return run_step("parent", lambda: resolve_parent(request.registry, request.stage, request.version, request.child))


if __name__ == "__main__":
    sys.exit(main())
