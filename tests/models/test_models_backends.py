"""The local generation backends on a tiny random LLaMA folder: shapes, order, seeds, agreement."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from characterflywheel.models import GenerationBackend, SamplingParams, make_backend
from characterflywheel.models.fast_backend import FastBackend
from characterflywheel.models.generation import encode_conversations, stop_token_ids, validate_conversation
from characterflywheel.models.transformers_backend import TransformersBackend

CONVERSATIONS = [
    [{"role": "user", "content": "hey! how was your weekend?"}],
    [
        {"role": "system", "content": "You are Robin, a warm and curious friend."},
        {"role": "user", "content": "i just got back from a run"},
        {"role": "assistant", "content": "nice! how far?"},
        {"role": "user", "content": "like 5k, i'm exhausted lol"},
    ],
    [{"role": "system", "content": "You are Robin."}, {"role": "user", "content": "what music are you into?"}],
    [{"role": "user", "content": "my cat knocked my coffee off the table again and again and again"}],
    [{"role": "user", "content": "cereal for dinner?"}],
]
SAMPLED = SamplingParams(max_new_tokens=12, temperature=0.9, top_p=0.9, n=3, seed=7)
GREEDY = SamplingParams(max_new_tokens=16, temperature=0.0)


@pytest.fixture(scope="module")
def fast(tiny_policy) -> FastBackend:
    model, tokenizer = tiny_policy
    return FastBackend(model, tokenizer, batch_size=4)


@pytest.fixture(scope="module")
def reference(tiny_policy) -> TransformersBackend:
    model, tokenizer = tiny_policy
    return TransformersBackend(model, tokenizer, batch_size=1)


def test_sampling_params_are_validated() -> None:
    for bad in ({"n": 0}, {"max_new_tokens": 0}, {"top_p": 0.0}, {"top_p": 1.5}, {"temperature": -1}):
        with pytest.raises(ValueError):
            SamplingParams(**bad)
    assert SamplingParams(temperature=0).greedy


def test_unknown_backend_kind_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="fast, transformers, openai"):
        make_backend("vllm-direct", "embedded:smollm2-135m-instruct")


def test_make_backend_builds_local_backends_from_a_folder(tiny_llama_dir: Path) -> None:
    for kind in ("fast", "transformers"):
        backend = make_backend(kind, tiny_llama_dir, batch_size=2)
        assert isinstance(backend, GenerationBackend) and backend.name == kind
        assert len(backend.chat(CONVERSATIONS[:2], GREEDY)) == 2


def test_bad_messages_are_refused() -> None:
    with pytest.raises(ValueError, match="role"):
        validate_conversation([{"role": "narrator", "content": "x"}])
    with pytest.raises(ValueError, match="at least one"):
        validate_conversation([])


def test_chat_template_and_stop_tokens(tiny_policy) -> None:
    model, tokenizer = tiny_policy
    [ids] = encode_conversations(tokenizer, CONVERSATIONS[:1])
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(model, tokenizer)


@pytest.mark.parametrize("backend_name", ["fast", "reference"])
def test_n_replies_per_conversation_in_input_order(backend_name: str, request: pytest.FixtureRequest) -> None:
    backend = request.getfixturevalue(backend_name)
    replies = backend.chat(CONVERSATIONS, SAMPLED)
    assert len(replies) == len(CONVERSATIONS)
    assert all(len(r) == SAMPLED.n and all(isinstance(text, str) for text in r) for r in replies)
    # Order: each conversation alone gives its own greedy reply back at the same index.
    together = backend.chat(CONVERSATIONS, GREEDY)
    alone = [backend.chat([c], GREEDY)[0] for c in CONVERSATIONS]
    assert together == alone


@pytest.mark.parametrize("backend_name", ["fast", "reference"])
def test_seed_reproducibility(backend_name: str, request: pytest.FixtureRequest) -> None:
    backend = request.getfixturevalue(backend_name)
    first = backend.chat(CONVERSATIONS, SAMPLED)
    assert backend.chat(CONVERSATIONS, SAMPLED) == first
    other_seed = SamplingParams(**{**SAMPLED.__dict__, "seed": 8})
    assert backend.chat(CONVERSATIONS, other_seed) != first


def test_transformers_backend_leaves_the_global_rng_alone(reference: TransformersBackend) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    reference.chat(CONVERSATIONS[:2], SAMPLED)
    assert torch.equal(torch.rand(3), expected)


def test_fast_agrees_with_transformers_when_greedy(fast: FastBackend, reference: TransformersBackend) -> None:
    assert fast.chat(CONVERSATIONS, GREEDY) == reference.chat(CONVERSATIONS, GREEDY)


def test_fast_scheduling_does_not_change_greedy_replies(tiny_policy, fast: FastBackend) -> None:
    """One slot, a KV budget that forces cache growth, and prefill groups of one prompt."""
    model, tokenizer = tiny_policy
    expected = fast.chat(CONVERSATIONS, GREEDY)
    cramped = FastBackend(model, tokenizer, batch_size=1, prefill_tokens=1, kv_cache_bytes=1)
    assert cramped.chat(CONVERSATIONS, GREEDY) == expected
    roomy = FastBackend(model, tokenizer, batch_size=64, refill_fraction=1.0, min_shared_prefix=1)
    assert roomy.chat(CONVERSATIONS * 3, GREEDY) == expected * 3


def test_fast_candidates_share_a_prefill_but_sample_independently(fast: FastBackend) -> None:
    replies = fast.chat([CONVERSATIONS[0]], SamplingParams(max_new_tokens=12, temperature=1.5, top_p=1.0, n=6, seed=1))
    assert len(set(replies[0])) > 1


def test_fast_edge_cases(fast: FastBackend) -> None:
    assert fast.chat([], GREEDY) == []
    assert [len(r) for r in fast.chat(CONVERSATIONS[:2], SamplingParams(max_new_tokens=1, n=2))] == [2, 2]
    with pytest.raises(ValueError, match="positions"):
        fast.chat(CONVERSATIONS[:1], SamplingParams(max_new_tokens=10_000))


def test_generated_tokens_are_counted(fast: FastBackend) -> None:
    before = fast.generated_tokens
    fast.chat(CONVERSATIONS[:2], SamplingParams(max_new_tokens=5, n=2, seed=0))
    assert 4 <= fast.generated_tokens - before <= 20


def test_progress_bar_does_not_change_results(fast: FastBackend, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = fast.chat(CONVERSATIONS, SAMPLED)
    assert fast.chat(CONVERSATIONS, SAMPLED, progress=True) == quiet


def test_no_conversations_no_replies(reference: TransformersBackend) -> None:
    assert reference.chat([], GREEDY) == []


def test_fast_reuses_system_turns_across_calls_without_changing_greedy_replies(
    tiny_policy, reference: TransformersBackend
) -> None:
    model, tokenizer = tiny_policy
    card = "You are Robin, a warm and curious friend who loves long runs and bad puns."
    conversations = [[{"role": "system", "content": card}, {"role": "user", "content": line}]
                     for line in ("how was your day?", "any plans for the weekend, friend?", "pizza or tacos?")]
    conversations += CONVERSATIONS
    expected = reference.chat(conversations, GREEDY)
    backend = FastBackend(model, tokenizer, batch_size=3)
    assert backend.chat(conversations[:1], GREEDY) == expected[:1]
    assert backend.prefixes.hits == 0 and backend.prefixes.misses == 1
    assert backend.chat(conversations, GREEDY) == expected  # cached and fresh system turns in one prefill
    assert backend.prefixes.hits >= 2
    off = FastBackend(model, tokenizer, batch_size=3, prefix_cache_entries=0)
    assert off.chat(conversations, GREEDY) == expected and off.prefixes.hits == 0


def _drain(stream) -> int:
    steps = 0
    while stream.busy:
        stream.step()
        steps += 1
    return steps


def test_a_stream_lets_late_conversations_join_without_changing_greedy_replies(
    tiny_policy, reference: TransformersBackend
) -> None:
    """Conversations submitted while others decode (into a cramped cache that must grow) get the
    replies a whole-batch call gives, each delivered as soon as it is done, in submission order per
    conversation; the cache outlives a burst and the next burst reuses it."""
    model, tokenizer = tiny_policy
    expected = reference.chat(CONVERSATIONS, GREEDY)
    backend = FastBackend(model, tokenizer, batch_size=8)
    stream = backend.open_stream(GREEDY, slots=2)
    got: dict[int, list[str]] = {}
    stream.submit(CONVERSATIONS[0], lambda replies: got.setdefault(0, replies))
    stream.step()
    for index in (3, 1, 2):  # a longer prompt, then others, while the first decodes
        stream.submit(CONVERSATIONS[index], lambda replies, index=index: got.setdefault(index, replies))
        stream.step()
    assert stream.busy and stream.largest_batch == 2
    _drain(stream)
    assert got == {i: expected[i] for i in range(4)}
    stream.submit(CONVERSATIONS[4], lambda replies: got.setdefault(4, replies))
    _drain(stream)
    assert got[4] == expected[4] and not stream.busy


def test_a_stream_allocates_slots_as_conversations_arrive_and_replies_stay_the_same(
    tiny_policy, reference: TransformersBackend
) -> None:
    """A stream allowed 16 slots starts with MIN_SLOTS and doubles only when more conversations wait
    than it holds: one user costs a few slots' KV, not 16; greedy replies are unchanged."""
    from characterflywheel.models.fast_backend import MIN_SLOTS

    model, tokenizer = tiny_policy
    conversations = CONVERSATIONS * 2
    expected = reference.chat(conversations, GREEDY)
    stream = FastBackend(model, tokenizer, batch_size=16).open_stream(GREEDY, slots=16)
    got: dict[int, list[str]] = {}
    stream.submit(conversations[0], lambda replies: got.setdefault(0, replies))
    stream.step()
    assert stream._run.cache.slots == MIN_SLOTS
    for index in range(1, len(conversations)):
        stream.submit(conversations[index], lambda replies, index=index: got.setdefault(index, replies))
    stream.step()
    assert MIN_SLOTS < stream._run.cache.slots <= 16 and stream.largest_batch > MIN_SLOTS
    _drain(stream)
    assert got == {i: expected[i] for i in range(len(conversations))}


