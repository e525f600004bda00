"""The ``fast`` generation backend: continuous batching over a lean LLaMA forward on CPU.

Generation is the project's dominant cost, and the target machine is a laptop-class CPU.
HF ``generate`` reaches ~15 tok/s at batch 1 and ~107 tok/s at batch 16 there; this
backend keeps the CPU's matmul units busy instead
(forward pass: :mod:`characterflywheel.models.lean_llama`):

* many sequences decode together (``batch_size`` slots) in a pre-allocated KV cache;
* prompts are sorted by length, right-padded and prefilled in groups of at most
  ``prefill_tokens`` tokens; the longest common prefix of a group (typically the
  character's system prompt) is prefilled once and copied, and the ``n`` candidates of
  one prompt share one prefill;
* a prefix cache keeps the key/value states of recent system turns across ``chat`` calls
  (``prefix_cache_entries``), so a gateway that repeats a few character cards on every turn
  prefills only what follows them (simulated demo traffic: prefill time -44 %, wall -18 %);
* a stream (a server's open batch, :class:`DecodeStream`) also keeps each finished
  conversation's states after the system turn (``history_cache_bytes``), so the user's next
  turn prefills only its new messages (:class:`HistoryCache`);
* continuous batching: finished slots are refilled with waiting prompts once
  ``refill_fraction`` of the slots are free; when no prompts wait, live slots are
  compacted to the front so idle ones cost nothing;
* the cache grows with the prompts (sorted by length) within ``kv_cache_bytes``;
* logits are computed for sampled rows only, and top-p sampling avoids a full vocabulary
  sort (:mod:`characterflywheel.models.sampling`).

Chat semantics (template, stop tokens, reply post-processing) are those of the
transformers backend (:mod:`characterflywheel.models.generation` helpers), so greedy
outputs agree with HF ``generate`` up to float rounding. Sampling is reproducible for a
given ``seed``, input list and backend configuration; it is not the same random stream
as HF's, and which sequences share a step changes the order of random draws.

Measured and rejected on the 2-core AVX2 target (SmolLM2-135M): PyTorch dynamic int8
quantisation of the Linear layers is ~1.5-2x faster per matmul but wrecks the model
(teacher-forced top-1 agreement with fp32 falls to 42 %, KL 1.4 nats; the LM head alone:
89 %, KL 0.06); bf16/fp16 matmuls run at ~20 GFLOP/s against ~140 for fp32 without
AVX-512; SDPA's CPU flash kernel is 6 ms per call for a single query row (replaced by a
grouped matmul in decode). So the backend wins by batching, in fp32 there. On a CPU with native
bf16 (AVX512-BF16 or AMX) it runs bf16 (``generation.dtype = "auto"``; sampling still reads fp32
logits): on a 2-core AMD EPYC, 32 greedy demo replies took 13.9 s against 24.3 s in fp32, 17 of
them identical to fp32's and the rest parting after a shared opening, as rounding does. On a CPU
without native bf16 but with VNNI (an Intel Xeon of the Ice Lake generation) the decoder layers'
projections run int8 with per-row activation scales and SmoothQuant instead of PyTorch's per-tensor
dynamic quantisation (``generation.dtype = "int8"``, the ``auto`` choice there; :mod:`.int8`).
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from characterflywheel.models.generation import (
    Conversation,
    SamplingParams,
    decode_reply,
    encode_conversations,
    stop_token_ids,
)
from characterflywheel.models.int8 import calibrate_input_maxima
from characterflywheel.models.lean_llama import PROJECTION_INPUTS, LeanLlama, SlotCache
from characterflywheel.models.loading import load_policy
from characterflywheel.models.progress import progress_bar
from characterflywheel.models.sampling import sample_next_tokens

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_BATCH_SIZE = 128
KV_CACHE_ENV = "CHARACTERFLYWHEEL_KV_CACHE_GIB"


def default_kv_cache_bytes() -> int:
    """Each backend's KV budget: ``$CHARACTERFLYWHEEL_KV_CACHE_GIB`` GiB (as vLLM's CPU backend reads
    ``VLLM_CPU_KVCACHE_SPACE``), else 4 GiB. A gateway holds one backend per arm, so 3 arms at 4 GiB
    plus their history caches can outgrow a 24 GB machine; the variable sizes them without touching
    the run's config (whose hash would re-run every deploy)."""
    text = os.environ.get(KV_CACHE_ENV, "4")
    try:
        gib = float(text)
    except ValueError:
        gib = -1.0
    if gib <= 0:
        raise ValueError(f"${KV_CACHE_ENV}: expected a positive number of GiB, got {text!r}")
    return int(gib * 1024**3)


