#!/usr/bin/python3
"""Write the image's package set: name, version, architecture and the .deb's SHA-256.

Read from dpkg's status (what is installed) and apt's lists (the digest of each version as the
archive publishes it), before the seal removes the lists. One tab-separated line per package,
sorted, so the same package set always gives the same bytes. A version no list names (installed
from elsewhere) gets "-" as its digest.

With a second argument, it also writes a tar there for the build host's package cache
(imagefactory.aptrepo): packages.index, the index entry of every installed version (what a
rebuild must serve for the digests to be recorded again), and the .deb files apt downloaded.
"""

import glob
import io
import os
import sys
import tarfile

OUT = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/imagefactory/packages.tsv"
EXPORT = sys.argv[2] if len(sys.argv) > 2 else ""


def paragraphs(path):
    """Each paragraph's raw text, continuation lines included."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = []
        for line in handle:
            if line.strip():
                lines.append(line.rstrip("\n"))
            elif lines:
                yield "\n".join(lines) + "\n"
                lines = []
        if lines:
            yield "\n".join(lines) + "\n"


def stanzas(path):
    with open(path, encoding="utf-8", errors="replace") as handle:
        fields, key = {}, None
        for line in handle:
            line = line.rstrip("\n")
            if not line:
                if fields:
                    yield fields
                fields, key = {}, None
            elif line[0] in " \t":
                continue  # continuation lines: no field used here spans lines
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            yield fields


installed = {}
for item in stanzas("/var/lib/dpkg/status"):
    if item.get("Status", "").endswith(" installed"):
        installed[(item["Package"], item["Version"], item["Architecture"])] = "-"

entries = {}
for lists in sorted(glob.glob("/var/lib/apt/lists/*_Packages")):
    for item, text in zip(stanzas(lists), paragraphs(lists), strict=True):
        key = (item.get("Package"), item.get("Version"), item.get("Architecture"))
        if key in installed and installed[key] == "-" and item.get("SHA256"):
            installed[key] = item["SHA256"]
            entries[key] = text

os.makedirs(os.path.dirname(OUT), exist_ok=True)
tmp = OUT + ".tmp"
with open(tmp, "w", encoding="utf-8") as handle:
    for (name, version, arch), digest in sorted(installed.items()):
        handle.write(f"{name}\t{version}\t{arch}\t{digest}\n")
os.chmod(tmp, 0o644)
os.replace(tmp, OUT)
print(f"{len(installed)} packages, {sum(1 for d in installed.values() if d == '-')} without a digest")

if EXPORT:
    index = "\n".join(entries[key] for key in sorted(entries)).encode()
    part = EXPORT + ".part"
    with tarfile.open(part, "w") as archive:
        info = tarfile.TarInfo("packages.index")
        info.size = len(index)
        archive.addfile(info, io.BytesIO(index))
        for deb in sorted(glob.glob("/var/cache/apt/archives/*.deb")):
            archive.add(deb, arcname="debs/" + os.path.basename(deb))
    os.replace(part, EXPORT)
    print(f"exported {len(entries)} index entries and the downloaded .deb files to {EXPORT}")
