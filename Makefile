# `make demo` / `make test` from a fresh clone: install everything, then run.
PY    ?= python3
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: deps install demo test lint fuzz kernels kernel-deps bench bench-quick

# Debian packages: gcc and the kernel uapi headers (the ABI test compiles against
# <linux/bpf.h>), util-linux for setpriv (privilege tests), python3-venv, clang and
# libbpf-dev (<bpf/bpf_helpers.h>) for the BPF programs in C the loader tests compile,
# bpftool (the loader's and the CLI's reference).
deps:
	@if ! command -v gcc >/dev/null || [ ! -f /usr/include/linux/bpf.h ] || \
	    ! command -v setpriv >/dev/null || ! $(PY) -c 'import venv, ensurepip' 2>/dev/null || \
	    ! command -v clang >/dev/null || [ ! -f /usr/include/bpf/bpf_helpers.h ] || \
	    ! command -v bpftool >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    gcc libc6-dev linux-libc-dev util-linux python3-venv clang libbpf-dev bpftool; fi

$(STAMP): pyproject.toml | deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The host's optional compiled walks (src/cgbpf/_fastwalk.c, loaded with ctypes; without
# them the same walks run in Python).
FASTWALK := src/cgbpf/libcgbpf_fastwalk.so
$(FASTWALK): src/cgbpf/_fastwalk.c | deps
	gcc -O2 -Wall -Wextra -shared -fPIC -o $@ $<

install: $(STAMP) $(FASTWALK)

demo: install
	$(BIN)/cgbpf demo

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Long runs: 10,000 differential steps (host vs model, as root), 10,000 attr fuzz cases and
# 10,000 malformed objects per kind.
fuzz: install
	$(BIN)/python tests/differential.py --steps 10000
	CGBPF_FUZZ_EXAMPLES=10000 $(BIN)/pytest -q tests/model/test_model_attr.py -k fuzz
	CGBPF_FUZZ_EXAMPLES=10000 $(BIN)/pytest -q tests/test_elf_malformed.py -k fuzz

# The kernel matrix (as root): Debian 6.1, 6.12.100 and 6.12 booted in qemu by
# ../shared/tools/run-on-kernel.sh; in each, the host tests, the probes against the named
# profile, the differential test and the characteristic requests (tests/kernels/README.md).
kernels: install kernel-deps
	$(BIN)/python tests/kernels/matrix.py

# What ../shared/tools/run-on-kernel.sh needs on the host, installed once here: its VMs
# start in parallel and would each run apt-get (and collide on its lock).
kernel-deps:
	@if ! command -v qemu-system-x86_64 >/dev/null || ! command -v debootstrap >/dev/null || \
	    ! command -v cpio >/dev/null || ! command -v xz >/dev/null || \
	    ! command -v zstd >/dev/null || ! command -v depmod >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends qemu-system-x86 debootstrap cpio xz-utils zstd kmod; fi

# As root: every scenario against C, libbpf and bpftool, interleaved (bench/README.md);
# the table is printed and written with bench/out/results.json.  CGBPF_SRC=DIR measures
# another cgbpf tree.
bench: install
	$(BIN)/python bench/run.py

bench-quick: install
	$(BIN)/python bench/run.py --quick
