# Environment for every project command; sourced by the Makefile, tools/setup.sh and .ci/run.
# Safe to source more than once. Nothing here reaches the network.
IMAGEFACTORY_ROOT=${IMAGEFACTORY_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=tools/versions.env
. "$IMAGEFACTORY_ROOT/tools/versions.env"
export IMAGEFACTORY_ROOT
export IMAGEFACTORY_CACHE=${IMAGEFACTORY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagefactory}
export IMAGEFACTORY_TOOLS=$IMAGEFACTORY_CACHE/tools
export VENV=${VENV:-$IMAGEFACTORY_ROOT/.venv}
export PULUMI_HOME=${PULUMI_HOME:-$IMAGEFACTORY_CACHE/pulumi-home}
export PACKER_PLUGIN_PATH=${PACKER_PLUGIN_PATH:-$IMAGEFACTORY_CACHE/packer-plugins}
export PACKER_CACHE_DIR=${PACKER_CACHE_DIR:-$IMAGEFACTORY_CACHE/packer-cache}
export MYPY_CACHE_DIR=${MYPY_CACHE_DIR:-$IMAGEFACTORY_CACHE/mypy}   # the type check of the SDKs is done once per machine
export CHECKPOINT_DISABLE=1
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true
# The local stack lives in the project's state folder (ignored by git): no Pulumi Cloud login.
export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$IMAGEFACTORY_ROOT/.state/pulumi}
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ]; then
  export PULUMI_CONFIG_PASSPHRASE_FILE=${PULUMI_CONFIG_PASSPHRASE_FILE:-${XDG_CONFIG_HOME:-$HOME/.config}/imagefactory/local-stack.passphrase}
fi
# A stack file without its salt (git never stores it: tools/stack.sh) takes it from the state.
export PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER=true
export ANSIBLE_NOCOWS=1
case ":$PATH:" in
  *":$IMAGEFACTORY_TOOLS/pulumi-$PULUMI_VERSION/bin:"*) ;;
  *) PATH="$VENV/bin:$IMAGEFACTORY_TOOLS/pulumi-$PULUMI_VERSION/bin:$IMAGEFACTORY_TOOLS/packer-$PACKER_VERSION/bin:$PATH:/usr/sbin:/sbin" ;;
esac
export AZURITE_BIN=$IMAGEFACTORY_TOOLS/azurite-$AZURITE_VERSION/node_modules/.bin
export WEED_BIN=$IMAGEFACTORY_TOOLS/seaweedfs-$SEAWEEDFS_VERSION/weed
export PATH
