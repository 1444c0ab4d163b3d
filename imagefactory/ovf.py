"""OVF 1.0 descriptor for the OVA: one VM, one streamOptimized VMDK, BIOS firmware.

The disk boots under BIOS and under UEFI (Secure Boot too), so the descriptor declares BIOS, what
VirtualBox's and older VMware hardware's default VMs use; switching the imported VM to EFI works.

The hardware is chosen for the drivers of Debian's cloud kernel: an IDE (PIIX4) disk
controller, which VirtualBox and VMware both offer, and a VMXNET3 network adapter (VMware).
VirtualBox imports the VM too; choose the virtio-net adapter there after import.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"
RASD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMW_NS = "http://www.vmware.com/schema/ovf"
STREAM_OPTIMIZED = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"


def _item(instance: int, resource_type: int, name: str, extra: str = "") -> str:
    return (
        "      <Item>\n"
        f"        <rasd:ElementName>{escape(name)}</rasd:ElementName>\n"
        f"        <rasd:InstanceID>{instance}</rasd:InstanceID>\n"
        f"        <rasd:ResourceType>{resource_type}</rasd:ResourceType>\n"
        f"{extra}"
        "      </Item>\n"
    )


def descriptor(
    name: str,
    version: str,
    vmdk_name: str,
    vmdk_bytes: int,
    capacity_bytes: int,
    cpus: int = 2,
    memory_mib: int = 2048,
) -> str:
    """The .ovf text. Deterministic: the same inputs give the same bytes."""
    if capacity_bytes <= 0 or vmdk_bytes <= 0:
        raise ValueError("disk sizes must be positive")
    cpu = _item(
        1,
        3,
        f"{cpus} virtual CPU(s)",
        f"        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>\n"
        f"        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>\n",
    )
    memory = _item(
        2,
        4,
        f"{memory_mib} MB of memory",
        "        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>\n"
        f"        <rasd:VirtualQuantity>{memory_mib}</rasd:VirtualQuantity>\n",
    )
    ide = _item(
        3,
        5,
        "ideController0",
        "        <rasd:Address>0</rasd:Address>\n        <rasd:ResourceSubType>PIIX4</rasd:ResourceSubType>\n",
    )
    disk = _item(
        4,
        17,
        "disk0",
        "        <rasd:AddressOnParent>0</rasd:AddressOnParent>\n"
        "        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>\n"
        "        <rasd:Parent>3</rasd:Parent>\n",
    )
    nic = _item(
        5,
        10,
        "ethernet0",
        "        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>\n"
        "        <rasd:Connection>NAT</rasd:Connection>\n"
        "        <rasd:ResourceSubType>VMXNET3</rasd:ResourceSubType>\n",
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="{OVF_NS}" xmlns:ovf="{OVF_NS}" '
        f'xmlns:rasd="{RASD_NS}" xmlns:vssd="{VSSD_NS}" xmlns:vmw="{VMW_NS}">\n'
        "  <References>\n"
        f'    <File ovf:href={quoteattr(vmdk_name)} ovf:id="file1" ovf:size="{vmdk_bytes}"/>\n'
        "  </References>\n"
        "  <DiskSection>\n"
        "    <Info>Virtual disk information</Info>\n"
        f'    <Disk ovf:capacity="{capacity_bytes}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" '
        f'ovf:fileRef="file1" ovf:format="{STREAM_OPTIMIZED}"/>\n'
        "  </DiskSection>\n"
        "  <NetworkSection>\n"
        "    <Info>The logical networks</Info>\n"
        '    <Network ovf:name="NAT">\n'
        "      <Description>The NAT network</Description>\n"
        "    </Network>\n"
        "  </NetworkSection>\n"
        f"  <VirtualSystem ovf:id={quoteattr(name)}>\n"
        "    <Info>A virtual machine built by imagefactory</Info>\n"
        f"    <Name>{escape(name)}</Name>\n"
        "    <AnnotationSection>\n"
        "      <Info>Image version</Info>\n"
        f"      <Annotation>{escape(version)}</Annotation>\n"
        "    </AnnotationSection>\n"
        '    <OperatingSystemSection ovf:id="96" vmw:osType="debian12_64Guest">\n'
        "      <Info>The guest operating system</Info>\n"
        "      <Description>Debian 12 (64-bit)</Description>\n"
        "    </OperatingSystemSection>\n"
        "    <VirtualHardwareSection>\n"
        "      <Info>Virtual hardware requirements</Info>\n"
        "      <System>\n"
        "        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>\n"
        "        <vssd:InstanceID>0</vssd:InstanceID>\n"
        f"        <vssd:VirtualSystemIdentifier>{escape(name)}</vssd:VirtualSystemIdentifier>\n"
        "        <vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>\n"
        "      </System>\n"
        f"{cpu}{memory}{ide}{disk}{nic}"
        '      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="bios"/>\n'
        "    </VirtualHardwareSection>\n"
        "  </VirtualSystem>\n"
        "</Envelope>\n"
    )


MANIFEST_DIGESTS = ("sha256", "sha1")
"""sha256: vSphere 6.5+ and VirtualBox; sha1: OVF 1.0 readers and older ESXi, which read any .mf as SHA-1."""


def manifest(digests: dict[str, str], algorithm: str = "sha256") -> str:
    """The OVA .mf file: one `SHA256(name)= hex` (or `SHA1(...)`) line per file, in OVA order."""
    if algorithm not in MANIFEST_DIGESTS:
        raise ValueError(f"manifest digest {algorithm!r} is not one of {', '.join(MANIFEST_DIGESTS)}")
    return "".join(f"{algorithm.upper()}({name})= {digest}\n" for name, digest in digests.items())


_MF_LINE = re.compile(r"^(?P<alg>SHA1|SHA256|SHA512)\((?P<name>[^)]+)\)\s*=\s*(?P<hex>[0-9a-fA-F]+)$")


def read_manifest(text: str) -> dict[str, tuple[str, str]]:
    """A .mf file: file name -> (hashlib algorithm, hex digest); a line of another shape is refused."""
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _MF_LINE.match(line.strip())
        if not match:
            raise ValueError(f"manifest line {number} is {line!r}; expected ALG(file)= hex")
        entries[match["name"]] = (match["alg"].lower(), match["hex"].lower())
    return entries