def test_a_stream_returns_n_candidates_and_refuses_an_overlong_prompt_at_once(fast: FastBackend) -> None:
    stream = fast.open_stream(SamplingParams(max_new_tokens=6, temperature=1.0, n=3, seed=0))
    got: list[list[str]] = []
    stream.submit(CONVERSATIONS[1], got.append)
    with pytest.raises(ValueError, match="positions"):
        fast.open_stream(SamplingParams(max_new_tokens=10_000)).submit(CONVERSATIONS[0], got.append)
    before = fast.generated_tokens
    assert _drain(stream) >= 1
    assert len(got) == 1 and len(got[0]) == 3
    assert 3 <= fast.generated_tokens - before <= 18


def test_a_forced_opening_is_continued_and_left_out_of_the_reply(tiny_policy, fast: FastBackend,
                                                                 reference: TransformersBackend) -> None:
    from characterflywheel.models.generation import with_opening

    model, tokenizer = tiny_policy
    conversation = CONVERSATIONS[2]
    opened = with_opening(conversation, "Ahoy!")
    plain_ids, opened_ids = encode_conversations(tokenizer, [conversation, opened])
    opening_ids = tokenizer("Ahoy!", add_special_tokens=False)["input_ids"]
    assert opened_ids == plain_ids + opening_ids  # the generation prompt, then the opening, no end of turn
    assert fast.chat([opened], GREEDY) == reference.chat([opened], GREEDY)
    stream_replies: list[list[str]] = []
    stream = fast.open_stream(GREEDY)
    stream.submit(opened, stream_replies.append)
    _drain(stream)
    assert stream_replies == fast.chat([opened], GREEDY)[:1]
    # Without the prefix flag an assistant message ending a conversation is history, not an opening.
    assert encode_conversations(tokenizer, [[*conversation, {"role": "assistant", "content": "Ahoy!"}]])[0] != opened_ids


