"""The registry in S3-compatible object storage (AWS S3, MinIO, Ceph RGW, SeaweedFS): what a team,
its builders and its hypervisors share.

    s3://bucket/prefix?endpoint=http://127.0.0.1:8333&region=us-east-1&pathStyle=true
        &objectLock=governance|compliance&retentionDays=30

Layout under s3://bucket/prefix/:
    blobs/sha256/<hex>              every published file, named by its content: never rewritten
    versions/<version>.json         one version: its manifest, its files (name -> sha256, bytes) and
                                    its SHA256SUMS. Written last, with If-None-Match: *. A version is
                                    visible only when this object exists, so an interrupted publish
                                    leaves nothing visible and the next run finishes it.
    revocations/<version>.json      a revoked version: when and why (make revoke, carried by the next
                                    `pulumi up`); lookups and downloads refuse it
    ledger/<version>/<content>.json append-only: every content ever published under a version name
                                    (created with If-None-Match, never deleted). A release is refused
                                    when the ledger holds another content for it, even after its
                                    version object was removed.

No object is shared between versions, so two builders publishing different versions never touch the
same key; two builders publishing the same version race on one conditional write: one wins, the
other reads the winner's version and verifies it (or stops, naming both commits, when the contents
differ). Every upload is checked by the store (a SHA-256 per request, or per part of a multipart
upload, then the composite read back with HEAD); a store that keeps no checksums is read back.
With `objectLock`, every object of a release is written under S3 Object Lock until now +
`retentionDays`, and a bucket without Object Lock is refused before anything is built.

Credentials come from the usual AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, an
instance role): never from the stack.

    python -m imagefactory.s3registry push   --registry URL --folder <published version folder>
    python -m imagefactory.s3registry list   --registry URL
    python -m imagefactory.s3registry lookup --registry URL --version V [--format F] [--presign SECONDS]
    python -m imagefactory.s3registry fetch  --registry URL --version V --format F [--dest DIR]
    python -m imagefactory.s3registry check  --registry URL
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from imagefactory.checksums import CHUNK, file_digest, format_sums, parse_sums
from imagefactory.errors import FactoryError, run_step
from imagefactory.steps import PushRequest

PART = 64 * 1024 * 1024  # multipart above this size, in parts of this size
LOCK_MODES = {"none": "", "governance": "GOVERNANCE", "compliance": "COMPLIANCE"}
QUERY_KEYS = ("endpoint", "region", "pathStyle", "objectLock", "retentionDays")
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
PRESIGN_MAX = 7 * 24 * 3600  # SigV4's longest


@dataclass(frozen=True)
class Store:
    bucket: str
    prefix: str
    endpoint: str = ""
    region: str = "us-east-1"
    path_style: bool = False
    lock_mode: str = ""  # "", GOVERNANCE or COMPLIANCE
    retention_days: int = 0

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def where(self) -> str:
        """How errors name the store: the bucket and the endpoint it was reached at."""
        return f"{self.url} at {self.endpoint or 'the AWS S3 endpoint of ' + self.region}"

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)


def is_s3(registry: str) -> bool:
    return registry.startswith("s3://")


def parse(url: str, setting: str = "imagefactory:registry") -> Store:
    """An `s3://bucket/prefix?…` registry; a clear error names the setting and what is accepted."""
    accepted = (
        "accepted: s3://<bucket>[/<prefix>] with optional ?endpoint=<http(s)://host:port>&region=<region>"
        "&pathStyle=true&objectLock=none|governance|compliance&retentionDays=<days>"
    )
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise FactoryError(f"{setting} {url!r} is not an S3 registry; {accepted}")
    if "@" in parts.netloc:  # never echo what looks like a credential
        raise FactoryError(
            f"{setting} holds credentials before its bucket; give them as AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), never in the stack; {accepted}"
        )
    if not BUCKET.fullmatch(parts.netloc):
        raise FactoryError(
            f"{setting} {url!r}: bucket {parts.netloc!r} is not an S3 bucket name (3 to 63 lower-case letters, "
            f"digits, dots and dashes); {accepted}"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        raise FactoryError(f"{setting} {url!r} has unknown option(s) {', '.join(unknown)}; {accepted}")

    def one(name: str, default: str) -> str:
        values = query.get(name, [default])
        if len(values) != 1:
            raise FactoryError(f"{setting} {url!r} gives {name} more than once; {accepted}")
        return values[0]

    endpoint = one("endpoint", "")
    if endpoint and (urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).hostname):
        raise FactoryError(f"{setting} {url!r}: endpoint {endpoint!r} is not an http(s) URL; {accepted}")
    region = one("region", "us-east-1") or "us-east-1"
    if not re.fullmatch(r"[a-z0-9-]{2,40}", region):
        raise FactoryError(f"{setting} {url!r}: region {region!r} is not a region name (e.g. eu-west-1); {accepted}")
    path_style = one("pathStyle", "false").lower()
    if path_style not in ("true", "false"):
        raise FactoryError(f"{setting} {url!r}: pathStyle {path_style!r} is not true or false; {accepted}")
    lock = one("objectLock", "none").lower()
    if lock not in LOCK_MODES:
        raise FactoryError(f"{setting} {url!r}: objectLock {lock!r} is not none, governance or compliance")
    days_text = one("retentionDays", "0")
    if lock == "none" and "retentionDays" in query:
        raise FactoryError(f"{setting} {url!r}: retentionDays is only for objectLock=governance|compliance")
    if not days_text.isdigit() or (lock != "none" and int(days_text) < 1):
        raise FactoryError(
            f"{setting} {url!r}: retentionDays {days_text!r} is not accepted; with objectLock give a whole "
            "number of days ≥ 1"
        )
    return Store(
        bucket=parts.netloc,
        prefix=parts.path.strip("/"),
        endpoint=endpoint.rstrip("/"),
        region=region,
        path_style=path_style == "true",
        lock_mode=LOCK_MODES[lock],
        retention_days=int(days_text),
    )


# --- the store's client, and its errors as one line ------------------------------------------


def client(store: Store) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",  # pre-signed URLs too: AWS refuses the older signature
        s3={"addressing_style": "path" if store.path_style else "auto"},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=120,
        request_checksum_calculation="when_required",  # we send our own SHA-256s
        response_checksum_validation="when_required",
    )
    try:
        # A new session reads the credentials now: boto3's default session keeps the first it
        # found, which would send one store's keys to another.
        session = boto3.session.Session()
        return session.client("s3", endpoint_url=store.endpoint or None, region_name=store.region, config=config)
    except Exception as exc:  # a bad endpoint or region: one line, never a traceback
        raise explain(store, exc, "connecting") from None


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) or str(
        response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "InvalidToken"}


def explain(store: Store, exc: BaseException, doing: str) -> FactoryError:
    """One line that names the store, what was being done and what to check."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return FactoryError(
            f"no credentials for the registry {store.where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE)"
        )
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in CREDENTIAL_CODES:
            return FactoryError(
                f"the registry {store.where} refused the credentials while {doing} ({code}): check "
                "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's policy"
            )
        if code in ("NoSuchBucket", "404") and doing.startswith("checking"):
            return FactoryError(f"the registry's bucket {store.bucket!r} does not exist at {store.where}")
        return FactoryError(f"the registry {store.where} answered {code} while {doing}: {_line(exc)}")
    if isinstance(exc, BotoCoreError):
        return FactoryError(f"the registry {store.where} cannot be reached while {doing}: {_line(exc)}")
    return FactoryError(f"the registry {store.where} failed while {doing}: {type(exc).__name__}: {_line(exc)}")


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _call(store: Store, doing: str, function: Any, **kwargs: Any) -> Any:
    try:
        return function(**kwargs)
    except FactoryError:
        raise
    except Exception as exc:  # botocore's errors, and what a broken endpoint makes of it (a redirect loop)
        raise explain(store, exc, doing) from None


