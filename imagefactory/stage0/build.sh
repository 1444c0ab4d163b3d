#!/usr/bin/env bash
# Stage 0: build a small Debian 12 cloud image from Debian's packages, for machines that
# cannot download Debian's genericcloud image. The pipeline then treats its output exactly
# like a downloaded upstream: an image plus a SHA256SUMS file that is verified before boot.
#
#   build.sh <out-dir>
#
# Besides the image, <out-dir> gets packages.tsv (the tree's package set: name, version,
# architecture, SHA-256) and packages-export.tar (the index entries and the .deb files used), which
# the caller keeps by digest (imagefactory.aptrepo). With STAGE0_REPOSITORY set to a local flat
# repository of a recorded package set, the tree is built from that repository alone (a rebuild,
# with no network); the image's own apt sources are Debian's either way.
#
# The disk is made with no mount and no loop device: mmdebstrap builds the tree, `mke2fs -d`
# makes the root filesystem, mtools fills a FAT EFI system partition with Debian's signed shim
# and GRUB, grub-mkimage makes GRUB's BIOS core image, and sfdisk + dd assemble a GPT disk that
# boots under BIOS and UEFI (Secure Boot too). Every UUID, GUID and date is fixed, so two runs of the
# same recipe and package set give the same filesystem metadata.
set -euo pipefail