DEFAULT_HISTORY_CACHE_BYTES = 1024**3
CAPACITY_GROWTH = 1.25
MIN_SLOTS = 4  # a stream's first allocation; it doubles as more conversations wait


@dataclass
class _Request:
    """One reply to produce: candidate ``candidate`` of conversation ``conversation``."""

    conversation: int
    candidate: int
    prompt: list[int]
    prefix: int = 0  # leading tokens worth keeping in the prefix cache: the system turn
    generated: list[int] = field(default_factory=list)
    history_key: tuple[int, ...] | None = None  # the stored conversation this prompt continues

    def sort_key(self) -> tuple[int, int, int]:
        return len(self.prompt), self.conversation, self.candidate


class FastBackend:
    """Continuous-batching CPU decoder for LLaMA-architecture HF models (see module docstring)."""

    name = "fast"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = DEFAULT_BATCH_SIZE,
        prefill_tokens: int = 2048,
        refill_fraction: float = 0.125,
        kv_cache_bytes: int | None = None,
        min_shared_prefix: int = 8,
        num_threads: int | None = None,
        prefix_cache_entries: int = 64,
        history_cache_bytes: int = DEFAULT_HISTORY_CACHE_BYTES,
        int8: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 < refill_fraction <= 1:
            raise ValueError(f"refill_fraction must be in (0, 1], got {refill_fraction}")
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.prefill_tokens = prefill_tokens
        self.refill_fraction = refill_fraction
        # read per backend, not at import: a bad value fails where a backend is built, and a set-up
        # that exports the variable late still takes effect
        self.kv_cache_bytes = kv_cache_bytes if kv_cache_bytes is not None else default_kv_cache_bytes()
        self.min_shared_prefix = min_shared_prefix
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 1 << 30))
        if int8 and model.dtype != torch.float32:
            raise ValueError(f"int8 projections need the model loaded in float32, got {model.dtype}")
        maxima = calibrate_input_maxima(model, tokenizer, list(PROJECTION_INPUTS.values())) if int8 else None
        self.lean = LeanLlama(model, maxima).eval()
        self.generated_tokens = 0  # running total, stop tokens included (for throughput figures)
        self.prefixes = PrefixCache(prefix_cache_entries)
        self.histories = HistoryCache(history_cache_bytes)
        self._system_turns: dict[str, list[int]] = {}
        self._header: list[int] | None = None

    @classmethod
    def from_spec(cls, model: str | Path, dtype: torch.dtype = torch.float32, **options: object) -> FastBackend:
        policy, tokenizer = load_policy(model, dtype=dtype)
        return cls(policy, tokenizer, **options)  # type: ignore[arg-type]

    def chat(
        self, conversations: Sequence[Conversation], params: SamplingParams, progress: bool = False
    ) -> list[list[str]]:
        requests = self._requests(conversations, params)
        if requests:
            with torch.inference_mode(), progress_bar(len(requests), "fast generation", progress) as bar:
                _Run(self, requests, params, on_done=lambda _: bar.update(1)).run()
        self.generated_tokens += sum(len(r.generated) for r in requests)
        replies: list[list[str]] = [[""] * params.n for _ in conversations]
        for request in requests:
            replies[request.conversation][request.candidate] = self._reply(request)
        return replies

    def release_caches(self) -> None:
        """Drop the cached system turns and conversations (a server that stopped serving)."""
        self.prefixes.clear()
        self.histories.clear()

    def open_stream(self, params: SamplingParams, slots: int | None = None) -> DecodeStream:
        """A continuous batch that stays open across calls (see :class:`DecodeStream`)."""
        return DecodeStream(self, params, slots or self.batch_size)

    def _requests(self, conversations: Sequence[Conversation], params: SamplingParams,
                  first_id: int = 0) -> list[_Request]:
        """``params.n`` requests per conversation, numbered from ``first_id``; refuses a prompt
        that cannot fit the model's positions together with ``max_new_tokens``."""
        prompts = encode_conversations(self.tokenizer, conversations)
        prefixes = [self._system_turn_length(c, p) for c, p in zip(conversations, prompts)]
        longest = max((len(p) for p in prompts), default=0)
        if longest + params.max_new_tokens > self.max_positions:
            raise ValueError(
                f"prompt of {longest} tokens + {params.max_new_tokens} new tokens exceeds "
                f"the model's {self.max_positions} positions"
            )
        return [_Request(first_id + c, k, prompt, prefixes[c])
                for c, prompt in enumerate(prompts) for k in range(params.n)]

    def _reply(self, request: _Request) -> str:
        return decode_reply(self.tokenizer, request.generated, self.stop_ids)

    def turn_starts(self, prompt: Sequence[int]) -> list[int]:
        """Positions in ``prompt`` right after each assistant header but the last (where an
        earlier turn's prompt ended), latest first: where a stored history may end."""
        if self._header is None:
            probe = [{"role": "user", "content": "hi"}]
            opened = encode_conversations(self.tokenizer, [probe])[0]
            closed = encode_conversations(self.tokenizer, [probe], generation_prompt=False)[0]
            self._header = opened[len(closed):] if opened[: len(closed)] == closed else []
        header, size = self._header, len(self._header)
        if not size:
            return []
        return [end for end in range(len(prompt) - 1, size - 1, -1) if list(prompt[end - size : end]) == header]

    def _system_turn_length(self, conversation: Conversation, prompt: list[int]) -> int:
        """Tokens of ``prompt`` that render its system message (0 if none, or if the template
        does not render it as a prefix of the whole conversation)."""
        if len(conversation) < 2 or conversation[0]["role"] != "system":
            return 0
        text = conversation[0]["content"]
        if text not in self._system_turns:
            if len(self._system_turns) >= 4 * self.prefixes.entries:
                self._system_turns.clear()
            try:
                self._system_turns[text] = encode_conversations(self.tokenizer, [[conversation[0]]],
                                                                generation_prompt=False)[0]
            except Exception:  # noqa: BLE001 - a template may refuse a lone system turn: no caching then
                self._system_turns[text] = []
        turn = self._system_turns[text]
        fits = self.min_shared_prefix <= len(turn) < len(prompt) and prompt[: len(turn)] == turn
        return len(turn) if fits else 0


