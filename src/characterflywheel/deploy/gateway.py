"""The serving gateway: OpenAI-compatible chat completions with A/B arms and traffic logging.

Endpoints (the official ``openai`` client works unchanged):

* ``POST /v1/chat/completions``: ``model`` is either the public name (default
  ``characterflywheel``: the user is routed to an arm by a sticky hash of ``user``) or an arm's
  name / model version (pins that arm, e.g. for evaluation). ``metadata.character_id`` of a
  character the gateway has a card for (the shipped cards plus the team's) makes that card the system
  prompt (a client's own system message is replaced). A request with its own system message and no
  such id is a *user-created* character: its system message is kept and it is logged under
  ``metadata.character_id`` if given, else ``user-<first 10 hex of the message's SHA-256>``
  (``characters.from_system``), so its traffic is stratified and rule-checked as that character; an
  unknown ``metadata.character_id`` without a system message is a 400 (there is no persona to play);
  ``metadata.conversation_id`` groups turns into a session (default: ``<user>:<character>``);
  ``metadata.session_started_at`` (ISO 8601 with timezone) becomes the folded conversation's
  ``started_at`` (the simulator sends simulated times). Request sampling fields (``temperature``,
  ``top_p``, ``max_tokens``, ``seed``, ``n``) override the arm's ``sampling``; ``stream=true`` is
  refused (400). ``usage`` counts tokens with the backend's tokenizer when it has one (the local
  backends), else whitespace-separated words.
* ``GET /v1/models``; ``POST /v1/feedback`` with ``response_id`` and ``continued`` / ``thumbs``
  (404 for an id this gateway never served, also across restarts on the same log);
  ``GET /v1/stats`` (requests served per arm, events logged, batches) for reconciliation;
  ``GET /health``.
* Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}`` (so the client
  raises ``BadRequestError``, ``NotFoundError``, ``InternalServerError``...); a malformed body is a
  400, not FastAPI's 422.

A request is checked against the traffic schema before any decoding (non-blank contents, at most
one system turn and only first, a user turn, a valid ``session_started_at``, identifier lengths),
so everything the gateway serves folds into records that ingest accepts. A blank *assistant* turn
in the history is tolerated: it is a blank reply the client echoed back (see ``traffic_log``).

Concurrent requests are batched by a single worker thread (one worker keeps the cores from being
split between arms; on a CPU the batched path is several times faster per token than one request
at a time). A backend that offers ``open_stream`` (the ``fast`` one) gets *continuous batching*:
one open batch per (backend, sampling) group, which a request joins as soon as a slot is free and
leaves as soon as its reply is done, the worker stepping the open groups in turn; other backends
are *micro-batched*: the worker takes whatever is queued (up to ``batch_size``, waiting at most
``max_wait_ms`` for company) and decodes it as one ``chat`` call per group. Continuous batching
matters because a chat user's next turn arrives while other users' turns decode: micro-batches
then fragment (mean 5 requests with 60 simulated users on 3 arms) and each pays a whole reply's decode
steps. If a batch or a step fails, its requests are retried one by one, so one poisonous request
fails alone (500) and the server keeps serving. Waiting requests hold no thread: each awaits a
future the worker resolves.

Every exchange is appended to ``<log_dir>/events.jsonl`` *before* its reply is returned, so a
reply a client received is always in the log, even if the server is killed right after; on
graceful shutdown the log is folded into ``<log_dir>/traffic.jsonl`` (``traffic_log.fold_events``).

Routing is a pure function of (salt, user, arm order, weights): the same user gets the same arm on
every request and after a restart with the same arm list.

Why not vLLM's server: it is the production answer for the generation itself (the ``openai``
backend points at it), but it has no A/B arms, character cards, feedback endpoint or traffic log;
this gateway adds those in front of any backend.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import math
import queue
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from characterflywheel import artifacts
from characterflywheel.characters.from_system import user_character_id
from characterflywheel.data.schema import (
    MAX_ID_CHARS,
    SchemaLimits,
    describe_validation_error,
    validate_conversation,
)
from characterflywheel.deploy.traffic_log import (
    EventLog,
    FoldReport,
    fold_events,
    known_response_ids,
    utc_now,
)
from characterflywheel.models import GenerationBackend, SamplingParams

PUBLIC_MODEL = "characterflywheel"
# Identifiers are checked a little shorter than the schema allows: the fold may suffix "#<n>".
REQUEST_LIMITS = SchemaLimits(max_id_chars=MAX_ID_CHARS - 16)

__all__ = ["PUBLIC_MODEL", "Arm", "Gateway", "MicroBatcher", "create_app", "route", "serve", "sticky_bucket"]


@dataclass
class Arm:
    """One model version behind the gateway, with its share of users and its sampling settings."""

    name: str
    model_version: str
    backend: GenerationBackend
    weight: float = 1.0
    sampling: SamplingParams = field(default_factory=SamplingParams)

    def __post_init__(self) -> None:
        if not self.name.strip() or not self.model_version.strip():
            raise ValueError("an arm needs a non-blank name and model_version")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"arm {self.name!r}: weight must be a finite number >= 0, got {self.weight}")


def sticky_bucket(user_id: str, salt: str = "ab") -> float:
    """A user's fixed point in [0, 1): the same arm on every request, in every process."""
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def route(user_id: str, arms: Sequence[Arm], salt: str = "ab") -> Arm:
    """The arm of ``user_id``: arms own consecutive slices of [0, 1) in proportion to their weights."""
    total = sum(arm.weight for arm in arms)
    if not arms or total <= 0:
        raise ValueError("routing needs at least one arm with a positive weight")
    point, edge = sticky_bucket(user_id, salt) * total, 0.0
    for arm in arms:
        edge += arm.weight
        if point < edge:
            return arm
    return next(arm for arm in reversed(arms) if arm.weight > 0)  # float rounding at the very top


