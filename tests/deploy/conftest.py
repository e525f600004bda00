"""Gateway test plumbing: a uvicorn server in a thread, a gateway in its own process, a gateway factory.

Everything listens on 127.0.0.1 on a free port; every wait is bounded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from characterflywheel.deploy.gateway import Arm, Gateway, create_app

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def serving(gateway: Gateway, timeout: float = 10.0) -> Iterator[str]:
    """Run the gateway's app with uvicorn in a thread; yields the base URL (``.../v1``).

    Leaving the block shuts the server down gracefully (lifespan end: the log is folded).
    """
    port = free_port()
    config = uvicorn.Config(create_app(gateway), host=HOST, port=port, log_level="warning", access_log=False,
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    try:
        yield f"http://{HOST}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
        assert not thread.is_alive(), "the gateway did not shut down"


@pytest.fixture
def serve():
    """``with serve(gateway) as base_url:`` -- the gateway on a free loopback port, in a thread."""
    return serving


@pytest.fixture
def spawn_gateway(tmp_path: Path):
    """``with spawn_gateway(log_dir, ["name:version:weight", ...]) as (process, base_url):`` -- own process."""
    return lambda log_dir, specs: gateway_process(tmp_path, log_dir, specs)


@pytest.fixture
def make_gateway(tmp_path: Path):
    """``make_gateway(arms, **options)`` -> a Gateway logging under ``tmp_path/logs``, closed afterwards."""
    made: list[Gateway] = []

    def make(arms: Sequence[Arm], **options) -> Gateway:
        options.setdefault("max_wait_ms", 5.0)
        options.setdefault("system_prompts", {"ann": "You are Ann, a pirate.", "bob": "You are Bob, a baker."})
        gateway = Gateway(arms, tmp_path / "logs", **options)
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()


# --------------------------------------------------------------------------- subprocess gateway

LAUNCHER = textwrap.dedent('''
    """A gateway with echoing fake arms, in its own process: launcher.py LOG_DIR PORT NAME:VERSION:WEIGHT..."""
    import sys

    from characterflywheel.deploy.gateway import Arm, Gateway, serve


    class Echo:
        def __init__(self, name):
            self.name = name

        def chat(self, conversations, params, progress=False):
            replies = []
            for conversation in conversations:
                last = [m["content"] for m in conversation if m["role"] == "user"][-1]
                replies.append([f"[{self.name}] {last}"] * params.n)
            return replies


    log_dir, port, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    arms = []
    for spec in specs:
        name, version, weight = spec.split(":")
        arms.append(Arm(name, version, Echo(name), weight=float(weight)))
    serve(Gateway(arms, log_dir, system_prompts={"ann": "You are Ann, a pirate."}, max_wait_ms=5), port=port)
''')


@contextmanager
def gateway_process(tmp_path: Path, log_dir: Path, arm_specs: Sequence[str],
                    timeout: float = 60.0) -> Iterator[tuple[subprocess.Popen, str]]:
    """Start the launcher in a subprocess, wait for ``/health``; yields (process, base URL). Killed on exit."""
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER, encoding="utf-8")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    stderr_path = tmp_path / f"gateway-{port}.stderr"
    stderr = stderr_path.open("wb")
    process = subprocess.Popen([sys.executable, str(script), str(log_dir), str(port), *arm_specs], env=env,
                               stdout=subprocess.DEVNULL, stderr=stderr)
    base_url = f"http://{HOST}:{port}/v1"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway process exited: {stderr_path.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"http://{HOST}:{port}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway process did not become healthy")
            time.sleep(0.05)
        yield process, base_url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        stderr.close()