def test_a_stream_continues_a_conversation_from_its_stored_turns(tiny_policy, reference: TransformersBackend) -> None:
    """The next turn of a conversation restores the states its previous turn left (prefilling only
    the new messages) and still gets the reply a fresh prefill gives; the stored turn is replaced."""
    model, tokenizer = tiny_policy
    card = "You are Robin, a warm and curious friend who loves long runs and bad puns."
    first = [{"role": "system", "content": card}, {"role": "user", "content": "how was your day?"}]
    backend = FastBackend(model, tokenizer, batch_size=4)
    stream = backend.open_stream(GREEDY)
    got: list[list[str]] = []
    stream.submit(first, got.append)
    _drain(stream)
    assert got == reference.chat([first], GREEDY) and len(backend.histories) == 1
    second = [*first, {"role": "assistant", "content": got[0][0]}, {"role": "user", "content": "tell me more!"}]
    third_party = [{"role": "system", "content": card}, {"role": "user", "content": "pizza or tacos?"}]
    stream.submit(second, got.append)
    stream.submit(third_party, got.append)
    _drain(stream)
    assert got[1:] == reference.chat([second, third_party], GREEDY)
    assert backend.histories.hits == 1  # the second turn; the other conversation is new
    assert len(backend.histories) == 2  # the first turn's entry gave way to the second's
    cramped = FastBackend(model, tokenizer, batch_size=4, history_cache_bytes=1)
    stream = cramped.open_stream(GREEDY)
    stream.submit(first, got.append)
    _drain(stream)
    assert len(cramped.histories) == 0  # over budget: nothing kept, nothing breaks


def test_the_kv_budget_comes_from_the_environment(monkeypatch):
    from characterflywheel.models.fast_backend import KV_CACHE_ENV, default_kv_cache_bytes

    monkeypatch.delenv(KV_CACHE_ENV, raising=False)
    assert default_kv_cache_bytes() == 4 * 1024**3
    monkeypatch.setenv(KV_CACHE_ENV, "1.5")
    assert default_kv_cache_bytes() == int(1.5 * 1024**3)
    monkeypatch.setenv(KV_CACHE_ENV, "lots")
    with pytest.raises(ValueError, match="CHARACTERFLYWHEEL_KV_CACHE_GIB.*'lots'"):
        default_kv_cache_bytes()
