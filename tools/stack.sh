#!/usr/bin/env bash
# tools/stack.sh select <stack>: select a stack of the file backend, creating it on first use.
# tools/stack.sh git-filter: keep passphrase salts out of git (also done by `select`).
# tools/stack.sh registry <stack>: print the stack's imagefactory:registry ("" when unset).
#
# `pulumi stack init` writes the user's passphrase salt (`encryptionsalt:`) into the tracked
# stacks/Pulumi.<stack>.yaml, and Pulumi writes it back there whenever it is missing. The salt is
# only good for the passphrase of the user who made it: committed, it breaks every other
# user's first `make release` ("incorrect passphrase"). A git clean filter (.gitattributes) takes
# the line out of what git stores and compares, so the salt stays in the user's own copy only,
# and PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER (tools/env.sh) restores it from the stack's state
# if a checkout ever replaces the file.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

git_filter() {
  git -C "$here/.." rev-parse --git-dir >/dev/null 2>&1 || return 0
  git -C "$here/.." config filter.pulumi-stack-salt.clean "sed -e '/^encryptionsalt:/d'"
  git -C "$here/.." config filter.pulumi-stack-salt.smudge cat
}

case "${1:-}" in
  git-filter) git_filter; exit 0 ;;
  registry)
    python3 - "$here/../stacks/Pulumi.${2:?stack name}.yaml" <<'PY'
import sys, yaml
try:
    with open(sys.argv[1]) as handle:
        config = (yaml.safe_load(handle) or {}).get("config") or {}
except FileNotFoundError:
    config = {}
print(config.get("imagefactory:registry", ""))
PY
    exit 0 ;;
  select) ;;
  *) echo "usage: tools/stack.sh select <stack> | tools/stack.sh git-filter | tools/stack.sh registry <stack>" >&2; exit 2 ;;
esac
stack=${2:?stack name}
git_filter
case "${PULUMI_BACKEND_URL:-}" in
  file://*) mkdir -p "${PULUMI_BACKEND_URL#file://}" ;;
esac
if ! pulumi stack select "$stack" --non-interactive 2>/dev/null; then
  pulumi stack init "$stack" --secrets-provider passphrase --non-interactive >/dev/null
fi
# The salt changed the file's size, so `git status` lists it as modified although what git stores
# (the filtered content) is unchanged. When nothing else changed, `git add` refreshes git's record
# of the file and stages nothing; a file with the user's own edits is left alone.
file="stacks/Pulumi.$stack.yaml"
if git -C "$here/.." ls-files --error-unmatch -- "$file" >/dev/null 2>&1 && git -C "$here/.." diff --quiet -- "$file"; then
  git -C "$here/.." add -- "$file" 2>/dev/null || true  # only a refresh: never a reason to stop
fi