# --------------------------------------------------------------------------- request bodies


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError(f"only text content parts are supported, got type {part.get('type')!r}")
            parts.append(part["text"])
        return "\n".join(parts)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = PUBLIC_MODEL
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    n: int = Field(1, ge=1, le=16)
    seed: int | None = None
    user: str | None = None
    stream: bool = False
    metadata: dict[str, str] | None = None


class FeedbackRequest(BaseModel):
    response_id: str
    continued: bool | None = None
    thumbs: Literal["up", "down"] | None = None


# --------------------------------------------------------------------------- micro-batching


@dataclass
class _Job:
    arm: Arm
    messages: list[dict[str, str]]
    params: SamplingParams
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    """Resolves to ``(replies, usage)``."""


def _as_exception(error: BaseException) -> Exception:
    return error if isinstance(error, Exception) else RuntimeError(f"generation aborted: {error!r}")


def _usage(backend: GenerationBackend, jobs: Sequence[_Job], replies: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """Token counts per job: the backend's tokenizer when it has one, else words (cheap, approximate)."""
    tokenizer = getattr(backend, "tokenizer", None)
    try:
        if tokenizer is not None:
            from characterflywheel.models.generation import encode_conversations

            prompts = [len(ids) for ids in encode_conversations(tokenizer, [job.messages for job in jobs])]
            flat = [text for texts in replies for text in texts]
            encoded = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
            lengths = iter(len(ids) for ids in encoded)
            completions = [[next(lengths) for _ in texts] for texts in replies]
            exact = True
        else:
            prompts = [sum(len(m["content"].split()) for m in job.messages) for job in jobs]
            completions = [[len(text.split()) for text in texts] for texts in replies]
            exact = False
    except Exception:  # usage is informative only: never fail a request over it
        prompts, completions, exact = [0] * len(jobs), [[0] * len(texts) for texts in replies], False
    return [{"prompt_tokens": p, "completion_tokens": sum(c), "total_tokens": p + sum(c), "per_choice": c,
             "exact": exact} for p, c in zip(prompts, completions)]


MAX_IDLE_STREAMS = 8
# uvicorn closes an idle keep-alive connection after 5 s by default; a client reusing it at that
# moment gets "Server disconnected without sending a response". Replies can take longer than that
# to decode under load, so idle connections are kept longer than clients wait between requests (the
# usual rule: server keep-alive above the clients' and load balancers' idle timeouts).
KEEP_ALIVE_S = 75


class MicroBatcher:
    """Collects concurrent jobs and decodes them on one worker thread: continuously batched
    where the backend can stream, else in micro-batches (see the module docstring)."""

    def __init__(self, batch_size: int = 32, max_wait_ms: float = 20.0, continuous: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.continuous = continuous
        self.max_wait = max(0.0, max_wait_ms) / 1000
        self.batches = 0
        self.batched_requests = 0
        self.largest_batch = 0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._streams: OrderedDict[tuple[int, SamplingParams], Any] = OrderedDict()
        self._stream_jobs: dict[tuple[int, SamplingParams], dict[object, _Job]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="gateway-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: _Job) -> _Job:
        with self._lock:
            if self._closed:
                raise RuntimeError("the gateway is shutting down")
            self._queue.put(job)
        return job

    def close(self, timeout: float = 60.0) -> None:
        """Finish the queued jobs, stop the worker; jobs it could not finish in time fail."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout=timeout)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("the gateway shut down before this request ran"))
        if not self._thread.is_alive():  # the open batches' KV caches go now, not when GC finds them
            for stream in self._streams.values():
                stream.close()
            self._streams.clear()

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, deadline, stop = [first], time.monotonic() + self.max_wait, False
        while len(jobs) < self.batch_size:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            jobs.append(job)
        return jobs, stop

    def _loop(self) -> None:
        stopping = False
        while True:
            busy = [key for key, stream in self._streams.items() if stream.busy]
            if stopping and not busy:
                break
            if not stopping:
                jobs, stopping = self._take(wait=not busy)
                self._dispatch(jobs)
            for key in list(self._streams):
                if self._streams[key].busy:
                    self._step(key)
            self._forget_idle_streams()

    def _take(self, wait: bool) -> tuple[list[_Job], bool]:
        """Queued jobs and whether shutdown was asked: when idle, block for the first job and
        gather company; while streams decode, only what is already queued (no waiting)."""
        if wait:
            first = self._queue.get()
            return ([], True) if first is None else self._gather(first)
        jobs: list[_Job] = []
        while len(jobs) < self.batch_size:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _dispatch(self, jobs: list[_Job]) -> None:
        # A request whose client went away (its future cancelled) is not decoded at all.
        jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        groups: dict[tuple[int, SamplingParams], list[_Job]] = {}
        for job in jobs:
            if not self._join_stream(job):
                groups.setdefault((id(job.arm.backend), job.params), []).append(job)
        for (_, params), group in groups.items():
            self._run(group, params)

    # -- continuous batching ---------------------------------------------------------------
    def _join_stream(self, job: _Job) -> bool:
        """Queue ``job`` on its group's open stream; False if its backend has no streams."""
        open_stream = getattr(job.arm.backend, "open_stream", None) if self.continuous else None
        if open_stream is None:
            return False
        key = (id(job.arm.backend), job.params)
        if key not in self._streams:
            self._streams[key] = open_stream(job.params, slots=self.batch_size)
            self._stream_jobs[key] = {}
        self._streams.move_to_end(key)
        stream, pending = self._streams[key], self._stream_jobs[key]
        token = object()
        try:
            stream.submit(job.messages, lambda replies: self._finish_streamed(key, token, [replies]))
        except BaseException as error:
            job.future.set_exception(_as_exception(error))
            return True
        pending[token] = job
        return True

    def _finish_streamed(self, key: tuple[int, SamplingParams], token: object, replies: list[list[str]]) -> None:
        job = self._stream_jobs[key].pop(token)
        if len(replies[0]) != job.params.n:
            job.future.set_exception(RuntimeError(f"backend {job.arm.backend.name!r} returned a malformed reply list"))
            return
        with self._lock:
            self.batched_requests += 1
        job.future.set_result((list(replies[0]), _usage(job.arm.backend, [job], replies)[0]))

    def _step(self, key: tuple[int, SamplingParams]) -> None:
        stream = self._streams[key]
        try:
            stream.step()
        except BaseException:  # drop the open batch; its requests are retried alone (see _run)
            stream.close()
            stranded = list(self._stream_jobs[key].values())
            self._stream_jobs[key].clear()
            for job in stranded:
                self._run_one(job, job.params)
            return
        with self._lock:
            self.batches += 1
            self.largest_batch = max(self.largest_batch, stream.largest_batch)

    def _forget_idle_streams(self) -> None:
        """Keep a few idle streams (their KV caches) for the next burst; free the oldest beyond."""
        idle = [key for key, stream in self._streams.items() if not stream.busy]
        for key in idle[: max(0, len(idle) - MAX_IDLE_STREAMS)]:
            self._streams.pop(key).close()
            del self._stream_jobs[key]

    def _run(self, group: list[_Job], params: SamplingParams) -> None:
        backend = group[0].arm.backend
        try:
            replies = backend.chat([job.messages for job in group], params)
            if len(replies) != len(group) or any(len(r) != params.n for r in replies):
                raise RuntimeError(f"backend {backend.name!r} returned {len(replies)} reply lists for "
                                   f"{len(group)} conversations (n={params.n})")
        except BaseException as error:  # handed to the waiting requests, never lost in the thread
            if len(group) > 1:  # find the culprit: the others should not fail with it
                for job in group:
                    self._run_one(job, params)
                return
            group[0].future.set_exception(_as_exception(error))
            return
        with self._lock:
            self.batches += 1
            self.batched_requests += len(group)
            self.largest_batch = max(self.largest_batch, len(group))
        for job, reply, usage in zip(group, replies, _usage(backend, group, replies)):
            job.future.set_result((list(reply), usage))

    def _run_one(self, job: _Job, params: SamplingParams) -> None:
        try:
            replies = job.arm.backend.chat([job.messages], params)
            if len(replies) != 1 or len(replies[0]) != params.n:
                raise RuntimeError(f"backend {job.arm.backend.name!r} returned a malformed reply list")
        except BaseException as error:
            job.future.set_exception(_as_exception(error))
            return
        with self._lock:
            self.batches += 1
            self.batched_requests += 1
            self.largest_batch = max(self.largest_batch, 1)
        job.future.set_result((list(replies[0]), _usage(job.arm.backend, [job], replies)[0]))


# --------------------------------------------------------------------------- the gateway


class RequestError(ValueError):
    """A request the gateway refuses: ``status`` and an OpenAI error ``kind``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.param = status, kind, param


def _openai_error(status: int, message: str, kind: str = "invalid_request_error",
                  param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status,
                        content={"error": {"message": message, "type": kind, "param": param, "code": code}})


class Gateway:
    """State behind the app: arms, characters' system prompts, batcher, event log, counters."""

    def __init__(self, arms: Sequence[Arm], log_dir: Path, system_prompts: Mapping[str, str] | None = None,
                 batch_size: int = 32, max_wait_ms: float = 20.0, public_model: str = PUBLIC_MODEL,
                 salt: str = "ab", continuous_batching: bool = True) -> None:
        if not arms:
            raise ValueError("the gateway needs at least one arm")
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if public_model in names or public_model in {a.model_version for a in arms}:
            raise ValueError(f"the public model name {public_model!r} must not be an arm's name or version")
        if sum(a.weight for a in arms) <= 0:
            raise ValueError("at least one arm needs a positive weight")
        self.arms = list(arms)
        self.public_model = public_model
        self.salt = salt
        self.system_prompts = dict(system_prompts or {})
        self.log_dir = Path(log_dir)
        self.events_path = self.log_dir / artifacts.EVENTS
        self.traffic_path = self.log_dir / artifacts.TRAFFIC
        # Feedback may come for replies served before a restart: those ids are in the log already.
        self.response_ids: set[str] = known_response_ids(self.events_path)
        self.log = EventLog(self.events_path)
        self.batcher = MicroBatcher(batch_size, max_wait_ms, continuous_batching)
        self.served: Counter[str] = Counter()
        self.fold_report: FoldReport | None = None
        self._lock = threading.Lock()
        self._closed = False

    def pick_arm(self, model: str, user_id: str) -> Arm | None:
        if model == self.public_model:
            return route(user_id, self.arms, self.salt)
        return next((a for a in self.arms if model in (a.name, a.model_version)), None)

    def sampling_for(self, arm: Arm, request: ChatRequest) -> SamplingParams:
        updates: dict[str, Any] = {"n": request.n}
        max_new_tokens = request.max_completion_tokens or request.max_tokens
        for name, value in (("temperature", request.temperature), ("top_p", request.top_p),
                            ("seed", request.seed), ("max_new_tokens", max_new_tokens)):
            if value is not None:
                updates[name] = value
        return replace(arm.sampling, **updates)

    def character_for(self, request: ChatRequest) -> str:
        """The id the exchange is logged under: a carded ``metadata.character_id``; else, for a request
        with its own system message (a user-created character), the given id or one derived from the
        message; else "none". RequestError 400 for an unknown id with no system message to play."""
        character_id = (request.metadata or {}).get("character_id")
        if character_id is not None and character_id in self.system_prompts:
            return character_id
        own = next((m.text() for m in request.messages if m.role in ("system", "developer")), "")
        if own.strip():
            return character_id or user_character_id(own)
        if character_id is not None:
            raise RequestError(400, f"metadata.character_id: unknown character '{character_id}' (and no system "
                               "message to play it from)", param="metadata.character_id")
        return "none"

    def messages_for(self, request: ChatRequest, character_id: str | None) -> list[dict[str, str]]:
        """The conversation sent to the arm: a carded character's system prompt replaces the client's."""
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in request.messages]
        if character_id is not None and character_id in self.system_prompts:
            card = {"role": "system", "content": self.system_prompts[character_id]}
            messages = [card, *[m for m in messages if m["role"] != "system"]]
        return messages

    def check_request(self, messages: Sequence[Mapping[str, str]], *, conversation_id: str, user_id: str,
                      character_id: str, arm: Arm, started_at: str) -> None:
        """Refuse (RequestError 400) what would not fold into a valid traffic record."""
        kept = [dict(m) for m in messages if m["role"] != "assistant" or m["content"].strip()]
        record = {"conversation_id": conversation_id, "user_id": user_id, "character_id": character_id,
                  "model_version": arm.model_version, "arm": arm.name, "started_at": started_at,
                  "messages": [*kept, {"role": "assistant", "content": "reply"}]}
        try:
            validate_conversation(record, REQUEST_LIMITS)
        except ValidationError as error:
            problem = describe_validation_error(error)[0]
            names = {"user_id": "user", "started_at": "metadata.session_started_at",
                     "conversation_id": "metadata.conversation_id", "character_id": "metadata.character_id"}
            param = names.get(problem.field, problem.field)
            raise RequestError(400, f"{param}: {problem.message}", param=param) from None

    def stats(self) -> dict[str, Any]:
        batcher = self.batcher
        return {"served": dict(self.served), "served_total": sum(self.served.values()),
                "events": dict(self.log.written), "batches": batcher.batches,
                "batched_requests": batcher.batched_requests, "largest_batch": batcher.largest_batch}

    def close(self) -> FoldReport | None:
        """Drain the batcher, close the log and fold it into ``traffic.jsonl`` (idempotent)."""
        with self._lock:
            if self._closed:
                return self.fold_report
            self._closed = True
        self.batcher.close()
        for backend in {id(arm.backend): arm.backend for arm in self.arms}.values():
            release = getattr(backend, "release_caches", None)
            if release is not None:  # a stopped server's caches only hold memory
                release()
        self.log.close()
        self.fold_report = fold_events(self.events_path, self.traffic_path)
        return self.fold_report


def _current_gateway(http: Request) -> Gateway:
    return http.app.state.gateway


# The endpoints find the gateway through the app (``app.state``), never through a closure: FastAPI
# keeps every endpoint function it has seen in a module-level cache (``_is_coroutine_callable_cached``,
# 4,096 entries), so a closure over the gateway kept its arms' models alive after the server stopped,
# ~300 MB a served window in the same process.
ServingGateway = Annotated[Gateway, Depends(_current_gateway)]


def create_app(gateway: Gateway) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await asyncio.to_thread(app.state.gateway.close)

    app = FastAPI(title="characterflywheel gateway", lifespan=lifespan)
    app.state.gateway = gateway

    @app.get("/v1/models")
    async def list_models(gateway: ServingGateway) -> dict[str, Any]:
        names = [gateway.public_model, *dict.fromkeys(a.model_version for a in gateway.arms)]
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "characterflywheel"}
                                           for n in names]}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/stats")
    async def stats(gateway: ServingGateway) -> dict[str, Any]:
        return gateway.stats()

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest, gateway: ServingGateway) -> Any:
        received_at = utc_now()
        if request.stream:
            return _openai_error(400, "stream=true is not supported by this gateway", param="stream")
        metadata = request.metadata or {}
        try:
            character_id = gateway.character_for(request)
        except RequestError as error:
            return _openai_error(error.status, str(error), error.kind, error.param)
        except ValueError as error:  # a non-text content part in the system message
            return _openai_error(400, str(error))
        user_id = request.user or "anonymous"
        arm = gateway.pick_arm(request.model, user_id)
        if arm is None:
            return _openai_error(404, f"The model '{request.model}' does not exist", "not_found_error", "model",
                                 "model_not_found")
        conversation_id = metadata.get("conversation_id") or f"{user_id}:{character_id}"
        session_started_at = metadata.get("session_started_at")
        try:
            messages = gateway.messages_for(request, character_id)
            params = gateway.sampling_for(arm, request)
            gateway.check_request(messages, conversation_id=conversation_id, user_id=user_id,
                                  character_id=character_id, arm=arm,
                                  started_at=session_started_at or received_at)
        except RequestError as error:
            return _openai_error(error.status, str(error), error.kind, error.param)
        except ValueError as error:
            return _openai_error(400, str(error))
        try:
            job = gateway.batcher.submit(_Job(arm, messages, params))
        except RuntimeError as error:
            return _openai_error(503, str(error), "server_error")
        try:
            replies, usage = await asyncio.wrap_future(job.future)
        except Exception as error:
            return _openai_error(500, f"generation failed: {type(error).__name__}: {error}", "server_error")
        response_id = f"chatcmpl-{uuid.uuid4().hex}"
        event = {
            "event": "exchange", "at": utc_now(), "received_at": received_at, "response_id": response_id,
            "conversation_id": conversation_id, "user_id": user_id, "character_id": character_id,
            "model_version": arm.model_version, "arm": arm.name, "session_started_at": session_started_at,
            "metadata": metadata, "sampling": {"temperature": params.temperature, "top_p": params.top_p,
                                               "max_new_tokens": params.max_new_tokens, "seed": params.seed},
            "messages": messages, "reply": replies[0],
        }
        if len(replies) > 1:
            event["alternatives"] = replies[1:]
        gateway.log.append(event)  # before the reply leaves: what a client got is always logged
        with gateway._lock:
            gateway.served[arm.name] += 1
            gateway.response_ids.add(response_id)
        length_cut = [usage["exact"] and tokens >= params.max_new_tokens for tokens in usage["per_choice"]]
        return {
            "id": response_id, "object": "chat.completion", "created": int(time.time()), "model": arm.model_version,
            "system_fingerprint": arm.name,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text},
                         "finish_reason": "length" if cut else "stop", "logprobs": None}
                        for i, (text, cut) in enumerate(zip(replies, length_cut))],
            "usage": {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
            "arm": arm.name,
        }

    @app.post("/v1/feedback")
    async def feedback(request: FeedbackRequest, gateway: ServingGateway) -> Any:
        if request.response_id not in gateway.response_ids:
            return _openai_error(404, f"response_id '{request.response_id}' not found", "not_found_error",
                                 "response_id")
        if request.continued is None and request.thumbs is None:
            return _openai_error(400, "feedback needs 'continued' and/or 'thumbs'")
        gateway.log.append({"event": "feedback", "at": utc_now(), **request.model_dump()})
        return {"ok": True}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        return _openai_error(error.status_code, str(error.detail), kind)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        loc = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return _openai_error(400, f"{loc}: {first.get('msg')}" if loc else str(first.get("msg")), param=loc or None)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, error: Exception) -> JSONResponse:
        return _openai_error(500, f"internal error: {type(error).__name__}: {error}", "server_error")

    return app


def serve(gateway: Gateway, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Run the app with uvicorn until interrupted; the log is folded on shutdown."""
    import uvicorn

    uvicorn.run(create_app(gateway), host=host, port=port, log_level=log_level, access_log=False,
                timeout_keep_alive=KEEP_ALIVE_S)