def _missing(exc: BaseException) -> bool:
    return error_code(exc) in ("NoSuchKey", "404", "NotFound")


def _get_json(s3: Any, store: Store, key: str) -> tuple[dict, str] | None:
    """(document, ETag) of a JSON object, or None when there is none."""
    try:
        answer = s3.get_object(Bucket=store.bucket, Key=key)
        body = answer["Body"].read()
    except Exception as exc:
        if _missing(exc):
            return None
        raise explain(store, exc, f"reading {key}") from None
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise FactoryError(f"{store.url}/{key} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise FactoryError(f"{store.url}/{key} is not a JSON object")
    return document, answer["ETag"]


def _checked(store: Store, key: str, document: dict) -> dict:
    """A version object with the shape this module writes, its file names plain names."""
    try:
        names = list(document["files"])
        manifest = document["manifest"]
        valid = (
            isinstance(document["version"], str)
            and isinstance(document["content"], str)
            and isinstance(document["sums"], str)
            and all(isinstance(document["files"][n]["sha256"], str) for n in names)
            and all(Path(item["file"]).name == item["file"] for item in manifest["formats"].values())
            and isinstance(manifest["commit"], str)
        )
    except (KeyError, TypeError, AttributeError):
        valid = False
    if not valid or any(Path(n).name != n for n in names):
        raise FactoryError(f"{store.url}/{key} is not a version object of this registry (damaged or foreign)")
    return document


def check(store: Store, s3: Any | None = None) -> None:
    """Reach the bucket with these credentials; refuse a bucket without Object Lock when it is asked
    for. Run before anything is built."""
    s3 = s3 or client(store)
    _call(store, "checking the bucket", s3.head_bucket, Bucket=store.bucket)
    _probe_conditional_writes(store, s3)
    if not store.lock_mode:
        return
    from botocore.exceptions import ClientError

    try:
        answer = s3.get_object_lock_configuration(Bucket=store.bucket)
        enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
    except ClientError as exc:
        if error_code(exc) in CREDENTIAL_CODES:
            raise explain(store, exc, "checking the bucket's Object Lock") from None
        enabled = False
    except Exception as exc:
        raise explain(store, exc, "checking the bucket's Object Lock") from None
    if not enabled:
        raise FactoryError(
            f"the registry asks for Object Lock ({store.lock_mode.lower()}), but bucket {store.bucket!r} at "
            f"{store.where} has none: create the bucket with Object Lock enabled, or set objectLock=none "
            "(the registry then refuses overwrites itself)"
        )


def _probe_conditional_writes(store: Store, s3: Any) -> None:
    """Immutability and the race between two builders rest on `If-None-Match: *`: write one probe
    key twice under it, and refuse a store that takes the second write. The probe is removed."""
    import uuid

    from botocore.exceptions import ClientError

    key = store.key(".probe", uuid.uuid4().hex)
    written = []
    try:
        first = _call(
            store, "probing conditional writes", s3.put_object, Bucket=store.bucket, Key=key, Body=b"1", IfNoneMatch="*"
        )
        written.append(first.get("VersionId"))
        try:
            second = s3.put_object(Bucket=store.bucket, Key=key, Body=b"2", IfNoneMatch="*")
            written.append(second.get("VersionId"))
        except ClientError as exc:
            if error_code(exc) in ("PreconditionFailed", "412"):
                return
            raise explain(store, exc, "probing conditional writes") from None
        raise FactoryError(
            f"the registry {store.where} wrote one key twice under If-None-Match: *, so it does not honour "
            "conditional writes, on which the registry's immutability and its race between builders rest; "
            "accepted: AWS S3 or a store that honours If-None-Match (SeaweedFS, MinIO, Ceph RGW of 2024 or later)"
        )
    finally:
        for version_id in written:
            with contextlib.suppress(Exception):
                s3.delete_object(Bucket=store.bucket, Key=key, **({"VersionId": version_id} if version_id else {}))


# --- publishing ---------------------------------------------------------------------------------


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _retain_until(store: Store) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=store.retention_days)


