"""The segments input: each part encoded on its own, shared parts once, cosines the head can read."""

from __future__ import annotations

import numpy as np
import torch

from characterflywheel.reward.backbones import SIMILARITY_SCALE, load_backbone
from characterflywheel.reward.inputs import CONTEXT_SEGMENTS, InputFormat, encode_segments, segment_texts

FMT = InputFormat(max_length=64, history_messages=2, system_chars=20, reply_share=0.5)
PROMPT = [{"role": "system", "content": "You are Captain Mira, a cheerful space pilot."},
          {"role": "user", "content": "hello there"},
          {"role": "assistant", "content": "Ahoy, traveller!"},
          {"role": "user", "content": "Do you like cooking pasta?"}]


def test_segment_texts_split_persona_earlier_turns_last_user_line_and_replies() -> None:
    assert segment_texts(PROMPT, ["I do!"], FMT) == [
        "You are Captain Mira", "[assistant] Ahoy, traveller!", "Do you like cooking pasta?", "I do!"]
    no_user_last = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]
    assert segment_texts(no_user_last, ["a", ""], FMT) == [" ", "[user] hi [assistant] hey", " ", "a", " "]


def test_encode_segments_encodes_a_prompts_shared_parts_once() -> None:
    from transformers import AutoTokenizer

    from characterflywheel.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("embedded:all-minilm-l6-v2"))
    replies = ["I love pasta.", "Never tried it.", "Only on Mars."]
    batch = encode_segments(tokenizer, [PROMPT] * 3, [(r,) for r in replies], FMT)
    assert batch["segment_index"].shape == (3, CONTEXT_SEGMENTS + 1)
    assert batch["input_ids"].shape[0] == CONTEXT_SEGMENTS + 3  # three shared parts + three replies
    assert (batch["segment_index"][:, :CONTEXT_SEGMENTS] == batch["segment_index"][0, :CONTEXT_SEGMENTS]).all()
    assert len(set(batch["segment_index"][:, -1].tolist())) == 3
    # a reply that repeats a context text is still its own row (replies keep their start, context its end)
    same = encode_segments(tokenizer, [PROMPT], [("Do you like cooking pasta?",)], FMT)
    assert same["input_ids"].shape[0] == CONTEXT_SEGMENTS + 1


def test_fresh_model_sees_the_sentence_transformers_cosine_of_reply_and_last_user_line(embedder) -> None:
    model, tokenizer = load_backbone("embedded:all-minilm-l6-v2", num_labels=1, seed=0, style="segments")
    assert model.context_segments == CONTEXT_SEGMENTS and model.segments == CONTEXT_SEGMENTS + 1
    replies = ["Pasta is my favourite thing to cook after a long flight.", "The stock market fell today."]
    batch = encode_segments(tokenizer, [PROMPT] * 2, [(r,) for r in replies], FMT)
    captured = {}
    model.head.register_forward_hook(lambda module, inputs, output: captured.setdefault("x", inputs[0]))
    with torch.no_grad():
        model(**batch)
    cosines = captured["x"][:, -CONTEXT_SEGMENTS:] / SIMILARITY_SCALE  # cos(reply, persona / earlier / last)
    vectors = embedder.encode([*replies, PROMPT[-1]["content"]], normalize_embeddings=True)
    expected = vectors[:2] @ vectors[2]
    assert np.allclose(cosines[:, 2].numpy(), expected, atol=1e-4)
    assert cosines[0, 2] > cosines[1, 2]  # the on-topic reply is the more relevant one