class PrefixCache:
    """Key/value states of recently seen system turns (the character cards), reused across
    ``chat`` calls: a gateway's every turn repeats one of a few cards, so their prefill is paid
    once (vLLM's automatic prefix caching, at the granularity of the system turn)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._stored: OrderedDict[tuple[int, ...], list[torch.Tensor]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, tokens: Sequence[int]) -> list[torch.Tensor] | None:
        found = self._stored.get(tuple(tokens))
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._stored.move_to_end(tuple(tokens))
        return found

    def __contains__(self, tokens: Sequence[int]) -> bool:
        return tuple(tokens) in self._stored

    def clear(self) -> None:
        self._stored.clear()

    def put(self, tokens: Sequence[int], states: list[torch.Tensor]) -> None:
        if self.entries <= 0:
            return
        self._stored[tuple(tokens)] = states
        while len(self._stored) > self.entries:
            self._stored.popitem(last=False)


@dataclass
class _History:
    """A finished conversation: its tokens (prompt, then the reply as generated) and their
    key/value states from ``start`` (the end of the system turn) to the end of ``tokens``."""

    tokens: list[int]
    start: int
    states: list[torch.Tensor]

    @property
    def nbytes(self) -> int:
        return sum(state.nbytes for state in self.states)


class HistoryCache:
    """The states of recently finished conversations, keyed by the prompt that produced the reply,
    so that the same user's next turn prefills only what is new (vLLM's automatic prefix caching,
    at the granularity of a turn). A next turn's prompt starts with the previous prompt (chat
    templates render earlier turns unchanged), then the reply as the template re-tokenizes it
    (usually the tokens generated), then the new user turn: the stored states cover the longest
    common prefix. States before ``start`` are the system turn, kept once in the ``PrefixCache``.
    Least recently used entries go first once ``max_bytes`` is exceeded."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._stored: OrderedDict[tuple[int, ...], _History] = OrderedDict()

    def __len__(self) -> int:
        return len(self._stored)

    def find(self, prompt: Sequence[int], turn_starts: Sequence[int]) -> tuple[tuple[int, ...], _History] | None:
        """The stored conversation whose prompt is the longest prefix of ``prompt`` ending at one
        of ``turn_starts``."""
        for end in turn_starts:
            key = tuple(prompt[:end])
            found = self._stored.get(key)
            if found is not None:
                self.hits += 1
                self._stored.move_to_end(key)
                return key, found
        self.misses += 1
        return None

    def put(self, key: tuple[int, ...], history: _History) -> None:
        if history.nbytes > self.max_bytes:
            return
        self.drop(key)
        self._stored[key] = history
        self.bytes += history.nbytes
        while self.bytes > self.max_bytes:
            _, evicted = self._stored.popitem(last=False)
            self.bytes -= evicted.nbytes

    def drop(self, key: tuple[int, ...]) -> None:
        gone = self._stored.pop(key, None)
        if gone is not None:
            self.bytes -= gone.nbytes

    def clear(self) -> None:
        self._stored.clear()
        self.bytes = 0