out=${1:?usage: build.sh <out-dir>}
SUITE=${STAGE0_SUITE:-bookworm}
MIRROR=${STAGE0_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${STAGE0_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DISK_MIB=${STAGE0_DISK_MIB:-2048}
ESP_MIB=64
# A fixed epoch: this recipe's release date. Dates inside the image do not follow the clock.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600}
export LC_ALL=C
NAME=debian-12-stage0-amd64
ROOT_UUID=6f2d7c3e-5a41-4f0b-9d7e-1c2b3a4d5e6f
ROOT_PARTUUID=8a1c4e2f-0b3d-4c5e-8f6a-7b9c0d1e2f3a
ESP_PARTUUID=2e4f6a8c-1b3d-4e5f-9a7b-c8d9e0f1a2b3
DISK_GUID=5c7e9a1b-3d5f-4a6c-8e0b-2d4f6a8c0e1f
ESP_VOLID=51A6E0F1
BIOS_PARTUUID=9d3b5f71-2c4e-4a8d-b6f0-1e3a5c7d9f20
BIOS_START=34     # the BIOS boot partition fills the gap before the ESP (sectors 34 to 2047)
BIOS_SECTORS=2014
HASH_SEED=0b5f8d2e-7c41-4a93-a6d0-3e9f1b2c4d5a
PACKAGES=systemd-sysv,udev,dbus,linux-image-cloud-amd64,initramfs-tools,openssh-server,cloud-init,\
cloud-guest-utils,e2fsprogs,sudo,python3,python3-apt,locales,ifupdown,isc-dhcp-client,netbase,iproute2,\
ca-certificates,apt-transport-https,grub-pc-bin,grub-efi-amd64-signed,shim-signed

REPOSITORY=${STAGE0_REPOSITORY:-}
RECORD=${STAGE0_RECORD_SCRIPT:?STAGE0_RECORD_SCRIPT names the script that records the package set}

work=$(mktemp -d "${TMPDIR:-/var/tmp}/stage0.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$work/tree
mkdir -p "$out"

# The image's apt sources are Debian's cloud images' sources: the release, its stable updates and
# its security updates. The tree is built from all three, so it starts with the security fixes,
# and a machine launched from it keeps receiving them.
sources=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main")
if [ -n "$REPOSITORY" ]; then
  # Only the recorded packages, from the local repository; any other address goes to a closed port.
  echo "stage0: building a $SUITE tree with mmdebstrap from the recorded packages at $REPOSITORY" >&2
  apt_sources=("deb [trusted=yes] $REPOSITORY ./")
  host=${REPOSITORY#*://}; host=${host%%[:/]*}
  apt_options=(--aptopt='Acquire::http::Proxy "http://127.0.0.1:9/"' --aptopt="Acquire::http::Proxy::$host \"DIRECT\"")
else
  echo "stage0: building a $SUITE tree with mmdebstrap from $MIRROR and $SECURITY_MIRROR" >&2
  apt_sources=("${sources[@]}")
  apt_options=()
fi
# The essential packages' .deb files stay until the clean-up, so the package set is kept whole.
mmdebstrap --variant=minbase --mode=root --include="$PACKAGES" --skip=essential/unlink "${apt_options[@]}" \
  --customize-hook='chroot "$1" /bin/sh -c "echo debian >/etc/hostname"' \
  --customize-hook="printf 'UUID=%s / ext4 defaults,errors=remount-ro 0 1\n' $ROOT_UUID >\"\$1/etc/fstab\"" \
  --customize-hook='mkdir -p "$1/etc/cloud/cloud.cfg.d" && printf "datasource_list: [NoCloud, None]\nmanage_etc_hosts: true\n" >"$1/etc/cloud/cloud.cfg.d/90-stage0-datasource.cfg"' \
  --customize-hook='sed -i "s/^# *en_US.UTF-8/en_US.UTF-8/" "$1/etc/locale.gen" && chroot "$1" locale-gen >/dev/null' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_* "$1/var/lib/dbus/machine-id" && : >"$1/etc/machine-id"' \
  --customize-hook="printf '%s\n' $(printf '%q ' "${sources[@]}") >\"\$1/etc/apt/sources.list\"" \
  --customize-hook='rm -f "$1/etc/apt/apt.conf.d/99mmdebstrap"' \
  --customize-hook="PYTHONDONTWRITEBYTECODE=1 chroot \"\$1\" /usr/bin/python3 - /tmp/packages.tsv /tmp/packages-export.tar <$(printf '%q' "$RECORD") >&2 && mv \"\$1/tmp/packages.tsv\" \"\$1/tmp/packages-export.tar\" $(printf '%q' "$work")/" \
  --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log "$1"/tmp/*' \
  "$SUITE" "$tree" "${apt_sources[@]}" >&2

kernel=$(cd "$tree/boot" && ls vmlinuz-* | sort -V | tail -1)
[ -n "$kernel" ] || { echo "stage0: no kernel was installed in the tree" >&2; exit 1; }

# Clamp every mtime so the filesystem does not carry the time of this build.
find "$tree" -xdev -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"

root_mib=$((DISK_MIB - ESP_MIB - 2))
echo "stage0: making the root filesystem (${root_mib} MiB) and the EFI system partition" >&2
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mke2fs -q -t ext4 -L root -U "$ROOT_UUID" -E "hash_seed=$HASH_SEED" \
  -d "$tree" "$work/root.img" "${root_mib}M"
# mke2fs -d gives every inode the clock's change time: set each inode's atime and ctime to the
# recipe's epoch, so two runs with the same package set give the same bytes (a rebuild does).
(cd "$tree" && find . -xdev) | sed 's|^\.||; s|^$|/|' | while IFS= read -r path; do
  case $path in *'"'*) echo "stage0: cannot fix the times of $path (a quote in its name)" >&2; exit 1 ;; esac
  printf 'sif "%s" atime @%s\nsif "%s" ctime @%s\n' "$path" "$SOURCE_DATE_EPOCH" "$path" "$SOURCE_DATE_EPOCH"
done >"$work/times.debugfs"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$work/times.debugfs" "$work/root.img" >/dev/null 2>"$work/times.log" \
  || { cat "$work/times.log" >&2; exit 1; }
# debugfs exits 0 when a request fails: anything but its banner on stderr is a failure.
if grep -v '^debugfs [0-9]' "$work/times.log" >&2; then echo "stage0: debugfs could not set every inode's times" >&2; exit 1; fi

# GRUB boots the kernel through the /vmlinuz and /initrd.img links that Debian's linux-base keeps
# pointing at the newest kernel, so a machine whose kernel apt upgrades (and autoremoves) boots.
[ -L "$tree/vmlinuz" ] && [ -L "$tree/initrd.img" ] || { echo "stage0: no /vmlinuz and /initrd.img links" >&2; exit 1; }
cat >"$work/grub.cfg" <<CFG
set timeout=0
search --no-floppy --fs-uuid --set=root $ROOT_UUID
linux /vmlinuz root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200
initrd /initrd.img
boot
CFG
# One disk, both firmwares, with Debian's own boot chain (taken from the tree's packages).
# UEFI: Debian's signed shim at the removable-media path, so no NVRAM entry is needed, and Debian's
# signed GRUB beside it, which reads grub.cfg from its own folder: it boots with Secure Boot
# enforced, and the kernel it loads is Debian's signed kernel.
# FAT records times too: mkfs.vfat --invariant fixes its own, mtools dates new folders at
# SOURCE_DATE_EPOCH, and mcopy -m keeps each file's (clamped) modification time.
touch -d "@$SOURCE_DATE_EPOCH" "$work/grub.cfg"
mkfs.vfat --invariant -C -F 32 -n EFI -i "$ESP_VOLID" "$work/esp.img" $((ESP_MIB * 1024)) >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -m -i "$work/esp.img" "$tree/usr/lib/shim/shimx64.efi.signed" ::/EFI/BOOT/BOOTX64.EFI
mcopy -m -i "$work/esp.img" "$tree/usr/lib/shim/mmx64.efi.signed" ::/EFI/BOOT/mmx64.efi
mcopy -m -i "$work/esp.img" "$tree/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" ::/EFI/BOOT/grubx64.efi
mcopy -m -i "$work/esp.img" "$work/grub.cfg" ::/EFI/BOOT/grub.cfg
# BIOS: GRUB's i386-pc core image, with the same configuration built in, fills the BIOS boot
# partition; GRUB's boot sector in the protective MBR's code area loads it.
grub-mkimage -O i386-pc -d "$tree/usr/lib/grub/i386-pc" -p /boot/grub -c "$work/grub.cfg" \
  -o "$work/core.img" biosdisk part_gpt ext2 search search_fs_uuid linux
[ "$(stat -c %s "$work/core.img")" -le $((BIOS_SECTORS * 512)) ] || { echo "stage0: GRUB's core image is too large" >&2; exit 1; }

disk=$work/$NAME.raw
truncate -s "${DISK_MIB}M" "$disk"
sfdisk -q --no-reread --no-tell-kernel "$disk" <<PT
label: gpt
label-id: $DISK_GUID
unit: sectors
first-lba: $BIOS_START
start=2048, size=$((ESP_MIB * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$ESP_PARTUUID, name="esp"
start=$(((ESP_MIB + 1) * 2048)), size=$((root_mib * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$ROOT_PARTUUID, name="root"
start=$BIOS_START, size=$BIOS_SECTORS, type=21686148-6449-6E6F-744E-656564454649, uuid=$BIOS_PARTUUID, name="bios"
PT
dd if="$work/esp.img" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=1M seek=$((ESP_MIB + 1)) conv=notrunc,sparse status=none
# What grub-install does for a BIOS boot partition, without a block device: the boot sector learns
# where the core image starts, the core image's first sector where the rest of it lies.
python3 - "$disk" "$work/core.img" "$tree/usr/lib/grub/i386-pc/boot.img" "$BIOS_START" <<'PY'
import struct
import sys

disk, core_path, boot_path, start = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
boot = bytearray(open(boot_path, "rb").read())
core = bytearray(open(core_path, "rb").read())
sectors = -(-len(core) // 512)
core += bytes(sectors * 512 - len(core))
struct.pack_into("<Q", boot, 0x5C, start)  # the core image's first sector
boot[0x66:0x68] = b"\x90\x90"  # a hard disk: a bogus drive number from the BIOS is taken as 0x80, as grub-install sets
struct.pack_into("<QHH", core, 0x200 - 12, start + 1, sectors - 1, 0x820)  # the rest of the core image
with open(disk, "r+b") as out:
    out.write(boot[:440])  # the boot code only: the disk signature and the protective MBR's entry stay
    out.seek(start * 512)
    out.write(core)
PY

echo "stage0: writing $out/$NAME.qcow2 and its SHA256SUMS" >&2
qemu-img convert -q -c -O qcow2 "$disk" "$work/$NAME.qcow2"
(cd "$work" && sha256sum "$NAME.qcow2" >SHA256SUMS)
mv -f "$work/$NAME.qcow2" "$out/$NAME.qcow2.tmp"
mv -f "$out/$NAME.qcow2.tmp" "$out/$NAME.qcow2"
mv -f "$work/packages.tsv" "$work/packages-export.tar" "$out/"
mv -f "$work/SHA256SUMS" "$out/SHA256SUMS"
echo "$out/$NAME.qcow2"