def _lock_args(store: Store, release: bool) -> dict[str, Any]:
    if not (store.lock_mode and release):
        return {}
    return {"ObjectLockMode": store.lock_mode, "ObjectLockRetainUntilDate": _retain_until(store)}


def _parts(path: Path) -> list[tuple[int, int, str]]:
    """(offset, length, sha256 hex) of each multipart part; read once per file (the version's
    checksums and its upload both need them)."""
    stat = path.stat()
    return _parts_of(str(path), stat.st_size, stat.st_mtime_ns, PART)


@functools.lru_cache(maxsize=32)
def _parts_of(path: str, size: int, mtime_ns: int, part: int) -> list[tuple[int, int, str]]:
    parts = []
    with open(path, "rb") as handle:
        for offset in range(0, size, part):
            digest, left = hashlib.sha256(), min(part, size - offset)
            while left:
                chunk = handle.read(min(CHUNK, left))
                digest.update(chunk)
                left -= len(chunk)
            parts.append((offset, min(part, size - offset), digest.hexdigest()))
    return parts


def composite(part_digests: list[str]) -> str:
    """S3's checksum of a multipart object: the SHA-256 of the parts' SHA-256s, then -<parts>."""
    joined = b"".join(bytes.fromhex(d) for d in part_digests)
    return f"{base64.b64encode(hashlib.sha256(joined).digest()).decode()}-{len(part_digests)}"


