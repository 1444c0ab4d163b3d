"""Upload the fixed VHD as a page blob (what a gallery image version imports), and verify it.

    python -m imagefactory.azure_upload   (inputs in the environment)

Environment: VHD_PATH, VHD_SHA256, STORAGE_ACCOUNT, CONTAINER, BLOB_NAME. Credentials come
from the usual Azure environment through DefaultAzureCredential, or from
AZURE_STORAGE_CONNECTION_STRING (an emulator such as Azurite); AZURE_STORAGE_BLOB_ENDPOINT
overrides the account's endpoint. Nothing secret is logged. Prints {"url": ..., "sha256": ...}.

A blob counts as uploaded only when its `sha256` metadata says so, and that metadata is
written last: after every page is up and the blob's content, read back, has the published
digest. An upload killed half-way therefore leaves a blob without the digest, which the next run
completes (every page written again, zero pages cleared); a blob that already carries the
digest is kept and nothing is sent.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from imagefactory.checksums import file_digest
from imagefactory.errors import FactoryError, run_step
from imagefactory.steps import AzureUploadRequest, AzureUploadResult

PAGE = 512
CHUNK = 4 * 1024 * 1024


def blob_client(env: dict[str, str]) -> Any:
    from azure.storage.blob import BlobServiceClient

    if env.get("AZURE_STORAGE_CONNECTION_STRING"):
        service = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"])
    else:
        from azure.identity import DefaultAzureCredential

        endpoint = env.get("AZURE_STORAGE_BLOB_ENDPOINT") or f"https://{env['STORAGE_ACCOUNT']}.blob.core.windows.net"
        service = BlobServiceClient(endpoint, credential=DefaultAzureCredential())
    return service.get_blob_client(env["CONTAINER"], env["BLOB_NAME"])


def blob_digest(blob: Any, size: int) -> str:
    """SHA-256 of the blob's content, reading only its written pages (the rest reads as zeros)."""
    digest = hashlib.sha256()
    offset = 0
    for page in blob.list_page_ranges():
        if page.cleared:
            continue
        _zeros(digest, page.start - offset)
        data = blob.download_blob(offset=page.start, length=page.end - page.start + 1).readall()
        digest.update(data)
        offset = page.end + 1
    _zeros(digest, size - offset)
    return digest.hexdigest()


def _zeros(digest: Any, count: int) -> None:
    block = bytes(min(count, CHUNK))
    while count > 0:
        digest.update(block[: min(count, CHUNK)])
        count -= CHUNK


def upload(vhd: Path, sha256: str, blob: Any) -> AzureUploadResult:
    size = vhd.stat().st_size
    if size % PAGE:
        raise FactoryError(f"{vhd.name} is {size} bytes; a page blob needs a multiple of 512")
    if file_digest(vhd) != sha256:
        raise FactoryError(f"{vhd} does not match the published digest; it changed after the release")
    resume = False
    if blob.exists():
        props = blob.get_blob_properties()
        if (props.metadata or {}).get("sha256") == sha256 and props.size == size:
            return AzureUploadResult(url=blob.url, sha256=sha256, uploaded=False)
        resume = props.blob_type == "PageBlob" and props.size == size
        if not resume:
            blob.delete_blob()
    if not resume:
        blob.create_page_blob(size)
    print(f"azure upload: {'completing' if resume else 'uploading'} {vhd.name} as a page blob", file=sys.stderr)
    with open(vhd, "rb") as handle:
        offset = 0
        while chunk := handle.read(CHUNK):
            if chunk.strip(b"\0"):
                blob.upload_page(chunk, offset=offset, length=len(chunk))
            elif resume:  # a page written by an earlier, different attempt must read as zeros
                blob.clear_page(offset=offset, length=len(chunk))
            offset += len(chunk)
    uploaded = blob_digest(blob, size)
    if uploaded != sha256:
        raise FactoryError(f"the uploaded blob {blob.url} reads back as sha256:{uploaded}, not sha256:{sha256}")
    blob.set_blob_metadata({"sha256": sha256})  # last: only now is the upload complete
    return AzureUploadResult(url=blob.url, sha256=sha256, uploaded=True)


def upload_from_env(env: dict[str, str]) -> AzureUploadResult:
    from azure.core.exceptions import AzureError

    request = AzureUploadRequest.parse([], env)
    try:
        return upload(request.vhd_path, request.vhd_sha256, blob_client(env))
    except AzureError as exc:  # say what Azure said, in one line, without a traceback
        raise FactoryError(f"Azure storage refused the upload of {request.blob_name}: {exc.message}") from None


def main() -> int:
    return run_step("azure upload", lambda: upload_from_env(dict(os.environ)))


if __name__ == "__main__":
    sys.exit(main())