class _LiveSlots:
    """The live sequences, packed into KV-cache slots ``0..len-1``: a finished sequence's
    slot is filled by moving the last live one into it (a few MB of copying per step), so
    every decode step runs on exactly the live rows, with no idle slots to skip."""

    def __init__(self, capacity: int, pad_id: int) -> None:
        self.requests: list[_Request] = []
        self.positions = torch.zeros(capacity, dtype=torch.long)  # where the next token goes
        self.next_tokens = torch.full((capacity,), pad_id, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.requests)

    def append(self, request: _Request) -> int:
        slot = len(self.requests)
        self.requests.append(request)
        self.positions[slot] = len(request.prompt)
        return slot

    def remove(self, finished: list[int], cache: SlotCache) -> None:
        """Drop the ``finished`` slots, moving the last live slots into their places."""
        if not finished:
            return
        keep = len(self.requests) - len(finished)
        gone = set(finished)
        holes = sorted(s for s in gone if s < keep)
        movers = [s for s in range(keep, len(self.requests)) if s not in gone]
        if holes:
            sources, targets = torch.tensor(movers), torch.tensor(holes)
            cache.move_slots(sources, targets, int(self.positions[sources].max()))
            for source, target in zip(movers, holes, strict=True):
                self.requests[target] = self.requests[source]
            self.positions[targets] = self.positions[sources]
            self.next_tokens[targets] = self.next_tokens[sources]
        del self.requests[keep:]

    def resize(self, capacity: int) -> None:
        grown = torch.zeros(capacity, dtype=torch.long)
        grown[: len(self)] = self.positions[: len(self)]
        self.positions = grown
        tokens = torch.zeros(capacity, dtype=torch.long)
        tokens[: len(self)] = self.next_tokens[: len(self)]
        self.next_tokens = tokens


