# make run   set up .venv (once) and run the whole pipeline on the embedded default config
# make test  set up .venv (once) and run the test suite (what CI runs; at most 20 minutes on 2 cores)
# make test-fast  the tier to run while working: no SLURM, no end-to-end or multi-process runs (< 5 min)
# make report  run what is missing, then write Snakemake's HTML report to results/default/report.html
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CORES  ?= all
# --isolated: ignore pip config that points at a local CPU-only torch wheel (breaks torchvision).
CERT      := $(wildcard /etc/ssl/certs/ca-certificates.crt)
PIP_FLAGS ?= --isolated --disable-pip-version-check $(if $(CERT),--cert $(CERT))

.PHONY: setup data run report test test-fast dryrun lint clean

setup: $(STAMP) data

# Re-installs only when the pins or the package metadata change: a second `make` installs nothing.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -r requirements.txt
	$(BIN)/pip install $(PIP_FLAGS) --no-deps -e .
	touch $@

# Fashion-MNIST from Debian, when missing and we may install it; otherwise the data stage explains.
data:
	@if [ ! -e $(FMNIST) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"; \
		apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
			--no-install-recommends dataset-fashion-mnist; \
	fi

run: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES)
	@echo "Done. Tables: results/default/tables/  Figures: results/default/figures/"

# Every table and figure of the run, each with its caption (workflow/report/), in one HTML file.
report: run
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --report results/default/report.html
	@echo "Report: results/default/report.html"

test: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest

test-fast: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -m "not slow"

dryrun: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake -n

lint: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --lint

clean:
	rm -rf results/default checkpoints/default .snakemake
