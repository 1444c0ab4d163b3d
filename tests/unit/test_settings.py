"""Stack settings: a bad value names the key and the values it accepts."""

import pytest

from imagefactory.errors import FactoryError
from imagefactory.settings import validate

GOOD = {"upstreamUrl": "https://example.invalid/img.qcow2", "upstreamChecksum": "sha256:" + "a" * 64}


def test_defaults_are_the_safe_local_stack() -> None:
    settings = validate(dict(GOOD))
    assert settings.target == "local"
    assert settings.formats == ("raw", "qcow2", "vhd", "vmdk", "ova")
    assert settings.upstream_fallback == "stage0"
    assert settings.disk_size_mib % 1 == 0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("target", "gcp", "imagefactory:target is 'gcp'; accepted values: local, aws, azure"),
        ("formats", ["qcow2", "iso"], "imagefactory:formats is 'iso'; accepted values: raw, qcow2"),
        ("formats", [], "imagefactory:formats must be a non-empty list"),
        ("upstreamFallback", "retry", "imagefactory:upstreamFallback is 'retry'"),
        ("accelerator", "hvf", "imagefactory:accelerator is 'hvf'; accepted values: auto, kvm, tcg"),
        ("diskSizeMiB", 100, "imagefactory:diskSizeMiB is 100; accepted: a whole number from 1024"),
        ("upstreamChecksum", "md5:abc", "imagefactory:upstreamChecksum is 'md5:abc'; accepted: sha256:"),
        ("releases", ["release-1.0"], "imagefactory:releases: version 'release-1.0' is not a release tag"),
        ("releases", ["release-1.0.0", "release-1.0.0"], "lists a tag twice"),
        ("imageName", "Debian 12", "imagefactory:imageName is 'Debian 12'"),
    ],
)
def test_bad_values_are_refused_by_key_with_what_is_accepted(key: str, value: object, message: str) -> None:
    with pytest.raises(FactoryError) as caught:
        validate({**GOOD, key: value})
    assert message in str(caught.value)
