# Every target that runs code first builds .venv by itself, so each works on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTHON ?= python3

.PHONY: test demo lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: a bare torch requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/ppl-lvm demo --out demo_out

lint: $(STAMP)
	$(VENV)/bin/ruff check ppl_lvm tests examples benchmarks
	$(VENV)/bin/ruff format --check ppl_lvm tests examples benchmarks
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) demo_out bench_out .pytest_cache .ruff_cache
