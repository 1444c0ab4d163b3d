#!/usr/bin/env bash
# Build one Go command from the Go module proxy through a throwaway wrapper module.
# usage: build-go-tool.sh <out-binary> <package> <ldflags> <module@version>... [-- <replace-line>...]
# The wrapper pins every listed module, copies the given replace directives (the
# upstream go.mod files carry local replaces that `go install pkg@version` refuses),
# then `go build`s the package. Output is written to a temporary name and renamed.
set -euo pipefail
out=$1; pkg=$2; ldflags=$3; shift 3
requires=(); replaces=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; replaces=("$@"); break; fi
  requires+=("$1"); shift
done
work=$(mktemp -d "${TMPDIR:-/tmp}/gotool.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init wrapper >/dev/null 2>&1
for r in "${replaces[@]}"; do printf 'replace %s\n' "$r" >>go.mod; done
export GOFLAGS=-mod=mod
# Go's download chatter goes to a log; it is shown only when a step fails.
log="$work/build.log"
if ! go get "${requires[@]}" >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"
if ! CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp.$$" "$pkg" >>"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
mv -f "$out.tmp.$$" "$out"
