# sipgrid: the two commands a new user needs are `make run` and `make test`.
# The virtualenv's interpreter: Debian's python3.11 where it is installed with venv and its
# headers (python3.11-venv, python3.11-dev: without headers nothing is compiled), else the first
# python3.11 on the PATH. Debian's is an optimised build, as the image's (python:3.11) is: the
# same sipgrid spent 12 to 22 % less CPU on it than on a plain source build (bench/README.md).
DEBIAN_PYTHON := /usr/bin/python3.11
PYTHON ?= $(shell $(DEBIAN_PYTHON) -c 'import ensurepip, venv; $(HAS_HEADERS)' 2>/dev/null && echo $(DEBIAN_PYTHON) || echo python3.11)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(wildcard proto/*.proto)
PB_STAMP := sipgrid/pb/.generated

.PHONY: install protos compiled guided run run-distributed test bench mutation fuzz lint typecheck system-deps node-deps web-deps clean

install: $(STAMP) $(PB_STAMP) compiled

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) is missing (sipgrid needs Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

protos: $(PB_STAMP)

# Generated stubs live in sipgrid/pb and are never edited by hand. protoc writes
# flat imports (`import common_pb2`); they are made package-relative here.
$(PB_STAMP): $(PROTOS) $(STAMP)
	rm -f sipgrid/pb/*_pb2*.py sipgrid/pb/*_pb2*.pyi
	$(PY) -m grpc_tools.protoc -Iproto \
		--python_out=sipgrid/pb --grpc_python_out=sipgrid/pb \
		--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --mypy_out=sipgrid/pb \
		$(PROTOS)
	sed -i -E 's/^import ([a-z_]+_pb2)( as |$$)/from . import \1\2/' sipgrid/pb/*_pb2*.py sipgrid/pb/*_pb2*.pyi
	touch $(PB_STAMP)

# The SIP core (sipgrid/sip), the EdgePort's core and UDP path, Connect's request handling and the
# services' crossings compiled by mypyc into sipgrid/_compiled (native/build.py), about two minutes. The package runs them while
# the MANIFEST matches the sources (SIPGRID_COMPILED=0 turns them off); without a C compiler
# or Python's headers the pure Python modules run, slower.
COMPILED_STAMP := sipgrid/_compiled/MANIFEST
COMPILED_SOURCES := $(wildcard sipgrid/sip/*.py sipgrid/sip/*.c sipgrid/services/connect/*.py) sipgrid/services/edgeport/core.py \
	sipgrid/services/edgeport/carrier.py sipgrid/api/types.py sipgrid/services/location/service.py \
	sipgrid/services/location/persistent.py sipgrid/api/convert.py sipgrid/services/frames.py \
	sipgrid/services/grpc_clients.py sipgrid/services/grpc_servers.py sipgrid/services/eager.py \
	sipgrid/services/metrics.py
HAS_HEADERS := import os, sysconfig; os.stat(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
compiled: $(COMPILED_STAMP)

$(COMPILED_STAMP): $(COMPILED_SOURCES) native/build.py $(STAMP) $(PB_STAMP)
	@if ! command -v cc >/dev/null; then echo "make: no C compiler (cc): the SIP core runs as pure Python"; \
	elif ! $(PY) -c '$(HAS_HEADERS)' 2>/dev/null; then \
		echo "make: no Python.h (python3.11-dev): the SIP core runs as pure Python"; \
	else $(PY) native/build.py; fi

# `make bench` measures what the image runs: the same modules built with a profile of
# native/train.py (SIPGRID_PGO=1: two builds, about six minutes; native/build.py says why).
# sipgrid/_compiled/GUIDED says the build in place is one; any later plain build replaces it.
GUIDED_STAMP := sipgrid/_compiled/GUIDED
guided: $(GUIDED_STAMP)

$(GUIDED_STAMP): $(COMPILED_SOURCES) native/build.py native/train.py $(STAMP) $(PB_STAMP)
	@if ! command -v cc >/dev/null || ! $(PY) -c '$(HAS_HEADERS)' 2>/dev/null; then \
		echo "make: no C compiler or no Python.h: nothing to build with a profile"; \
	else SIPGRID_PGO=1 $(PY) native/build.py; fi

# Test peers that come from Debian's packages: sipp (sip-tester), Kamailio with its TLS
# module (a TLS peer), dnsmasq (SRV and NAPTR records), baresip and linphonec (real phones,
# two SIP stacks: re and belle-sip), sipvicious
# (an attacker's tools), docker-compose (checks deploy/docker-compose.yml; no daemon needed),
# rtpengine (the media relay, userspace) and chromium (a browser phone, driven by playwright).
# Installed when missing.
KAMAILIO_TLS := /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so
system-deps:
	@missing=""; \
	command -v sipp >/dev/null || missing="$$missing sip-tester"; \
	command -v kamailio >/dev/null || missing="$$missing kamailio"; \
	test -f $(KAMAILIO_TLS) || missing="$$missing kamailio-tls-modules"; \
	command -v dnsmasq >/dev/null || missing="$$missing dnsmasq-base"; \
	command -v baresip >/dev/null || missing="$$missing baresip-core"; \
	command -v linphonec >/dev/null || missing="$$missing linphone-cli"; \
	command -v svcrack >/dev/null || missing="$$missing sipvicious"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v rtpengine >/dev/null || missing="$$missing rtpengine-daemon"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v valgrind >/dev/null || missing="$$missing valgrind"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v sipp >/dev/null || { echo "make: sipp is missing and could not be installed"; exit 1; }
	@command -v kamailio >/dev/null && test -f $(KAMAILIO_TLS) || { echo "make: kamailio with TLS is missing"; exit 1; }
	@command -v dnsmasq >/dev/null || { echo "make: dnsmasq is missing and could not be installed"; exit 1; }
	@command -v baresip >/dev/null || { echo "make: baresip is missing and could not be installed"; exit 1; }
	@command -v linphonec >/dev/null || { echo "make: linphonec is missing and could not be installed"; exit 1; }
	@command -v svcrack >/dev/null || { echo "make: sipvicious is missing and could not be installed"; exit 1; }
	@command -v docker-compose >/dev/null || { echo "make: docker-compose is missing and could not be installed"; exit 1; }
	@command -v rtpengine >/dev/null || { echo "make: rtpengine is missing and could not be installed"; exit 1; }
	@command -v valgrind >/dev/null || { echo "make: valgrind is missing and could not be installed"; exit 1; }
	@command -v chromium >/dev/null || { echo "make: chromium is missing and could not be installed"; exit 1; }

# From the npm registry, into tests/node: Routr's published Node SDK (the API compatibility
# test) and JsSIP with ws (a WebSocket SIP phone).
NODE_STAMP := tests/node/node_modules/.installed
node-deps: $(NODE_STAMP)

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	@command -v npm >/dev/null || { echo "installing Node.js and npm (Debian packages)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# The browser phone page (SIPGRID_PHONE_PAGE=on): JsSIP from the npm registry, bundled
# for the browser by esbuild into web/build.
WEB_STAMP := web/build/jssip.min.js
web-deps: $(WEB_STAMP)

$(WEB_STAMP): web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "installing Node.js and npm (Debian packages)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

run: install
	@$(MAKE) --no-print-directory web-deps || echo "make: the browser phone page's JsSIP could not be installed; the rest runs"
	$(VENV)/bin/sipgrid run --config-dir config

# deploy/docker-compose.yml's topology as processes on this host (no Docker needed): two
# EdgePorts (SIP 5060 and 6060), Dispatcher, Connect, Location on Redis, the APIServer on
# DATABASE_URL (default SQLite in data/distributed), the RTPRelay when RTPENGINE_HOST is set.
run-distributed: install
	$(PY) -m sipgrid.services.topology

# Everything on the compiled modules, then the tests of the modules compiled (the SIP core,
# the sans-IO EdgePort core and its UDP path, Connect with its index of resources and its
# guard, Location in memory and persistent; the domain types under all of them) again on
# the pure Python ones (the fuzz test runs those too).
# TEST_WORKERS pytest processes share the tests (pytest-xdist): most tests wait on
# servers and timers (two workers kept the two cores 48 % busy), so three on two cores
# took the main run from 8 min 3 s to 5 min 27 s (session 35; 6 min 57 s with half of
# the machine's CPU taken by a busy loop; all passed each time).
TEST_WORKERS ?= 3
PURE_TESTS := tests/sip tests/services/test_edgeport_core.py tests/services/test_edgeport.py \
	tests/services/test_connect.py tests/services/test_pstn.py tests/services/test_location.py \
	tests/services/test_guard.py tests/services/test_config.py tests/services/test_frames.py \
	tests/services/test_streams.py tests/services/test_eager.py tests/services/test_metrics_served.py
test: install system-deps node-deps web-deps lint
	$(PY) -m pytest -q -n $(TEST_WORKERS)
	SIPGRID_COMPILED=0 $(PY) -m pytest -q $(PURE_TESTS)

bench: install system-deps guided
	$(PY) -m bench

# Coverage-guided fuzzing (atheris) of the parser and the EdgePort core, FUZZ_SECONDS each;
# the corpus grows in .fuzz-corpus/, crashes land there as crash-* files.
FUZZ_SECONDS ?= 120
fuzz: install
	@for target in parser edgeport fast; do \
		mkdir -p .fuzz-corpus/$$target && cp -n ../shared/testdata/rfc4475/*.dat .fuzz-corpus/$$target/; \
		echo "fuzzing $$target for $(FUZZ_SECONDS) s"; \
		$(PY) -m tests.fuzz.run $$target -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=.fuzz-corpus/ \
			.fuzz-corpus/$$target || exit 1; \
	done

# Mutation testing of sipgrid/sip and services/connect (slow; never part of make test):
# the score and the surviving mutants go to bench/results/mutation.json.
mutation: install
	$(PY) -m pip install --quiet -e '.[dev,mutation]'
	$(PY) -m bench.mutation

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(wildcard sipgrid tests bench examples native)

clean:
	rm -rf $(VENV) mutants sipgrid/_compiled sipgrid/sip/_compiled sipgrid/pb/*_pb2*.py sipgrid/pb/*_pb2*.pyi $(PB_STAMP)
