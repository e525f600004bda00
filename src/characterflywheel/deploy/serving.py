"""Start the gateway from the config: arms built from model folders, uvicorn on loopback.

``serve_forever`` is what ``characterflywheel serve`` runs; ``running_gateway`` starts the same
server in a background thread for the demo, the traffic simulation and tests, and stops it
cleanly (the lifespan flushes the log and folds it into ``traffic.jsonl``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import uvicorn

from characterflywheel.characters import load_characters
from characterflywheel.config import Config
from characterflywheel.deploy.gateway import KEEP_ALIVE_S, Arm, Gateway, create_app
from characterflywheel.models import GenerationBackend, SamplingParams, make_backend


def build_arms(config: Config) -> list[Arm]:
    """One backend per distinct model folder, shared by the arms that serve it."""
    backends: dict[str, GenerationBackend] = {}
    base = SamplingParams(max_new_tokens=config.generation.max_new_tokens, temperature=config.generation.temperature,
                          top_p=config.generation.top_p)
    arms = []
    for arm in config.serve.arms:
        model = arm.model or config.model.policy
        if model not in backends:
            from characterflywheel.pipeline import backend_options

            options = backend_options(config) | {"model": model}
            if config.generation.backend != "openai":
                options["batch_size"] = config.serve.batch_size
            backends[model] = make_backend(**options)
        sampling = base if arm.temperature is None else replace(base, temperature=arm.temperature)
        arms.append(Arm(arm.name, arm.model_version or arm.name, backends[model], arm.weight, sampling))
    return arms


def build_gateway(config: Config, log_dir: Path) -> Gateway:
    prompts = {character.id: character.system_prompt() for character in load_characters()}
    return Gateway(build_arms(config), log_dir, prompts, batch_size=config.serve.batch_size,
                   max_wait_ms=config.serve.max_wait_ms, continuous_batching=config.serve.continuous_batching)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class RunningGateway:
    base_url: str
    gateway: Gateway


@contextmanager
def running_gateway(gateway: Gateway, host: str = "127.0.0.1", port: int = 0,
                    startup_timeout: float = 120.0) -> Iterator[RunningGateway]:
    """Serve ``gateway`` in a background thread until the block ends."""
    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(create_app(gateway), host=host, port=port, log_level="warning",
                                           lifespan="on", timeout_keep_alive=KEEP_ALIVE_S))
    thread = threading.Thread(target=server.run, name="gateway-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"gateway did not start on {host}:{port}")
        time.sleep(0.05)
    try:
        yield RunningGateway(f"http://{host}:{port}/v1", gateway)
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def serve_forever(config: Config, log_dir: Path) -> None:
    gateway = build_gateway(config, log_dir)
    uvicorn.run(create_app(gateway), host=config.serve.host, port=config.serve.port or 8000, log_level="info",
                timeout_keep_alive=KEEP_ALIVE_S)