class _Run:
    """One ``chat`` call: a queue of requests sorted by prompt length, decoded in slots."""

    def __init__(
        self, backend: FastBackend, requests: list[_Request], params: SamplingParams,
        on_done: Callable[[_Request], None], slots: int | None = None, keep_histories: bool = False,
    ) -> None:
        """``slots``: how many sequences may decode together (default: as many as ``requests``,
        at most the backend's ``batch_size``); a stream sizes it for the requests still to come.
        ``keep_histories``: store finished conversations in the backend's ``HistoryCache`` and
        restore prompts from it (a stream's next turns; a one-off batch has none to come)."""
        self.backend = backend
        self.keep_histories = keep_histories
        self.lean: LeanLlama = backend.lean
        self.params = params
        self.on_done = on_done
        self.waiting = deque(sorted(requests, key=_Request.sort_key))
        self.final_capacity = len(self.waiting[-1].prompt) + params.max_new_tokens
        self.lean.ensure_positions(self.final_capacity)
        # A stream's slots are allocated as conversations arrive, up to ``max_slots``: a gateway arm
        # with 32 slots that sees 16 users at a time would otherwise hold twice the KV it uses.
        self.max_slots = min(backend.batch_size, slots or len(requests))
        slot_count = min(self.max_slots, max(len(requests), MIN_SLOTS))
        capacity = self.final_capacity  # one allocation when the budget allows it, else grow
        if self._affordable_slots(capacity) < slot_count:
            capacity = len(self.waiting[min(slot_count, len(self.waiting)) - 1].prompt) + params.max_new_tokens
            slot_count = min(slot_count, self._affordable_slots(capacity))
        self.cache = SlotCache(self.lean.shape, slot_count, capacity, self.lean.cache_dtype)
        self.live = _LiveSlots(slot_count, backend.pad_id)
        self.generator = _generator(params.seed)
        self.stops = torch.tensor(backend.stop_ids)
        self.last_batch = 0  # sequences in the latest decode step

    @property
    def finished(self) -> bool:
        return not self.waiting and not self.live

    def run(self) -> None:
        while not self.finished:
            self.step()

    def step(self) -> None:
        """Admit waiting prompts if enough slots are free, then decode one token for every live one."""
        if self.waiting and self._should_admit():
            self._admit()
        if self.live:
            self._decode_step()

    def add(self, requests: list[_Request]) -> None:
        """Queue more requests while others decode; they are admitted as slots free up, behind
        the requests already waiting (first come, first served: no starving long prompts)."""
        self.waiting.extend(sorted(requests, key=_Request.sort_key))
        longest = max(len(r.prompt) for r in requests) + self.params.max_new_tokens
        if longest > self.final_capacity:
            self.final_capacity = longest
            self.lean.ensure_positions(longest)

    # -- admission -----------------------------------------------------------------------
    def _should_admit(self) -> bool:
        if len(self.live) + len(self.waiting) > self.cache.slots and self.cache.slots < self.max_slots:
            return True  # more slots may be allocated for the waiting ones
        free = self.cache.slots - len(self.live)
        refill_at = max(1, int(self.cache.slots * self.backend.refill_fraction))
        return free >= min(refill_at, len(self.waiting)) or not self.live

    def _admit(self) -> None:
        while self.waiting:
            room = self.cache.slots - len(self.live)
            if room == 0:
                if not self._add_slots():
                    return
                continue
            group = self._next_prefill_group(room)
            needed = max(len(r.prompt) for r in group) + self.params.max_new_tokens
            if needed > self.cache.capacity:
                self.waiting.extendleft(reversed(group))
                if not self._grow(needed):
                    return  # wait until enough live sequences finish
                continue
            self._prefill(group)

    def _next_prefill_group(self, room: int) -> list[_Request]:
        """Requests to prefill together: at most ``room``, distinct prompts padded to the
        longest within ``prefill_tokens`` (the queue is sorted by length, except that a
        stream's later arrivals queue behind earlier ones)."""
        group: list[_Request] = []
        distinct = longest = 0
        while self.waiting and len(group) < room:
            candidate = self.waiting[0]
            new_prompt = not group or candidate.conversation != group[-1].conversation
            padded = (distinct + new_prompt) * max(longest, len(candidate.prompt))
            if group and new_prompt and padded > self.backend.prefill_tokens:
                break
            group.append(self.waiting.popleft())
            distinct += new_prompt
            longest = max(longest, len(candidate.prompt))
        return group

    def _prefill(self, group: list[_Request]) -> None:
        assigned = [self.live.append(request) for request in group]
        starts = _first_of_each_prompt(group)
        firsts = [group[i] for i in starts]
        prompts = [r.prompt for r in firsts]
        targets = torch.tensor([assigned[i] for i in starts])
        cached = [self._cached_states(r) for r in firsts]
        # Two passes, so that no restored row is padded to the full length of a fresh one.
        restored = [row for row, found in enumerate(cached) if found is not None]
        fresh = [row for row, found in enumerate(cached) if found is None]
        logits = torch.empty(len(firsts), self.lean.shape.vocab)
        if restored:
            logits[restored] = self._prefill_after_cached_prefixes(
                [prompts[row] for row in restored], targets[restored], [cached[row] for row in restored])
        if fresh:
            logits[fresh] = self._prefill_sharing_a_prefix([prompts[row] for row in fresh], targets[fresh])
        for request, slot, found in zip(firsts, targets.tolist(), cached):
            key = request.prompt[: request.prefix]
            if request.prefix and found is None and key not in self.backend.prefixes:
                self.backend.prefixes.put(key, self.cache.read_prefix(slot, request.prefix))
        logit_rows = _share_with_candidates(group, starts, assigned, self.cache)
        self._record(assigned[0], self._sample(logits[logit_rows]))

    def _cached_states(self, request: _Request) -> list[torch.Tensor] | None:
        """Stored states of ``request``'s leading tokens: its system turn (``PrefixCache``), then,
        in a stream, as much of the conversation as an earlier turn left (``HistoryCache``)."""
        if not request.prefix:
            return None
        system = self.backend.prefixes.get(request.prompt[: request.prefix])
        if system is None or not self.keep_histories:
            return system
        found = self.backend.histories.find(request.prompt, self.backend.turn_starts(request.prompt))
        if found is None or found[1].start != request.prefix:
            return system
        key, history = found
        shared = _common_length(history.tokens, request.prompt, limit=len(request.prompt) - 1)
        if shared <= request.prefix:
            return system
        request.history_key = key
        return [torch.cat((head, tail[:, : shared - request.prefix]), dim=1)
                for head, tail in zip(system, history.states, strict=True)]

    def _remember(self, slot: int, request: _Request) -> None:
        """Store a finished conversation's states after its system turn, in place of the one it
        continued (the tokens whose states are cached: the last one generated was never fed back)."""
        if not request.prefix:
            return
        cached = len(request.prompt) + len(request.generated) - 1
        history = _History([*request.prompt, *request.generated][:cached], request.prefix,
                           self.cache.read_range(slot, request.prefix, cached))
        if request.history_key is not None:
            self.backend.histories.drop(request.history_key)
        self.backend.histories.put(tuple(request.prompt), history)

    def _prefill_sharing_a_prefix(self, prompts: list[list[int]], targets: torch.Tensor) -> torch.Tensor:
        shared = self._shared_prefix(prompts)
        if shared:  # e.g. the system prompt: prefill once, copy to the other slots
            self.lean.prefill(torch.tensor([prompts[0][:shared]]), self.cache, targets[:1])
            self.cache.copy_prefix(int(targets[0]), targets[1:], shared)
        tokens, lengths = _right_pad([p[shared:] for p in prompts], self.backend.pad_id)
        hidden = self.lean.prefill(tokens, self.cache, targets, start=shared)
        return self.lean.logits(hidden[torch.arange(len(prompts)), lengths - 1])

    def _prefill_after_cached_prefixes(self, prompts: list[list[int]], targets: torch.Tensor,
                                       cached: list[list[torch.Tensor]]) -> torch.Tensor:
        """Restore each cached system turn into its slot and prefill only what follows it."""
        for slot, found in zip(targets.tolist(), cached):
            self.cache.write_prefix(slot, found)
        begin = [found[0].shape[1] for found in cached]
        tokens, lengths = _right_pad([p[b:] for p, b in zip(prompts, begin)], self.backend.pad_id)
        hidden = self.lean.prefill_rows(tokens, lengths, self.cache, targets, torch.tensor(begin))
        return self.lean.logits(hidden[torch.arange(len(prompts)), lengths - 1])

    def _shared_prefix(self, prompts: list[list[int]]) -> int:
        if len(prompts) < 2:
            return 0
        limit = min(len(p) for p in prompts) - 1  # every prompt keeps >= 1 token of its own
        length = 0
        while length < limit and all(p[length] == prompts[0][length] for p in prompts):
            length += 1
        return length if length >= self.backend.min_shared_prefix else 0

    # -- decoding ------------------------------------------------------------------------
    def _decode_step(self) -> None:
        count = self.last_batch = len(self.live)
        hidden = self.lean.decode(self.live.next_tokens[:count], self.live.positions[:count], self.cache)
        tokens = self._sample(self.lean.logits(hidden))
        self.live.positions[:count] += 1
        self._record(0, tokens)

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        return sample_next_tokens(logits, self.params.temperature, self.params.top_p, self.generator)

    def _record(self, first_slot: int, tokens: torch.Tensor) -> None:
        """Append ``tokens`` to the sequences in slots ``first_slot..``; retire finished ones."""
        stopped = torch.isin(tokens, self.stops).tolist()
        finished: list[int] = []
        for slot, (token, stop) in enumerate(zip(tokens.tolist(), stopped, strict=True), start=first_slot):
            request = self.live.requests[slot]
            request.generated.append(token)
            if stop or len(request.generated) >= self.params.max_new_tokens:
                finished.append(slot)
                if self.keep_histories:
                    self._remember(slot, request)
                self.on_done(request)
        self.live.next_tokens[first_slot : first_slot + len(tokens)] = tokens
        self.live.remove(finished, self.cache)

    # -- cache management ------------------------------------------------------------------
    def _grow(self, needed: int) -> bool:
        """Enlarge the cache for longer prompts; fewer slots if the byte budget demands it.
        False when more sequences are live than the grown cache could hold."""
        capacity = min(self.final_capacity, max(needed, int(self.cache.capacity * CAPACITY_GROWTH)))
        slot_count = min(self.cache.slots, self._affordable_slots(capacity))
        if len(self.live) > slot_count:
            return False
        grown = SlotCache(self.lean.shape, slot_count, capacity, self.lean.cache_dtype)
        grown.take_from(self.cache, len(self.live), self.cache.capacity)
        self.cache = grown
        self.live.resize(slot_count)
        return True

    def _add_slots(self) -> bool:
        """Allocate more slots (doubling, up to ``max_slots`` and the byte budget) for the waiting
        requests; False when no more can be had."""
        wanted = min(self.max_slots, self._affordable_slots(self.cache.capacity),
                     max(2 * self.cache.slots, len(self.live) + len(self.waiting)))
        if wanted <= self.cache.slots:
            return False
        grown = SlotCache(self.lean.shape, wanted, self.cache.capacity, self.lean.cache_dtype)
        grown.take_from(self.cache, len(self.live), self.cache.capacity)
        self.cache = grown
        self.live.resize(wanted)
        return True

    def _affordable_slots(self, capacity: int) -> int:
        per_slot = capacity * SlotCache.bytes_per_token(self.lean.shape, self.lean.cache_dtype)
        return max(1, self.backend.kv_cache_bytes // per_slot)


@dataclass
class _Ticket:
    """One submitted conversation of a stream: its requests and who wants the replies."""

    requests: list[_Request]
    on_finished: Callable[[list[str]], None]
    remaining: int = 0


class DecodeStream:
    """Continuous batching across calls, for a server (vLLM's engine loop, in small).

    ``chat`` decodes a fixed list to the end, so a gateway calling it per micro-batch makes
    every request that arrives meanwhile wait for the whole batch, and batches fragment: with
    simulated users whose next turns arrive while other users' turns decode, the gateway's
    batches averaged 5 requests with 60 simulated users on 3 arms, each paying a full reply's worth of
    decode steps. A stream keeps one batch open: ``submit`` queues a conversation and it joins
    the live sequences as slots free up (first come, first served), ``step`` admits and decodes
    one token, and ``on_finished`` receives a conversation's ``params.n`` replies as soon as
    they are done. The KV cache is kept between bursts (no re-allocation); ``close`` frees it.

    Single-threaded by design: one worker thread submits and steps (the gateway's batcher).
    """

    def __init__(self, backend: FastBackend, params: SamplingParams, slots: int) -> None:
        self.backend = backend
        self.params = params
        self.slots = slots
        self.steps = 0
        self.largest_batch = 0
        self._run: _Run | None = None
        self._tickets: dict[int, _Ticket] = {}
        self._next_id = 0

    @property
    def busy(self) -> bool:
        return self._run is not None and not self._run.finished

    def submit(self, conversation: Conversation, on_finished: Callable[[list[str]], None]) -> None:
        """Queue ``conversation``; raises ``ValueError`` (bad messages, prompt too long) at once.
        ``on_finished`` runs inside a later ``step`` and must not raise."""
        requests = self.backend._requests([conversation], self.params, first_id=self._next_id)
        self._tickets[self._next_id] = _Ticket(requests, on_finished, remaining=len(requests))
        self._next_id += 1
        if self._run is None:
            with torch.inference_mode():
                self._run = _Run(self.backend, requests, self.params, self._retire, slots=self.slots,
                                 keep_histories=True)
        else:
            self._run.add(requests)

    def step(self) -> None:
        if self._run is None:
            return
        with torch.inference_mode():
            self._run.step()
        self.steps += 1
        self.largest_batch = max(self.largest_batch, self._run.last_batch)

    def close(self) -> None:
        """Forget every queued or live conversation (their callbacks never run) and free the cache."""
        self._run = None
        self._tickets.clear()

    def _retire(self, request: _Request) -> None:
        ticket = self._tickets[request.conversation]
        ticket.remaining -= 1
        if ticket.remaining:
            return
        del self._tickets[request.conversation]
        self.backend.generated_tokens += sum(len(r.generated) for r in ticket.requests)
        ticket.on_finished([self.backend._reply(r) for r in sorted(ticket.requests, key=lambda r: r.candidate)])


def _common_length(first: Sequence[int], second: Sequence[int], limit: int) -> int:
    """Length of the common prefix of two token lists, at most ``limit``."""
    length = 0
    for a, b in zip(first, second):
        if length >= limit or a != b:
            break
        length += 1
    return length


def _first_of_each_prompt(group: list[_Request]) -> list[int]:
    """Index in ``group`` of the first request of each conversation (candidates are adjacent)."""
    return [i for i, r in enumerate(group) if i == 0 or r.conversation != group[i - 1].conversation]


def _share_with_candidates(
    group: list[_Request], starts: list[int], assigned: list[int], cache: SlotCache
) -> torch.Tensor:
    """Copy each prefilled prompt's KV to its other candidates' slots; the logits row per request."""
    rows: list[int] = []
    for row, start in enumerate(starts):
        end = starts[row + 1] if row + 1 < len(starts) else len(group)
        rows.extend([row] * (end - start))
        if end - start > 1:
            cache.copy_prefix(assigned[start], torch.tensor(assigned[start + 1 : end]), len(group[start].prompt))
    return torch.tensor(rows)


def _right_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(p) for p in prompts])
    tokens = torch.full((len(prompts), int(lengths.max())), pad_id, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        tokens[row, : len(prompt)] = torch.tensor(prompt)
    return tokens, lengths


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator
