"""The package set: parsed, compared as dpkg compares versions, written as a valid CycloneDX SBOM."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest

from imagefactory import packages
from imagefactory.errors import FactoryError

VERSIONS = [
    "1.0",
    "1.0~rc1",
    "1.0.1",
    "1.0-1",
    "1.0-1+deb12u1",
    "1.0-1~bpo12+1",
    "1:0.9",
    "2.36-9+deb12u9",
    "2.36-9+deb12u10",
    "252.39-1~deb12u1",
    "1.0a",
    "1.0+dfsg",
    "10",
    "9",
]


def _dpkg_order(a: str, b: str) -> int:
    if subprocess.run(["dpkg", "--compare-versions", a, "lt", b], check=False).returncode == 0:
        return -1
    if subprocess.run(["dpkg", "--compare-versions", a, "eq", b], check=False).returncode == 0:
        return 0
    return 1


def test_versions_are_ordered_as_dpkg_orders_them() -> None:
    for a, b in itertools.permutations(VERSIONS, 2):
        assert packages.compare_versions(a, b) == _dpkg_order(a, b), (a, b)


def test_the_record_is_parsed_and_bad_lines_are_named() -> None:
    text = "zlib1g\t1:1.2.13.dfsg-1\tamd64\t" + "a" * 64 + "\nbash\t5.2.15-2+b7\tamd64\t-\n"
    parsed = packages.parse(text)
    assert [p.name for p in parsed] == ["bash", "zlib1g"]
    assert packages.to_tsv(parsed).splitlines()[0] == "bash\t5.2.15-2+b7\tamd64\t-"
    with pytest.raises(FactoryError, match=r"line 2: .*accepted: name, version, arch, sha256"):
        packages.parse("bash\t5.2\tamd64\t-\nbroken line\n", "packages.tsv")


def test_the_diff_lists_added_removed_upgraded_and_downgraded() -> None:
    old = packages.parse("a\t1.0\tamd64\t-\nb\t2.0\tamd64\t-\nc\t3.0-1\tall\t-\nd\t1:1\tamd64\t-\n")
    new = packages.parse("a\t1.0\tamd64\t-\nc\t3.0-1+deb12u1\tall\t-\nd\t2\tamd64\t-\ne\t5\tamd64\t-\n")
    changes = packages.diff(old, new)
    assert changes["added"] == [{"name": "e", "arch": "amd64", "version": "5"}]
    assert changes["removed"] == [{"name": "b", "arch": "amd64", "version": "2.0"}]
    assert changes["upgraded"] == [{"name": "c", "arch": "all", "from": "3.0-1", "to": "3.0-1+deb12u1"}]
    assert changes["downgraded"] == [{"name": "d", "arch": "amd64", "from": "1:1", "to": "2"}]
    lines = packages.format_diff(changes, "release-0.1.0", "release-0.2.0")
    assert lines[0] == "packages from release-0.1.0 to release-0.2.0: 1 added, 1 removed, 1 upgraded, 1 downgraded"
    assert "~ c 3.0-1 -> 3.0-1+deb12u1 (upgraded)" in lines


def test_the_sbom_is_valid_cyclonedx_and_the_same_for_the_same_set() -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    record = packages.parse("bash\t5.2.15-2+b7\tamd64\t" + "b" * 64 + "\nbase-files\t12.4+deb12u8\tamd64\t-\n")
    first = packages.sbom(record, "debian-12", "release-0.1.0", 1_700_000_000)
    assert first == packages.sbom(list(reversed(record)), "debian-12", "release-0.1.0", 1_700_000_000)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(first) is None
    document = json.loads(first)
    assert document["metadata"]["timestamp"].startswith("2023-11-14T22:13:20")
    bash = next(c for c in document["components"] if c["name"] == "bash")
    assert bash["purl"] == "pkg:deb/debian/bash@5.2.15-2%2Bb7?arch=amd64"
    assert bash["hashes"] == [{"alg": "SHA-256", "content": "b" * 64}]
    assert (
        document["serialNumber"] != json.loads(packages.sbom(record, "debian-12", "release-0.2.0", 1))["serialNumber"]
    )


def test_make_diff_reads_two_published_versions_and_names_a_missing_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for version, text in (("release-0.1.0", "a\t1.0\tamd64\t-\n"), ("release-0.2.0", "a\t1.1\tamd64\t-\n")):
        (tmp_path / version).mkdir()
        (tmp_path / version / packages.TSV_NAME).write_text(text)
    (tmp_path / "dev-old").mkdir()
    assert packages.main(["diff", "--registry", str(tmp_path), "--from", "release-0.1.0", "--to", "release-0.2.0"]) == 0
    assert "~ a 1.0 -> 1.1 (upgraded)" in capsys.readouterr().out
    assert packages.main(["diff", "--registry", str(tmp_path), "--from", "dev-old", "--to", "release-0.2.0"]) == 1
    assert "dev-old recorded no package set" in capsys.readouterr().err
    assert packages.main(["diff", "--registry", str(tmp_path), "--from", "nope", "--to", "release-0.2.0"]) == 1
    assert "nope is not published" in capsys.readouterr().err
