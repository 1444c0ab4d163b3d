#!/usr/bin/env bash
# Install everything the project needs, at pinned versions, from package registries only.
#
#   tools/setup.sh            install what is missing (idempotent; seconds when warm)
#   tools/setup.sh --check    print the installed versions
#
# Layout (see README "What setup installs"):
#   Debian packages          apt-get (root, or sudo) when a command is missing
#   $IMAGEFACTORY_CACHE      per-user cache, default ${XDG_CACHE_HOME:-~/.cache}/imagefactory
#     tools/<tool>-<version>/  Go-built binaries, keyed by version
#     pulumi-home/             PULUMI_HOME: the command provider plugin
#     packer-plugins/          PACKER_PLUGIN_PATH: qemu and ansible plugins
#   .venv/                   the project's Python virtualenv (requirements*.txt)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/versions.env
. "$ROOT/tools/versions.env"
# shellcheck source=tools/env.sh
. "$ROOT/tools/env.sh"

log() { printf '==> %s\n' "$*" >&2; }
fail() {
  # fail <tool> <version> <command...>: name what could not be installed and how.
  local tool=$1 ver=$2
  shift 2
  printf 'setup: could not install %s %s\n  command that failed: %s\n' "$tool" "$ver" "$*" >&2
  exit 1
}
run_or_fail() {
  local tool=$1 ver=$2
  shift 2
  "$@" || fail "$tool" "$ver" "$*"
}

# --- Debian packages --------------------------------------------------------------
# command -> package. Only what the build, the tests and the seal check call.
DEB_COMMANDS=(
  "qemu-img:qemu-utils"
  "qemu-system-x86_64:qemu-system-x86"
  "mmdebstrap:mmdebstrap"
  "sfdisk:fdisk"
  "mkfs.vfat:dosfstools"
  "mcopy:mtools"
  "grub-mkstandalone:grub-efi-amd64-bin"
  "xorriso:xorriso"
  "mke2fs:e2fsprogs"
  "busybox:busybox-static"
  "cpio:cpio"
  "zstd:zstd"
  "git:git"
  "curl:curl"
  "node:nodejs"
  "npm:npm"
  "ssh-keygen:openssh-client"
  "make:make"
)
DEB_FILES=("/usr/share/OVMF/OVMF_CODE_4M.fd:ovmf" "/usr/lib/grub/x86_64-efi/linux.mod:grub-efi-amd64-bin")

