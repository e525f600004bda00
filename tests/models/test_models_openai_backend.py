"""The openai backend against a tiny OpenAI-compatible stub server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from characterflywheel.models import SamplingParams, make_backend
from characterflywheel.models.openai_backend import OpenAIBackend


@dataclass
class StubState:
    honour_n: bool = True
    delay_s: float = 0.0
    requests: list[dict] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_handler(state: StubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                state.in_flight += 1
                state.most_in_flight = max(state.most_in_flight, state.in_flight)
            time.sleep(state.delay_s)
            last = body["messages"][-1]["content"]
            count = body.get("n", 1) if state.honour_n else 1
            seed = body.get("seed")
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": f" echo {last} seed={seed} #{i} "},
                    "finish_reason": "stop",
                }
                for i in reversed(range(count))  # out of order on purpose
            ]
            payload = json.dumps(
                {"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"], "choices": choices}
            ).encode()
            with state.lock:
                state.in_flight -= 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def stub() -> Iterator[tuple[str, StubState]]:
    state = StubState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    server.shutdown()
    server.server_close()


CONVERSATIONS = [[{"role": "user", "content": f"message {i}"}] for i in range(6)]


def test_n_replies_in_order_with_parameters_passed_through(stub: tuple[str, StubState]) -> None:
    base_url, state = stub
    backend = make_backend("openai", "embedded:smollm2-135m-instruct", base_url=base_url, api_key="k", served_model="smol")
    params = SamplingParams(max_new_tokens=20, temperature=0.7, top_p=0.9, n=3, seed=5)
    replies = backend.chat(CONVERSATIONS, params)
    assert replies == [[f"echo message {i} seed=5 #{k}" for k in range(3)] for i in range(6)]
    request = state.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k"
    assert (request["model"], request["n"], request["max_tokens"]) == ("smol", 3, 20)
    assert (request["temperature"], request["top_p"]) == (0.7, 0.9)


def test_requests_run_concurrently(stub: tuple[str, StubState]) -> None:
    base_url, state = stub
    state.delay_s = 0.2
    backend = OpenAIBackend("smol", base_url=base_url, concurrency=6)
    started = time.perf_counter()
    backend.chat(CONVERSATIONS, SamplingParams(n=1), progress=True)
    assert state.most_in_flight > 1
    assert time.perf_counter() - started < 6 * 0.2


def test_servers_that_ignore_n_are_asked_again(stub: tuple[str, StubState]) -> None:
    base_url, state = stub
    state.honour_n = False
    backend = OpenAIBackend("smol", base_url=base_url)
    replies = backend.chat(CONVERSATIONS[:2], SamplingParams(n=3, seed=10))
    assert [len(r) for r in replies] == [3, 3]
    assert len(state.requests) == 6
    assert {r["seed"] for r in state.requests} == {10, 11, 12}  # distinct seeds for the extra draws


def test_a_base_url_is_required() -> None:
    with pytest.raises(ValueError, match="base_url"):
        OpenAIBackend("smol", base_url="")


def test_a_forced_opening_asks_the_server_to_continue_it(stub: tuple[str, StubState]) -> None:
    from characterflywheel.models.generation import with_opening

    base_url, state = stub
    backend = OpenAIBackend("smol", base_url=base_url)
    backend.chat([with_opening(CONVERSATIONS[0], "Ahoy!"), CONVERSATIONS[1]], SamplingParams())
    opened, plain = sorted(state.requests, key=lambda r: len(r["messages"]), reverse=True)
    assert opened["messages"][-1] == {"role": "assistant", "content": "Ahoy!"}
    assert (opened["continue_final_message"], opened["add_generation_prompt"]) == (True, False)
    assert "continue_final_message" not in plain


def test_the_seed_can_be_left_out(stub: tuple[str, StubState]) -> None:
    base_url, state = stub
    OpenAIBackend("smol", base_url=base_url, forward_seed=False).chat(CONVERSATIONS[:1], SamplingParams(n=1, seed=4))
    assert "seed" not in state.requests[0]