def store_checksum(path: Path, sha256: str) -> str:
    """The ChecksumSHA256 the store reports for this file uploaded by `upload`."""
    if path.stat().st_size <= PART:
        return _b64(sha256)
    return composite([digest for _, _, digest in _parts(path)])


def _read_back(s3: Any, store: Store, key: str) -> str:
    digest = hashlib.sha256()
    try:
        answer = s3.get_object(Bucket=store.bucket, Key=key)
        for chunk in answer["Body"].iter_chunks(CHUNK):
            digest.update(chunk)
    except Exception as exc:
        raise explain(store, exc, f"reading back {key}") from None
    return digest.hexdigest()


def _holds(s3: Any, store: Store, key: str, sha256: str, checksum: str, size: int) -> bool | None:
    """Whether the store holds exactly these bytes under `key`: None when there is no such object;
    checked by the store's checksum, or read back when it keeps none."""
    try:
        head = s3.head_object(Bucket=store.bucket, Key=key, ChecksumMode="ENABLED")
    except Exception as exc:
        if _missing(exc):
            return None
        raise explain(store, exc, f"checking {key}") from None
    if head["ContentLength"] != size:
        return False
    reported = head.get("ChecksumSHA256")
    if reported is not None:
        return reported.split("-")[0] == checksum.split("-")[0]
    return _read_back(s3, store, key) == sha256


def _keep(s3: Any, store: Store, key: str) -> None:
    """A release's object found already there (a blob is shared by content, e.g. with a development
    build): put it under the release's Object Lock too, or extend its retention."""
    try:
        current = s3.get_object_retention(Bucket=store.bucket, Key=key).get("Retention", {})
    except Exception as exc:
        if error_code(exc) not in ("NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError", "404"):
            raise explain(store, exc, f"reading the retention of {key}") from None
        current = {}
    until = _retain_until(store)
    if (
        current.get("Mode") == store.lock_mode
        and current.get("RetainUntilDate")
        and current["RetainUntilDate"] >= until
    ):
        return
    _call(
        store,
        f"locking {key}",
        s3.put_object_retention,
        Bucket=store.bucket,
        Key=key,
        Retention={"Mode": store.lock_mode, "RetainUntilDate": until},
    )


def upload(s3: Any, store: Store, path: Path, sha256: str, release: bool, checksum: str = "") -> str:
    """Put one file as its content-addressed blob (never over another object: If-None-Match).
    Returns how it was checked: 'present' (the store already held these bytes), 'store' (the store
    checked our SHA-256s) or 'read back'."""
    key = store.key("blobs", "sha256", sha256)
    size, checksum = path.stat().st_size, checksum or store_checksum(path, sha256)
    held = _holds(s3, store, key, sha256, checksum, size)
    if held is False:
        raise FactoryError(
            f"{store.url}/{key} holds other bytes than {path.name} (sha256:{sha256}), and a published object is "
            "never overwritten: delete that object by hand (it is damaged), then publish again"
        )
    if held:
        if store.lock_mode and release:
            _keep(s3, store, key)
        return "present"
    extra = {"Metadata": {"sha256": sha256, "name": path.name}, **_lock_args(store, release)}
    doing = f"uploading {path.name}"
    try:
        if size <= PART:
            with open(path, "rb") as body:
                answer = s3.put_object(
                    Bucket=store.bucket, Key=key, Body=body, ChecksumSHA256=checksum, IfNoneMatch="*", **extra
                )
        else:
            answer = _multipart(s3, store, path, key, extra, doing)
    except FactoryError:
        raise
    except Exception as exc:
        if error_code(exc) in ("PreconditionFailed", "412"):  # another builder put it first: check it
            if _holds(s3, store, key, sha256, checksum, size):
                return "present"
            raise FactoryError(f"{store.url}/{key} was written by another builder with other bytes") from None
        raise explain(store, exc, doing) from None
    stored = answer.get("ChecksumSHA256")
    if stored is not None and stored.split("-")[0] == checksum.split("-")[0]:
        return "store"
    if stored is None and _read_back(s3, store, key) == sha256:
        return "read back"
    with contextlib.suppress(Exception):  # never leave wrong bytes under a content's name
        s3.delete_object(Bucket=store.bucket, Key=key)
    raise FactoryError(f"{path.name} was stored at {store.url}/{key} with other bytes; nothing was published")


