"""OVF: a well-formed, deterministic descriptor whose references match the disk."""

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory import ovf

NS = {"ovf": ovf.OVF_NS, "rasd": ovf.RASD_NS}


def test_the_descriptor_declares_bios_firmware_which_the_hybrid_disk_boots() -> None:
    text = ovf.descriptor("debian-12", "release-0.1.0", "d.vmdk", 10, 100)
    config = ET.fromstring(text).find(".//{http://www.vmware.com/schema/ovf}Config")
    assert config is not None
    assert config.get("{http://www.vmware.com/schema/ovf}key") == "firmware"
    assert config.get("{http://www.vmware.com/schema/ovf}value") == "bios"


def test_the_descriptor_references_the_disk_with_its_sizes() -> None:
    text = ovf.descriptor("debian-12", "release-0.1.0", "debian-12-release-0.1.0.vmdk", 12345, 3 * 1024**3)
    root = ET.fromstring(text)
    file_ref = root.find("ovf:References/ovf:File", NS)
    assert file_ref is not None
    assert file_ref.get(f"{{{ovf.OVF_NS}}}href") == "debian-12-release-0.1.0.vmdk"
    assert file_ref.get(f"{{{ovf.OVF_NS}}}size") == "12345"
    disk = root.find("ovf:DiskSection/ovf:Disk", NS)
    assert disk is not None
    assert disk.get(f"{{{ovf.OVF_NS}}}capacity") == str(3 * 1024**3)
    assert disk.get(f"{{{ovf.OVF_NS}}}format", "").endswith("#streamOptimized")
    types = [i.findtext("rasd:ResourceType", namespaces=NS) for i in root.iter(f"{{{ovf.OVF_NS}}}Item")]
    assert types == ["3", "4", "5", "17", "10"]


@given(st.text(min_size=1, max_size=40))
def test_any_name_yields_well_formed_xml(name: str) -> None:
    clean = "".join(c for c in name if c.isprintable())
    if not clean:
        return
    ET.fromstring(ovf.descriptor(clean, "dev-abc1234", "d.vmdk", 1, 1))


def test_the_descriptor_is_deterministic() -> None:
    args = ("n", "release-1.0.0", "n.vmdk", 10, 20)
    assert ovf.descriptor(*args) == ovf.descriptor(*args)


def test_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ovf.descriptor("n", "v", "n.vmdk", 0, 20)


def test_the_manifest_has_one_sha256_line_per_file_in_order() -> None:
    assert ovf.manifest({"a.ovf": "1" * 64, "a.vmdk": "2" * 64}) == (
        f"SHA256(a.ovf)= {'1' * 64}\nSHA256(a.vmdk)= {'2' * 64}\n"
    )


def test_a_sha1_manifest_is_what_ovf_1_readers_take_and_it_reads_back() -> None:
    text = ovf.manifest({"a.ovf": "1" * 40, "a.vmdk": "2" * 40}, "sha1")
    assert text == f"SHA1(a.ovf)= {'1' * 40}\nSHA1(a.vmdk)= {'2' * 40}\n"
    assert ovf.read_manifest(text) == {"a.ovf": ("sha1", "1" * 40), "a.vmdk": ("sha1", "2" * 40)}
    with pytest.raises(ValueError, match="line 1 is 'MD5"):
        ovf.read_manifest("MD5(a.ovf)= 00\n")
