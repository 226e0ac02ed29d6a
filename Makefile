# katavol: every target does its own set-up through `deps`, so `make demo` and `make test` work on a
# fresh Debian machine (as root). Targets and variables here are relied on by scripts outside the repo.
SHELL  := /bin/bash
PREFIX ?= /usr/local
MOCHA  := node_modules/.bin/mocha
TSC    := node_modules/.bin/tsc
SOURCES := $(shell find src test scripts -name '*.ts' 2>/dev/null) tsconfig.json package-lock.json

.PHONY: all deps build lint test coverage mutate demo demo-k8s bench soak fuzz refusals-doc install uninstall clean

# make soak N=1000 P=16 scales the churn; FAULTS=a,b picks the fault scenarios (none: only the plain churn);
# WARM=8 sets the shim config's warmDaemons (default 1, the config's default).
N ?= 200
P ?= 8

all: build

deps:
	@scripts/deps.sh

# Incremental: only recompiles when a source changed.
dist/.built: $(SOURCES)
	@$(TSC) -p .
	@touch $@

build: deps dist/.built

# ESLint with type-aware rules and the layer rule (eslint.config.mjs); part of `make test`, so CI
# fails on an upward import or a cycle.
lint: deps
	@node_modules/.bin/eslint --max-warnings 0 .

test: build lint
	@$(MOCHA)

# The whole suite under c8 (V8 coverage, mapped back to src/*.ts through the source maps): line and
# branch coverage per file and per directory of src/.
coverage: build
	@node_modules/.bin/c8 --all --src src --include 'src/**/*.ts' --include 'dist/src/**/*.js' \
	  --reporter text --reporter text-summary --report-dir node_modules/.cache/katavol-coverage $(MOCHA)

# StrykerJS mutation testing of the logic with fast in-process tests (stryker.config.json lists what is
# mutated, test/mutate/mocharc.json the suites it runs); not part of `make test` or CI. Incremental: a
# rerun tests only the mutants whose code or tests changed. Report: node_modules/.cache/katavol-mutate/.
# It refuses to start while loop devices are attached (scripts/mutate-guard.sh says why and how to override).
mutate: build
	@scripts/mutate-guard.sh
	@node_modules/.bin/stryker run stryker.config.json

demo: build
	@scripts/demo.sh

# The same through Kubernetes' CRI: containerd's CRI plugin with katavol as runtime handler, a pod whose
# app and sidecar share a read-write direct volume, and a second pod refused.
demo-k8s: build
	@node dist/scripts/demo-k8s.js

bench: build
	@node dist/scripts/bench.js

soak: build
	@node dist/scripts/soak.js --containers $(N) --parallel $(P) $(if $(FAULTS),--faults $(FAULTS)) $(if $(WARM),--warm $(WARM))

# make fuzz FRAMES=2000000 SPECS=300000 FLOOD_MIB=8192 scales it; make test runs the same suites at
# 105,000 / 20,000 frames, 2,000 Create cases and a 96 MiB flood.
FRAMES ?= 1000000
SPECS ?= 100000
FLOOD_MIB ?= 4096
fuzz: build
	@KATAVOL_FUZZ_FRAMES=$(FRAMES) KATAVOL_FUZZ_SPECS=$(SPECS) KATAVOL_FLOOD_MIB=$(FLOOD_MIB) $(MOCHA) --no-config --exit --timeout 0 --reporter dist/test/support/reporter.js \
		dist/test/ttrpc/fuzz.test.js dist/test/shim/proxy-fuzz.test.js dist/test/shim/create-fuzz.test.js dist/test/shim/flood.test.js

# docs/refusals.md from the bad-input catalogue (test/refusals/catalogue.ts); make test checks they agree.
refusals-doc: build
	@node dist/scripts/refusals-doc.js

install: build
	@scripts/install.sh "$(PREFIX)"

uninstall:
	@scripts/install.sh --uninstall "$(PREFIX)"

clean:
	rm -rf dist