def _multipart(s3: Any, store: Store, path: Path, key: str, extra: dict, doing: str) -> Any:
    """A multipart upload whose every part carries its SHA-256; aborted when anything fails."""
    parts = _parts(path)
    started = s3.create_multipart_upload(Bucket=store.bucket, Key=key, ChecksumAlgorithm="SHA256", **extra)
    upload_id, done = started["UploadId"], []
    try:
        with open(path, "rb") as handle:
            for number, (offset, length, digest) in enumerate(parts, 1):
                handle.seek(offset)
                part = s3.upload_part(
                    Bucket=store.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=handle.read(length),
                    ChecksumSHA256=_b64(digest),
                )
                done.append({"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": _b64(digest)})
        return s3.complete_multipart_upload(
            Bucket=store.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}, IfNoneMatch="*"
        )
    except BaseException:
        # The store may be what failed: an upload never completed stays invisible either way.
        with contextlib.suppress(Exception):
            s3.abort_multipart_upload(Bucket=store.bucket, Key=key, UploadId=upload_id)
        raise


def _content_id(manifest: dict) -> str:
    from imagefactory.registry import content_key

    return hashlib.sha256(json.dumps(content_key(manifest), sort_keys=True).encode()).hexdigest()


def _ledger(s3: Any, store: Store, version: str) -> dict[str, str]:
    """content id -> commit of every content published under this version name."""
    prefix = store.key("ledger", version) + "/"
    answer = _call(store, "reading the ledger", s3.list_objects_v2, Bucket=store.bucket, Prefix=prefix)
    found = {}
    for item in answer.get("Contents", []):
        record = _get_json(s3, store, item["Key"])
        found[item["Key"][len(prefix) :].removesuffix(".json")] = str((record or ({}, ""))[0].get("commit", "?"))
    return found


def _put_json(s3: Any, store: Store, key: str, document: dict, release: bool, **condition: str) -> bool:
    """Write a JSON object under a condition (IfNoneMatch='*' or IfMatch=etag); False when the
    condition failed (another builder was first). A write still in flight elsewhere (409) is retried."""
    body = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    digest = hashlib.sha256(body).hexdigest()
    for attempt in range(6):
        try:
            s3.put_object(
                Bucket=store.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                ChecksumSHA256=_b64(digest),
                **_lock_args(store, release),
                **condition,
            )
            return True
        except Exception as exc:
            code = error_code(exc)
            if code in ("PreconditionFailed", "412"):
                return False
            if code in ("ConditionalRequestConflict", "409") and attempt < 5:
                time.sleep(0.2 * 2**attempt)
                continue
            raise explain(store, exc, f"writing {key}") from None
    return False


def version_document(folder: Path) -> tuple[dict, dict[str, Path]]:
    """The version object for a published local version folder (checked first), and its files."""
    from imagefactory.registry import verify_folder

    manifest = verify_folder(folder)
    sums = {name: digest for name, (_, digest) in parse_sums((folder / "SHA256SUMS").read_text()).items()}
    paths = {p.name: p for p in sorted(folder.iterdir()) if p.is_file()}
    files = {}
    for name, path in paths.items():
        digest = sums.get(name) or file_digest(path)
        files[name] = {"sha256": digest, "bytes": path.stat().st_size, "checksum": store_checksum(path, digest)}
    document = {
        "version": manifest["version"],
        "manifest": manifest,
        "files": files,
        "sums": format_sums(sums),
        "content": _content_id(manifest),
    }
    return document, paths


