"""Upload throughput to the shared registry's store, against an `aws s3 cp`-style upload.

    python -m bench.s3_upload [--mib 1024]      (writes bench/results/s3_upload.json)

In one run, on a real S3-compatible server on 127.0.0.1 (SeaweedFS, tests/s3server.py), one file of
random bytes is uploaded
- ours: `imagefactory.s3registry.upload`: 64 MiB parts, one after the other, each carrying its
  SHA-256 for the store to check, then the composite compared (the digests computed first, as
  `push` does from the version's files);
- boto3's managed transfer as `aws s3 cp` does it: 8 MiB parts, 10 threads, the SDK's default CRC;
and each time the bytes stored are read back and compared once, outside the timing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.stages import RESULTS, machine, report
from imagefactory import s3registry
from imagefactory.checksums import file_digest
from tests.s3server import S3Server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=1024, help="size of the file uploaded (MiB)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-s3-", dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)
        data = folder / "image.raw"
        with open(data, "wb") as out:
            for _ in range(args.mib):
                out.write(os.urandom(1024 * 1024))
        server = S3Server(folder / "server").start()
        try:
            os.environ.update(server.env)
            server.bucket("images")
            store = s3registry.parse(server.registry("images", "bench"))
            s3 = s3registry.client(store)

            start = time.monotonic()
            sha256 = file_digest(data)
            checksum = s3registry.store_checksum(data, sha256)
            digests = round(time.monotonic() - start, 2)
            start = time.monotonic()
            how = s3registry.upload(s3, store, data, sha256, release=True, checksum=checksum)
            ours = round(time.monotonic() - start, 2)
            assert how == "store", how

            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config

            # What `aws s3 cp` does: a plain client with boto3's defaults (a CRC32 of every part,
            # sent with it and checked by the store), 8 MiB parts, ten at a time.
            plain = boto3.session.Session().client(
                "s3",
                endpoint_url=store.endpoint,
                region_name=store.region,
                config=Config(s3={"addressing_style": "path"}),
            )
            start = time.monotonic()
            plain.upload_file(
                str(data),
                "images",
                "bench/aws-s3-cp-style",
                Config=TransferConfig(multipart_chunksize=8 << 20, max_concurrency=10),
            )
            theirs = round(time.monotonic() - start, 2)
            for key in (f"bench/blobs/sha256/{sha256}", "bench/aws-s3-cp-style"):
                digest = hashlib.sha256()
                for chunk in s3.get_object(Bucket="images", Key=key)["Body"].iter_chunks(4 << 20):
                    digest.update(chunk)
                assert digest.hexdigest() == sha256, f"{key} holds other bytes"
        finally:
            server.stop()
    mib = args.mib
    result = {
        "what": f"upload of {mib} MiB of random bytes to SeaweedFS on 127.0.0.1; seconds, MiB/s",
        "machine": machine(),
        "ours": {
            "digests_seconds": digests,
            "upload_seconds": ours,
            "mib_per_s": round(mib / ours, 1),
            "mib_per_s_with_digests": round(mib / (ours + digests), 1),
            "parts": f"{s3registry.PART >> 20} MiB, one at a time, each SHA-256 checked by the store",
        },
        "aws_s3_cp_style": {
            "upload_seconds": theirs,
            "mib_per_s": round(mib / theirs, 1),
            "parts": "8 MiB, 10 threads, boto3's default client (a CRC32 of each part, checked by the store)",
        },
        "ratio_ours_to_aws_s3_cp_style": round(ours / theirs, 2),
    }
    return report(RESULTS / "s3_upload.json", result)


if __name__ == "__main__":
    sys.exit(main())
