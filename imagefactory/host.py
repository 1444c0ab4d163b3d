"""Host facts: what a step needs to know about this machine and this checkout.

None of it may decide an image's content, so none of it is ever a resource input: a step reads
the cache folder from the environment it inherits, paths relative to the project root it runs
in (the command provider's working directory), and the accelerator, build timeout, boot check
and top stage from the host file the program writes on every run. Moving the checkout, switching
the accelerator or the boot check, or
raising the timeout therefore never updates, rebuilds or blocks a published release.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from imagefactory.files import write_atomic

HOST_FILE = Path(".state") / "host.json"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# Secure Boot enforced, with Microsoft's keys enrolled (Debian's ovmf package), as Azure Trusted
# Launch and AWS UEFI Secure Boot run a machine.
OVMF_SECBOOT_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
OVMF_MS_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
FIRMWARES = ("bios", "uefi", "secureboot")
"""SeaBIOS (QEMU's default), OVMF, and OVMF with Secure Boot enforced."""


@dataclass(frozen=True)
class HostFacts:
    accelerator: str = "auto"
    """auto (probe KVM with a real boot, else TCG), kvm or tcg."""
    build_timeout_minutes: int = 60
    boot_check: str = ""
    """none, qcow2 or all (imagefactory.bootcheck); "" is all for a release, qcow2 for a dev build."""
    top_stage: str = ""
    """The stage users launch: the only one whose formats the boot check boots (a parent stage is
    booted by its child's build)."""


def cache_dir() -> Path:
    """The per-user cache: tool builds, downloads, the stage-0 image, the accelerator probe."""
    if os.environ.get("IMAGEFACTORY_CACHE"):
        return Path(os.environ["IMAGEFACTORY_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imagefactory"


def write(root: Path, facts: HostFacts) -> None:
    """Record this run's host facts for the steps (atomically; unchanged content is not rewritten)."""
    path = root / HOST_FILE
    text = json.dumps(asdict(facts), sort_keys=True) + "\n"
    if path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)


def read(root: Path | None = None) -> HostFacts:
    """The host facts of the project the step runs in (defaults when the program wrote none)."""
    path = (root or Path.cwd()) / HOST_FILE
    if not path.is_file():
        return HostFacts()
    known = HostFacts.__dataclass_fields__
    return HostFacts(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})


def portable(path: Path | str, root: Path | None = None) -> str:
    """`path` relative to the project root when it lies inside it, else absolute: what a step
    reports, so that the state does not change when the checkout moves."""
    absolute = Path(os.path.abspath(path))
    base = Path(os.path.abspath(root or Path.cwd()))
    return absolute.relative_to(base).as_posix() if absolute.is_relative_to(base) else str(absolute)