def upload_order(names: list[str]) -> list[str]:
    """The images and other files first, then SHA256SUMS, then the manifest (the version object,
    which makes the version visible, comes after all of them)."""
    last = {"SHA256SUMS": 1, "manifest.json": 2}
    return sorted(names, key=lambda name: (last.get(name, 0), name))


def push(store: Store, folder: Path, log: Any = None, revocation: str | None = None) -> dict:
    """Publish one locally published version folder to the store (and its revocation, once it is
    revoked); return its remote entry."""
    published = _publish(store, folder, log)
    if revocation:
        record = json.loads(revocation)
        s3 = client(store)
        key = store.key("revocations", f"{published['version']}.json")
        if _put_json(s3, store, key, {"version": published["version"], **record}, False, IfNoneMatch="*"):
            print(f"s3registry: {published['version']} is revoked in {store.url}: {record['reason']}", file=sys.stderr)
    return published


def revoked(store: Store, version: str, s3: Any = None) -> dict | None:
    found = _get_json(s3 or client(store), store, store.key("revocations", f"{version}.json"))
    return found[0] if found else None


def _check_not_revoked(store: Store, version: str, s3: Any, allow: bool) -> None:
    record = revoked(store, version, s3)
    if record and not allow:
        raise FactoryError(
            f"{version} is revoked since {record.get('at', '?')}: {record.get('reason', '?')}; it must never be "
            "launched again (--allow-revoked reads it anyway)"
        )


