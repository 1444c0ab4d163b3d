#!/usr/bin/env bash
# Validate the Packer templates with the example variables. Packer checks that the SSH key
# file exists, so a throwaway key is made for the check and deleted afterwards.
set -euo pipefail
cd "$(dirname "$0")/../packer"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ssh-keygen -q -t ed25519 -N "" -C validate -f "$tmp/key"
packer validate -var-file=example.pkrvars.hcl -var "ssh_private_key_file=$tmp/key" \
  -var "ssh_public_key=$(cat "$tmp/key.pub")" "$@" .
