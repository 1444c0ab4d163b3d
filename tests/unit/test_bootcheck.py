"""The release gate's plan: which formats boot under which firmware, for each mode."""

import pytest

from imagefactory import bootcheck
from imagefactory.errors import FactoryError

ALL = ["raw", "qcow2", "vhd", "vmdk", "ova"]


def test_all_boots_every_format_under_the_firmwares_of_its_platforms() -> None:
    assert bootcheck.plan(ALL, "all") == [
        ("qcow2", "uefi"),
        ("vhd", "bios"),
        ("vhd", "secureboot"),
        ("vmdk", "bios"),
    ]


def test_qcow2_boots_one_and_none_boots_nothing() -> None:
    assert bootcheck.plan(ALL, "qcow2") == [("qcow2", "uefi")]
    assert bootcheck.plan(ALL, "none") == []
    assert bootcheck.plan(["raw", "vhd"], "qcow2") == [], "a stack without a QCOW2 has nothing to boot in this mode"


def test_only_the_formats_a_stack_makes_are_booted() -> None:
    assert bootcheck.plan(["raw", "vhd"], "all") == [("vhd", "bios"), ("vhd", "secureboot")]


def test_the_default_is_all_for_a_release_and_qcow2_for_a_development_build() -> None:
    assert (bootcheck.default_mode(True), bootcheck.default_mode(False)) == ("all", "qcow2")


def test_an_unknown_mode_is_refused_naming_the_accepted_ones() -> None:
    with pytest.raises(FactoryError, match=r"imagefactory:bootCheck is 'some'; accepted: none, qcow2, all"):
        bootcheck.plan(ALL, "some")
