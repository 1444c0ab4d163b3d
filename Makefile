# The two commands a user needs are `make release` and `make test` (see README).
# Each first runs tools/setup.sh, which installs only what is missing.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
ENV := source tools/env.sh
STACK ?= local

.PHONY: setup release test lint unit integration preview versions bench lookup fetch ancestry verify deprecate retire reproducible diff promote channels revoke rebuild

setup:
	@tools/setup.sh

## release: build, seal, check, convert and publish the images of the local stack (pulumi up).
release: setup
	@$(ENV); tools/stack.sh select $(STACK); \
	  python -m imagefactory.locks --backend "$${PULUMI_BACKEND_URL#file://}" --stack $(STACK); \
	  pulumi up --yes --skip-preview --non-interactive --suppress-outputs --stack $(STACK)  # the images are printed once, below
	@$(ENV); pulumi stack output --stack $(STACK) --json images

## preview: what a `make release` would change, as a reviewer reads it.
preview: setup
	@$(ENV); tools/stack.sh select $(STACK); pulumi preview --diff --non-interactive --stack $(STACK)

## test: lint everything, then run the unit and integration tests.
test: setup lint
	@$(ENV); cd tools/command-provider && go test ./...
	@$(ENV); tools/test.sh  # the image tests in two lanes side by side; every other test beside lane two

lint: setup
	@$(ENV); ruff check . && ruff format --check .
	@$(ENV); mypy  # files and options: pyproject.toml [tool.mypy]
	@$(ENV); packer fmt -check -recursive packer
	@$(ENV); tools/packer-validate.sh
	@$(ENV); cd ansible && ansible-lint --profile production --strict

unit: setup
	@$(ENV); python -m pytest -p no:cacheprovider tests/unit

integration: setup
	@$(ENV); python -m pytest -p no:cacheprovider tests/integration

versions: setup
	@tools/setup.sh --check

## lookup: print the file of one published version, e.g. make lookup VERSION=release-0.1.0 FORMAT=qcow2
## (REGISTRY=s3://… or the stack's imagefactory:registry: its objects' URLs; PRESIGN=<seconds> adds pre-signed ones)
lookup: setup
	@$(ENV); registry=$${REGISTRY:-$$(tools/stack.sh registry $(STACK))}; \
	  if [[ $$registry == s3://* ]]; then \
	    python -m imagefactory.s3registry lookup --registry "$$registry" --version "$(VERSION)" \
	      $(if $(FORMAT),--format "$(FORMAT)") $(if $(PRESIGN),--presign "$(PRESIGN)") $(if $(ALLOW_REVOKED),--allow-revoked); \
	  else \
	    python -m imagefactory.registry lookup --registry .state/registry --version "$(VERSION)" \
	      $(if $(FORMAT),--format "$(FORMAT)") $(if $(ALLOW_REVOKED),--allow-revoked); \
	  fi

## fetch: download one file of a version from the shared S3 registry and verify it, e.g. make fetch VERSION=release-0.1.0 FORMAT=qcow2 [DEST=dir, default .state/downloads]
fetch: setup
	@$(ENV); python -m imagefactory.s3registry fetch --registry "$${REGISTRY:-$$(tools/stack.sh registry $(STACK))}" \
	  --version "$(VERSION)" --format "$(FORMAT)" --dest "$(or $(DEST),.state/downloads)" \
	  $(if $(ALLOW_REVOKED),--allow-revoked)

## ancestry: print and verify the chain of custody of a version, e.g. make ancestry VERSION=release-0.1.0
ancestry: setup
	@$(ENV); python -m imagefactory.ancestry --registry .state/registry --version "$(VERSION)"

## diff: the packages added, removed and changed between two published versions, e.g. make diff FROM=release-0.1.0 TO=release-0.2.0
diff: setup
	@$(ENV); python -m imagefactory.packages diff --registry .state/registry --from "$(FROM)" --to "$(TO)"

## verify: check published files against SHA256SUMS and their manifests, e.g. make verify VERSION=release-0.1.0 (all when none)
verify: setup
	@$(ENV); python -m imagefactory.registry verify --registry .state/registry $(if $(VERSION),--version "$(VERSION)")

## deprecate: announce that a version will be retired (it stays published and launchable).
deprecate: setup
	@$(ENV); python -m imagefactory.registry deprecate --registry .state/registry --version "$(VERSION)"

## retire: the explicit lifecycle step that deletes a deprecated version from the registry.
retire: setup
	@$(ENV); python -m imagefactory.registry retire --registry .state/registry --version "$(VERSION)"

## promote: point a channel at a published version, e.g. make promote CHANNEL=stable VERSION=release-0.2.0 (DEV=1: a dev channel)
promote: setup
	@$(ENV); python -m imagefactory.channels --registry .state/registry promote --channel "$(CHANNEL)" \
	  --version "$(VERSION)" $(if $(DEV),--dev)

## channels: list the channels, the version each points at, and their history.
channels: setup
	@$(ENV); python -m imagefactory.channels --registry .state/registry list

## revoke: never launch a version again (nor what was built on it), e.g. make revoke VERSION=release-0.2.0 REASON="CVE-…" (STAGE=base: a base version)
revoke: setup
	@$(ENV); python -m imagefactory.channels --registry .state/registry revoke --version "$(VERSION)" \
	  --reason "$(REASON)" $(if $(STAGE),--stage "$(STAGE)")

## reproducible: build the working tree twice (PAIRS=5: five pairs) and compare each pair in layers.
reproducible: setup
	@$(ENV); python -m imagefactory.reproducible --report bench/results/reproducibility.json --pairs $(or $(PAIRS),1)

## bench: time each stage of a local release, and a release against the plain baseline.
bench: setup
	@$(ENV); python -m bench.stages
	@$(ENV); python -m bench.release_vs_baseline
	@$(ENV); python -m bench.s3_upload

## rebuild: rebuild a published release from its tag and recorded packages (no package from the network), and prove it bit-identical, e.g. make rebuild VERSION=release-0.1.0 [STAGE=base] [UPSTREAM=rebuild]
rebuild: setup
	@$(ENV); python -m imagefactory.rebuild --version "$(VERSION)" --stack $(STACK) \
	  $(if $(STAGE),--stage "$(STAGE)") --upstream "$(or $(UPSTREAM),reuse)" $(if $(KEEP),--keep "$(KEEP)")
