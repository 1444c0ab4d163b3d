"""Checksums: a mismatch names the file, the expected and the actual digest."""

import hashlib
from pathlib import Path

import pytest

from imagefactory.checksums import format_sums, parse_expected, parse_sums, verify
from imagefactory.errors import FactoryError


def test_a_sums_file_maps_names_to_algorithm_and_digest() -> None:
    text = f"{'a' * 64}  disk.qcow2\n{'b' * 128} *other.raw\n# comment\n"
    assert parse_sums(text) == {"disk.qcow2": ("sha256", "a" * 64), "other.raw": ("sha512", "b" * 128)}


def test_a_malformed_sums_line_is_reported_with_its_number() -> None:
    with pytest.raises(FactoryError, match="line 2"):
        parse_sums(f"{'a' * 64}  ok\nnot a checksum line\n")


def test_written_sums_read_back_and_are_sorted() -> None:
    digests = {"b.raw": "1" * 64, "a.qcow2": "2" * 64}
    text = format_sums(digests)
    assert text.splitlines()[0].endswith("a.qcow2")
    assert {k: v[1] for k, v in parse_sums(text).items()} == digests


def test_a_mismatch_names_the_file_and_both_digests(tmp_path: Path) -> None:
    image = tmp_path / "upstream.qcow2"
    image.write_bytes(b"not the expected bytes")
    actual = hashlib.sha256(b"not the expected bytes").hexdigest()
    with pytest.raises(FactoryError) as caught:
        verify(image, "sha256", "0" * 64)
    message = str(caught.value)
    assert "upstream.qcow2" in message and "0" * 64 in message and actual in message


def test_a_matching_file_verifies(tmp_path: Path) -> None:
    image = tmp_path / "x"
    image.write_bytes(b"abc")
    assert verify(image, "sha256", hashlib.sha256(b"abc").hexdigest()) == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize("spec", ["md5:abc", "sha256:xyz", "sha256:" + "a" * 63, "deadbeef"])
def test_an_inline_checksum_must_be_sha256_or_sha512(spec: str) -> None:
    with pytest.raises(FactoryError, match="sha256:<64 hex digits>"):
        parse_expected(spec)