install_debian_packages() {
  local missing=() entry
  for entry in "${DEB_COMMANDS[@]}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "${entry%%:*}" >/dev/null 2>&1 \
      || missing+=("${entry#*:}")
  done
  for entry in "${DEB_FILES[@]}"; do
    [ -e "${entry%%:*}" ] || missing+=("${entry#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing Debian packages: ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "Debian packages" "${missing[*]}" "sudo (not available; install them as root)"
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  run_or_fail "Debian packages" "${missing[*]}" "${sudo[@]}" apt-get update -q
  run_or_fail "Debian packages" "${missing[*]}" "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# --- Go-built tools ---------------------------------------------------------------
go_build() {
  # go_build <tool> <version> <out> <package> <ldflags> <module@version>... [-- replaces...]
  local tool=$1 ver=$2
  shift 2
  command -v go >/dev/null || fail "$tool" "$ver" "go (Go ≥ 1.26 is needed to build $tool from the module proxy)"
  log "building $tool $ver from the Go module proxy (cached afterwards)"
  run_or_fail "$tool" "$ver" "$ROOT/tools/build-go-tool.sh" "$@"
}

install_pulumi() {
  local dir="$IMAGEFACTORY_TOOLS/pulumi-$PULUMI_VERSION/bin"
  local sdkver="v$PULUMI_VERSION"
  if [ ! -x "$dir/pulumi" ]; then
    go_build pulumi "$PULUMI_VERSION" "$dir/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
      "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$sdkver" \
      "github.com/pulumi/pulumi/pkg/v3@$sdkver" "github.com/pulumi/pulumi/sdk/v3@$sdkver" \
      -- "github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e"
  fi
  if [ ! -x "$dir/pulumi-language-python" ]; then
    # The language host's own module is not served by the proxy at any release
    # commit; the newest sdk/v3 release that still carries it inside the SDK module
    # is PULUMI_LANGUAGE_HOST_SDK. It drives the exec script of PULUMI_VERSION.
    go_build pulumi-language-python "$PULUMI_LANGUAGE_HOST_SDK" "$dir/pulumi-language-python" \
      github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python \
      "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_LANGUAGE_HOST_SDK" \
      "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_LANGUAGE_HOST_SDK"
  fi
  if [ ! -e "$dir/pulumi-language-python-exec" ]; then
    # The host runs this script, looked up next to its own binary; it ships in sdk/v3.
    local sdkdir
    sdkdir=$(cd "$ROOT/tools" && GOFLAGS=-mod=mod go mod download -json "github.com/pulumi/pulumi/sdk/v3@$sdkver" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') \
      || fail pulumi-language-python-exec "$PULUMI_VERSION" "go mod download github.com/pulumi/pulumi/sdk/v3@$sdkver"
    install -m 0755 "$sdkdir/python/cmd/pulumi-language-python-exec" "$dir/pulumi-language-python-exec.tmp"
    mv -f "$dir/pulumi-language-python-exec.tmp" "$dir/pulumi-language-python-exec"
  fi
}

install_command_provider() {
  local plugin_dir="$PULUMI_HOME/plugins/resource-command-v$PULUMI_COMMAND_VERSION"
  local src="$ROOT/tools/command-provider"
  local stamp
  stamp=$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -c1-16)
  if [ -n "${PULUMI_COMMAND_PLUGIN:-}" ]; then
    stamp="upstream-$(sha256sum "$PULUMI_COMMAND_PLUGIN" | cut -c1-16)"
  fi
  [ -f "$plugin_dir/.imagefactory-stamp" ] && [ "$(cat "$plugin_dir/.imagefactory-stamp")" = "$stamp" ] && return 0
  local bin="$IMAGEFACTORY_TOOLS/command-provider-$stamp/pulumi-resource-command"
  if [ -n "${PULUMI_COMMAND_PLUGIN:-}" ]; then
    bin=$PULUMI_COMMAND_PLUGIN
  elif [ ! -x "$bin" ]; then
    log "building the local.Command provider plugin (tools/command-provider)"
    (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X main.version=$PULUMI_COMMAND_VERSION" -o "$bin.tmp" . && mv -f "$bin.tmp" "$bin") \
      || fail "command provider plugin" "$PULUMI_COMMAND_VERSION" "go build (in tools/command-provider)"
  fi
  rm -rf "$plugin_dir"
  run_or_fail "command provider plugin" "$PULUMI_COMMAND_VERSION" \
    pulumi plugin install resource command "$PULUMI_COMMAND_VERSION" --file "$bin"
  echo "$stamp" >"$plugin_dir/.imagefactory-stamp"
}

install_packer() {
  local dir="$IMAGEFACTORY_TOOLS/packer-$PACKER_VERSION/bin"
  local cty="github.com/zclconf/go-cty => github.com/nywilken/go-cty v1.13.3"
  if [ ! -x "$dir/packer" ]; then
    go_build packer "$PACKER_VERSION" "$dir/packer" github.com/hashicorp/packer \
      "-s -w -X github.com/hashicorp/packer/version.VersionPrerelease=" \
      "github.com/hashicorp/packer@v$PACKER_VERSION" -- "$cty"
  fi
  local name ver bin
  for spec in "qemu:$PACKER_QEMU_VERSION" "ansible:$PACKER_ANSIBLE_VERSION" \
    "amazon:$PACKER_AMAZON_VERSION" "azure:$PACKER_AZURE_VERSION"; do
    name=${spec%%:*}
    ver=${spec#*:}
    bin="$IMAGEFACTORY_TOOLS/packer-plugin-$name-$ver/packer-plugin-$name"
    if [ ! -x "$bin" ]; then
      go_build "packer-plugin-$name" "$ver" "$bin" "github.com/hashicorp/packer-plugin-$name" \
        "-s -w -X github.com/hashicorp/packer-plugin-$name/version.VersionPrerelease=" \
        "github.com/hashicorp/packer-plugin-$name@v$ver" -- "$cty"
    fi
    if ! compgen -G "$PACKER_PLUGIN_PATH/github.com/hashicorp/$name/packer-plugin-${name}_v${ver}_*" >/dev/null; then
      run_or_fail "packer-plugin-$name" "$ver" packer plugins install --path "$bin" "github.com/hashicorp/$name"
    fi
  done
}

install_venv() {
  local stamp
  stamp=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -c1-16)
  if [ -f "$VENV/.imagefactory-stamp" ] && [ "$(cat "$VENV/.imagefactory-stamp")" = "$stamp" ]; then
    return 0
  fi
  local python=${PYTHON:-python3}
  log "creating the project virtualenv in .venv (pinned requirements)"
  [ -x "$VENV/bin/python" ] || run_or_fail virtualenv "$($python --version 2>&1)" "$python" -m venv "$VENV"
  run_or_fail "Python requirements" "(requirements-dev.txt)" "$VENV/bin/pip" install -q --disable-pip-version-check \
    -r "$ROOT/requirements-dev.txt"
  echo "$stamp" >"$VENV/.imagefactory-stamp"
  link_project_into_venv
}

link_project_into_venv() {
  # Application stacks (examples/app) import components.launch_template from this checkout. A
  # virtualenv of another checkout (VENV from the environment: a test's clone) keeps its own link.
  [ "$(cd "$(dirname "$VENV")" 2>/dev/null && pwd)" = "$ROOT" ] || return 0
  local site
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  [ "$(cat "$site/imagefactory-project.pth" 2>/dev/null)" = "$ROOT" ] || echo "$ROOT" >"$site/imagefactory-project.pth"
}

ensure_passphrase() {
  # The local stack's secrets are encrypted with a per-user passphrase that never enters
  # the repository. An explicit PULUMI_CONFIG_PASSPHRASE(_FILE) always wins.
  [ -n "${PULUMI_CONFIG_PASSPHRASE:-}" ] && return 0
  [ -s "$PULUMI_CONFIG_PASSPHRASE_FILE" ] && return 0
  mkdir -p "$(dirname "$PULUMI_CONFIG_PASSPHRASE_FILE")"
  (umask 077 && head -c 32 /dev/urandom | base64 >"$PULUMI_CONFIG_PASSPHRASE_FILE.tmp" \
    && mv -f "$PULUMI_CONFIG_PASSPHRASE_FILE.tmp" "$PULUMI_CONFIG_PASSPHRASE_FILE")
  log "created a passphrase for the local stack's secrets at $PULUMI_CONFIG_PASSPHRASE_FILE (mode 0600)"
}

check() {
  pulumi version
  pulumi plugin ls
  packer version
  packer plugins installed
  ansible-playbook --version | head -1
  qemu-img --version | head -1
  "$WEED_BIN" version | head -1
}

# --- Azurite, the Azure Storage emulator the Azure upload is tested against -----------
install_azurite() {
  local dir=$IMAGEFACTORY_TOOLS/azurite-$AZURITE_VERSION
  [ -x "$dir/node_modules/.bin/azurite-blob" ] && return 0
  log "installing azurite $AZURITE_VERSION from the npm registry"
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  run_or_fail azurite "$AZURITE_VERSION" npm install --prefix "$dir.tmp" --no-audit --no-fund --loglevel=error \
    "azurite@$AZURITE_VERSION"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
}

# --- SeaweedFS, the S3-compatible server the shared registry is tested against -----------
install_seaweedfs() {
  local bin=$IMAGEFACTORY_TOOLS/seaweedfs-$SEAWEEDFS_VERSION/weed
  [ -x "$bin" ] && return 0
  go_build seaweedfs "$SEAWEEDFS_VERSION" "$bin" github.com/seaweedfs/seaweedfs/weed "-s -w" \
    "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" \
    -- "github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0"
}

# --- Independent installs, side by side ---------------------------------------------
lane_python() {
  install_venv
  link_project_into_venv
  install_azurite
}
lane_pulumi() {
  install_pulumi
  install_command_provider
}

in_parallel() {
  # in_parallel <function>...: run each in a background subshell, wait for all, and fail (after
  # every one has ended, so no build is left running) when any failed, naming it.
  local pids=() names=() failed=() i
  for i in "$@"; do
    ("$i") &
    pids+=("$!")
    names+=("$i")
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed+=("${names[$i]}")
  done
  if [ ${#failed[@]} -gt 0 ]; then
    printf 'setup: failed: %s (its error is printed above)\n' "${failed[*]}" >&2
    exit 1
  fi
}

main() {
  if [ "${1:-}" = "--check" ]; then
    check
    return
  fi
  mkdir -p "$IMAGEFACTORY_TOOLS" "$PULUMI_HOME" "$PACKER_PLUGIN_PATH"
  install_debian_packages
  # The Go builds spend much of their time downloading modules and linking, one core each: on a
  # cold machine the independent ones run side by side (about half the time on 2 cores).
  in_parallel lane_python lane_pulumi install_packer install_seaweedfs
  ensure_passphrase
  "$IMAGEFACTORY_ROOT/tools/stack.sh" git-filter
}

main "$@"
