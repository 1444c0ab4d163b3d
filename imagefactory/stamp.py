"""The release stamp every image carries in /etc/release (written by the Ansible `release` role):
KEY=value lines such as IMAGE_VERSION, IMAGE_COMMIT, UPSTREAM_DIGEST, UPSTREAM_SOURCE, BUILD_TIME."""

from __future__ import annotations


def parse_stamp(text: str) -> dict[str, str]:
    """KEY=value lines of /etc/release or /etc/os-release (comments and blank lines ignored)."""
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"')
    return values