def test_a_frozen_encoder_encodes_each_distinct_segment_once_and_stays_in_eval_mode() -> None:
    from characterflywheel.reward.backbones import freeze_lower_layers

    model, tokenizer = load_backbone("embedded:all-minilm-l6-v2", num_labels=1, seed=0, style="segments")
    calls = []
    model.encoder.register_forward_hook(lambda module, inputs, output: calls.append(output.last_hidden_state.shape[0]))
    batch = encode_segments(tokenizer, [PROMPT] * 2, [("I love pasta.",), ("Only on Mars.",)], FMT)
    model.train()
    first = model(**batch).logits
    second = model(**batch).logits
    assert calls == [5, 5] and model.encoder.training  # trainable: encoded every time
    freeze_lower_layers(model, 0)
    model.train()
    assert not model.encoder.training and model.training  # a frozen feature extractor has no dropout
    calls.clear()
    first = model(**batch).logits
    more = encode_segments(tokenizer, [PROMPT] * 2, [("I love pasta.",), ("Something new.",)], FMT)
    model(**more)
    second = model(**batch).logits
    assert calls == [5, 1]  # only the new reply is encoded
    assert torch.equal(first, second)
    first.sum().backward()  # the head still learns
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_the_joint_pair_input_still_scores() -> None:
    from characterflywheel.reward.backbones import SequenceModel

    model, tokenizer = load_backbone("embedded:all-minilm-l6-v2", num_labels=1, seed=0, replies=2, style="pair")
    assert model.context_segments == 1 and model.head.in_features == 384 * 5 + 2
    scores = SequenceModel(model, tokenizer, FMT, "pair").logits([PROMPT] * 2, [("Yes!", "No."), ("No.", "Yes!")])
    assert scores.shape == (2, 1) and np.isfinite(scores).all() and scores[0, 0] != scores[1, 0]


def test_a_frozen_encoder_is_saved_as_its_head_and_the_backbone_s_name(tmp_path) -> None:
    from characterflywheel.reward.backbones import freeze_lower_layers, load_folder, save_folder

    model, tokenizer = load_backbone("embedded:all-minilm-l6-v2", num_labels=1, seed=0, style="segments")
    freeze_lower_layers(model, 0)
    torch.nn.init.normal_(model.head.weight)  # a "trained" head
    config = {"kind": "pointwise", "style": "segments", "input": FMT.to_dict(), "backbone": "embedded:all-minilm-l6-v2"}
    save_folder(tmp_path / "rm", model, tokenizer, config)
    saved = sum(path.stat().st_size for path in (tmp_path / "rm").glob("*.safetensors"))
    assert saved < 1e6  # the head alone: the encoder is ~90 MB
    loaded, _ = load_folder(tmp_path / "rm", "pointwise")
    batch = encode_segments(tokenizer, [PROMPT], [("I love pasta.",)], FMT)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded.model(**batch).logits, atol=1e-5)


def test_loaded_models_naming_one_frozen_backbone_share_its_encoder_and_encode_a_text_once(tmp_path) -> None:
    from characterflywheel.reward.backbones import freeze_lower_layers, load_folder, save_folder

    trained = {}
    for kind, seed in (("pointwise", 0), ("user_signal", 1)):
        model, tokenizer = load_backbone("embedded:all-minilm-l6-v2", num_labels=1, seed=seed, style="segments")
        freeze_lower_layers(model, 0)
        torch.nn.init.normal_(model.head.weight)
        save_folder(tmp_path / kind, model, tokenizer, {"kind": kind, "style": "segments", "input": FMT.to_dict(),
                                                         "backbone": "embedded:all-minilm-l6-v2"})
        trained[kind] = model.eval()
    first, _ = load_folder(tmp_path / "pointwise", "pointwise")
    second, _ = load_folder(tmp_path / "user_signal", "user_signal")
    assert first.model.encoder is second.model.encoder
    assert not any(p.requires_grad for p in first.model.parameters())  # a loaded model only scores
    calls = []
    hook = first.model.encoder.register_forward_hook(
        lambda module, inputs, output: calls.append(output.last_hidden_state.shape[0]))
    try:
        prompts, replies = [PROMPT] * 2, [("I love pasta.",), ("Only on Mars.",)]
        scores = {"pointwise": first.logits(prompts, replies), "user_signal": second.logits(prompts, replies)}
        first.logits(prompts, replies)
    finally:
        hook.remove()
    assert sum(calls) <= 5  # the prompt's 3 segments and 2 replies, encoded once for both models and calls
    batch = encode_segments(tokenizer, prompts, replies, FMT)
    for kind, model in trained.items():
        with torch.no_grad():
            assert np.allclose(model(**batch).logits.numpy(), scores[kind], atol=1e-5)