def _publish(store: Store, folder: Path, log: Any = None) -> dict:
    from imagefactory.registry import is_dev

    log = log or (lambda message: print(f"s3registry: {message}", file=sys.stderr))
    document, paths = version_document(folder)
    version, content = document["version"], document["content"]
    release = not is_dev(version)
    s3 = client(store)
    check(store, s3)
    key = store.key("versions", f"{version}.json")
    commit = document["manifest"]["commit"][:12]
    if release:
        others = {c: other for c, other in _ledger(s3, store, version).items() if c != content}
        if others:
            raise FactoryError(
                f"{version} was published to {store.url} before from commit {next(iter(others.values()))[:12]} with "
                f"other content than this build (commit {commit}); the ledger {store.key('ledger', version)}/ keeps "
                "it; releases are immutable: tag a new version"
            )
    found = _get_json(s3, store, key)
    if found:
        _checked(store, key, found[0])
    if found and found[0].get("content") == content:
        _verify_remote(s3, store, found[0])
        _record(s3, store, found[0], release)
        log(f"{version} is already published in {store.url} with this content; verified")
        return entry(store, found[0])
    if found and release:
        raise FactoryError(
            f"{version} is already published in {store.url} from commit {found[0]['manifest']['commit'][:12]}, "
            f"and this build (commit {commit}) has other content; releases are immutable: tag a new version"
        )
    for name in upload_order(list(paths)):
        item = document["files"][name]
        how = upload(s3, store, paths[name], item["sha256"], release, item["checksum"])
        log(f"{name}: {how if how != 'store' else 'uploaded, SHA-256 checked by the store'}")
    document["published_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"IfMatch": found[1]} if found else {"IfNoneMatch": "*"}
    if not _put_json(s3, store, key, document, release, **condition):
        winner = _get_json(s3, store, key)
        if winner is None or winner[0].get("content") != content:
            other = _checked(store, key, winner[0])["manifest"]["commit"][:12] if winner else "unknown"
            raise FactoryError(
                f"another builder published {version} to {store.url} first (commit {other}) with other content "
                f"than this build (commit {commit}); nothing of this build was published"
            )
        _verify_remote(s3, store, winner[0])
        _record(s3, store, winner[0], release)
        log(f"another builder published {version} first, with the same content; verified")
        return entry(store, winner[0])
    _record(s3, store, document, release)
    log(f"published {version} in {store.url}")
    return entry(store, document)


def _record(s3: Any, store: Store, document: dict, release: bool) -> None:
    """The ledger's entry for a published version (once: a new key, never rewritten). Written after
    the version object, so only content that was published is recorded."""
    version, content = document["version"], document["content"]
    _put_json(
        s3,
        store,
        store.key("ledger", version, f"{content}.json"),
        {"version": version, "content": content, "commit": document["manifest"]["commit"]},
        release,
        IfNoneMatch="*",
    )


def _verify_remote(s3: Any, store: Store, document: dict) -> None:
    """Every file of a remote version is there with its bytes: its size, and the checksum the store
    keeps for it (or its bytes read back when the store keeps none)."""
    for name, item in sorted(document["files"].items()):
        key = store.key("blobs", "sha256", item["sha256"])
        held = _holds(s3, store, key, item["sha256"], item.get("checksum", _b64(item["sha256"])), item["bytes"])
        if held is None:
            raise FactoryError(f"{document['version']} in {store.url} lists {name}, but its object {key} is missing")
        if not held:
            raise FactoryError(
                f"{store.url}/{key} ({name} of {document['version']}) does not hold its published bytes "
                f"(sha256:{item['sha256']}, {item['bytes']} bytes)"
            )


# --- lookups from anywhere --------------------------------------------------------------------


def web_url(store: Store, key: str) -> str:
    """The object at the store's endpoint over HTTP(S): the scheme is the endpoint's (AWS: https)."""
    base = store.endpoint or f"https://s3.{store.region}.amazonaws.com"
    return f"{base}/{store.bucket}/{key}"


def entry(store: Store, document: dict, s3: Any = None, presign: int = 0) -> dict:
    """A version's remote entry: per format its object URL (and a pre-signed HTTPS URL)."""
    manifest, formats = document["manifest"], {}
    for fmt, item in sorted(manifest["formats"].items()):
        key = store.key("blobs", "sha256", item["sha256"])
        found = {
            "file": item["file"],
            "sha256": item["sha256"],
            "bytes": item["bytes"],
            "url": f"s3://{store.bucket}/{key}",
            "web_url": web_url(store, key),
        }
        if presign:
            found["presigned"] = presigned_url(s3, store, key, presign)
        formats[fmt] = found
    return {
        "version": document["version"],
        "registry": store.url,
        "commit": manifest["commit"],
        "published_at": document.get("published_at", ""),
        "formats": formats,
    }


def presigned_url(s3: Any, store: Store, key: str, seconds: int) -> str:
    """An HTTPS GET of one object that needs no credentials for `seconds` (signed locally)."""
    return s3.generate_presigned_url("get_object", Params={"Bucket": store.bucket, "Key": key}, ExpiresIn=seconds)


def presigned(store: Store, shared: dict, seconds: int, now: dt.datetime | None = None) -> dict:
    """`shared` (an entry) with a pre-signed HTTPS URL per format, living `seconds`, and when it
    expires. Signing is local: no request reaches the store."""
    if not 1 <= seconds <= PRESIGN_MAX:
        raise FactoryError(f"a pre-signed URL lives 1 to {PRESIGN_MAX} seconds (7 days); {seconds} was asked for")
    s3 = client(store)
    expires = ((now or dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    formats = {}
    for fmt, item in shared["formats"].items():
        key = store.key("blobs", "sha256", item["sha256"])
        formats[fmt] = {**item, "presigned": presigned_url(s3, store, key, seconds), "presigned_expires": expires}
    return {**shared, "formats": formats}


def versions(store: Store, s3: Any = None) -> list[str]:
    s3 = s3 or client(store)
    prefix = store.key("versions") + "/"
    names, token = [], None
    while True:
        kwargs = {"Bucket": store.bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
        answer = _call(store, "listing the versions", s3.list_objects_v2, **kwargs)
        names += [item["Key"][len(prefix) :].removesuffix(".json") for item in answer.get("Contents", [])]
        if not answer.get("IsTruncated"):
            return sorted(names)
        token = answer["NextContinuationToken"]


def document_of(store: Store, version: str, s3: Any = None) -> dict:
    s3 = s3 or client(store)
    key = store.key("versions", f"{version}.json")
    found = _get_json(s3, store, key)
    if found is None:
        available = ", ".join(versions(store, s3)) or "none"
        raise FactoryError(f"version {version} is not published in {store.url}; published versions: {available}")
    return _checked(store, key, found[0])


def lookup(store: Store, version: str, fmt: str | None = None, presign: int = 0, allow_revoked: bool = False) -> dict:
    if not 0 <= presign <= PRESIGN_MAX:
        raise FactoryError(
            f"--presign {presign} is not accepted: seconds from 1 to {PRESIGN_MAX} (7 days), or 0 for none"
        )
    s3 = client(store)
    document = _launchable(store, version, fmt, s3, allow_revoked)
    _verify_remote(s3, store, document)
    return entry(store, document, s3, presign)


def _launchable(store: Store, version: str, fmt: str | None, s3: Any, allow_revoked: bool) -> dict:
    """The version object of a published, unrevoked version that has `fmt` (when given)."""
    document = document_of(store, version, s3)
    _check_not_revoked(store, version, s3, allow_revoked)
    formats = document["manifest"]["formats"]
    if fmt is not None and fmt not in formats:
        raise FactoryError(f"{version} has no {fmt} image; it has: {', '.join(sorted(formats))}")
    return document


def fetch(store: Store, version: str, fmt: str, dest: Path, allow_revoked: bool = False) -> Path:
    """Download one format of a version into dest, checked against its SHA-256 on the way; written
    under a temporary name and renamed, so a failed download leaves nothing."""
    s3 = client(store)
    document = _launchable(store, version, fmt, s3, allow_revoked)
    item = document["manifest"]["formats"][fmt]
    sums = parse_sums(document["sums"])
    if sums.get(item["file"], ("", ""))[1] != item["sha256"]:
        raise FactoryError(f"{version}: SHA256SUMS and the manifest disagree on {item['file']}")
    key = store.key("blobs", "sha256", item["sha256"])
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / item["file"]
    digest = hashlib.sha256()
    handle, partial = tempfile.mkstemp(dir=dest, prefix=f".{item['file']}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                answer = s3.get_object(Bucket=store.bucket, Key=key)
                for chunk in answer["Body"].iter_chunks(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            except Exception as exc:  # the store went away mid-download: one line, nothing kept
                raise explain(store, exc, f"downloading {item['file']}") from None
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != item["sha256"]:
            raise FactoryError(
                f"{store.url}/{key} ({item['file']}): expected sha256:{item['sha256']}, received "
                f"sha256:{digest.hexdigest()}; nothing was kept"
            )
        os.chmod(partial, 0o444)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The image registry in S3-compatible object storage.")
    sub = parser.add_subparsers(dest="command", required=True)
    PushRequest.parser(sub.add_parser("push"))  # the pipeline's step: one contract (imagefactory.steps)
    for name in ("list", "lookup", "fetch", "check"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--registry", required=True, help="s3://bucket/prefix?endpoint=…")
        if name in ("lookup", "fetch"):
            cmd.add_argument("--version", required=True)
            cmd.add_argument("--format", required=name == "fetch")
            cmd.add_argument("--allow-revoked", action="store_true", help="read a revoked version anyway")
    sub.choices["lookup"].add_argument("--presign", type=int, default=0, help="seconds a pre-signed URL lives")
    sub.choices["fetch"].add_argument("--dest", type=Path, default=Path("."))
    args = parser.parse_args(argv)

    def work() -> object:
        store = parse(args.registry, "--registry")
        if args.command == "push":
            request = PushRequest.from_namespace(args, os.environ)
            return push(store, request.folder, revocation=request.revocation)
        if args.command == "check":
            check(store)
            print(f"{store.where}: reachable{', Object Lock enabled' if store.lock_mode else ''}", file=sys.stderr)
            return None
        if args.command == "list":
            print("\n".join(versions(store)))
            return None
        if args.command == "fetch":
            path = fetch(store, args.version, args.format, args.dest, args.allow_revoked)
            print(path.absolute())
            return None
        found = lookup(store, args.version, args.format, args.presign, args.allow_revoked)
        print(json.dumps(found["formats"][args.format] if args.format else found, indent=2))
        return None

    return run_step("s3registry", work)


if __name__ == "__main__":
    sys.exit(main())
