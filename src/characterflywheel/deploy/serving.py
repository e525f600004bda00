"""Serve a gateway with uvicorn: ``serve_forever`` in the foreground (what ``characterflywheel
serve`` runs), ``running_gateway`` in a background thread for the demo, the traffic simulation and
tests, stopped cleanly (the lifespan flushes the log and folds it into ``traffic.jsonl``).

Building a gateway from the config is wiring (``pipeline.build_gateway``), not this module's.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from characterflywheel.deploy.gateway import KEEP_ALIVE_S, Gateway, create_app


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class RunningGateway:
    base_url: str
    gateway: Gateway


@contextmanager
def running_app(app: Any, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 120.0,
                name: str = "app-server") -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn in a background thread until the block ends; yields its
    ``http://host:port/v1`` base URL (the shape OpenAI clients take)."""
    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           lifespan="on", timeout_keep_alive=KEEP_ALIVE_S))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start on {host}:{port}")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@contextmanager
def running_gateway(gateway: Gateway, host: str = "127.0.0.1", port: int = 0,
                    startup_timeout: float = 120.0) -> Iterator[RunningGateway]:
    """Serve ``gateway`` in a background thread until the block ends."""
    with running_app(create_app(gateway), host, port, startup_timeout, name="gateway-server") as base_url:
        yield RunningGateway(base_url, gateway)


def serve_forever(gateway: Gateway, host: str, port: int) -> None:
    uvicorn.run(create_app(gateway), host=host, port=port, log_level="info", timeout_keep_alive=KEEP_ALIVE_S)
