"""Upload the fixed VHD as a page blob (what a gallery image version imports), and verify it.

    python -m imagefactory.azure_upload   (inputs in the environment)

Environment: VHD_PATH, VHD_SHA256, STORAGE_ACCOUNT, CONTAINER, BLOB_NAME. Credentials come
from the usual Azure environment through DefaultAzureCredential; nothing is logged. Prints
{"url": ..., "sha256": ...}. An existing blob with the same digest is kept (no re-upload).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from imagefactory.checksums import file_digest
from imagefactory.errors import FactoryError

PAGE = 512
CHUNK = 4 * 1024 * 1024


def upload(env: dict[str, str]) -> dict[str, str]:
    from azure.identity import DefaultAzureCredential
    from azure.storage.blob import BlobServiceClient

    vhd = Path(env["VHD_PATH"])
    size = vhd.stat().st_size
    if size % PAGE:
        raise FactoryError(f"{vhd.name} is {size} bytes; a page blob needs a multiple of 512")
    if file_digest(vhd) != env["VHD_SHA256"]:
        raise FactoryError(f"{vhd} does not match the published digest; it changed after the release")
    service = BlobServiceClient(
        f"https://{env['STORAGE_ACCOUNT']}.blob.core.windows.net", credential=DefaultAzureCredential()
    )
    blob = service.get_blob_client(env["CONTAINER"], env["BLOB_NAME"])
    if blob.exists() and (blob.get_blob_properties().metadata or {}).get("sha256") == env["VHD_SHA256"]:
        return {"url": blob.url, "sha256": env["VHD_SHA256"]}
    blob.create_page_blob(size, metadata={"sha256": env["VHD_SHA256"]})
    with open(vhd, "rb") as handle:
        offset = 0
        while chunk := handle.read(CHUNK):
            if chunk.strip(b"\0"):  # a sparse disk: skip pages that are all zeros
                blob.upload_page(chunk, offset=offset, length=len(chunk))
            offset += len(chunk)
    return {"url": blob.url, "sha256": env["VHD_SHA256"]}


def main() -> int:
    try:
        print(json.dumps(upload(dict(os.environ))))
    except FactoryError as exc:
        print(f"azure upload: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
