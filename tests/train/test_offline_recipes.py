"""SFT and DPO on the real embedded SmolLM2 at tiny scale: each moves the model the right way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import CHATS, PAIRS, SYSTEM, reply_logprob
from transformers import AutoModelForCausalLM, AutoTokenizer

from characterflywheel.models import EMBEDDED_POLICY, load_policy
from characterflywheel.train.settings import TrainConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def parent():
    return load_policy(EMBEDDED_POLICY)


def _load_child(folder: Path):
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    return model, AutoTokenizer.from_pretrained(folder, local_files_only=True)


def _sft_loglik(model, tokenizer) -> float:
    return sum(reply_logprob(model, tokenizer, [SYSTEM, {"role": "user", "content": u}], a) for u, a in CHATS)


def _dpo_margin(model, tokenizer) -> float:
    return sum(
        reply_logprob(model, tokenizer, [SYSTEM, {"role": "user", "content": u}], c)
        - reply_logprob(model, tokenizer, [SYSTEM, {"role": "user", "content": u}], r)
        for u, c, r in PAIRS
    )


def test_sft_full_finetune_raises_target_likelihood(parent, sft_path: Path, tmp_path: Path) -> None:
    from characterflywheel.train.sft import run_sft

    settings = TrainConfig(sft_max_steps=3, sft_batch_size=4, sft_max_length=128, sft_learning_rate=1e-4, save_steps=50)
    metrics = run_sft(EMBEDDED_POLICY, sft_path, tmp_path / "child", settings, tmp_path / "work")

    assert metrics["steps"] == 3 and metrics["steps_run"] == 3 and metrics["examples"] == len(CHATS)
    assert metrics["loss_end"] < metrics["loss_start"]
    assert metrics["tokens_per_second"] > 0
    child = _load_child(tmp_path / "child")
    before, after = _sft_loglik(*parent), _sft_loglik(*child)
    assert after > before + 5.0, (before, after)
    for name in ("chat_template.jinja", "generation_config.json", "tokenizer.json", "model.safetensors"):
        assert (tmp_path / "child" / name).is_file(), name
    assert child[1].apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == parent[1].apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False
    )


def test_sft_lora_merged_child_loads_as_plain_model(parent, sft_path: Path, tmp_path: Path) -> None:
    from characterflywheel.train.sft import run_sft

    settings = TrainConfig(
        sft_max_steps=2, sft_batch_size=4, sft_max_length=128, sft_learning_rate=2e-3, lora=True, lora_r=8, save_steps=50
    )
    run_sft(EMBEDDED_POLICY, sft_path, tmp_path / "child", settings, tmp_path / "work")

    files = {path.name for path in (tmp_path / "child").iterdir()}
    assert "adapter_config.json" not in files and "model.safetensors" in files
    config = json.loads((tmp_path / "child" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    child_model, child_tokenizer = load_policy(str(tmp_path / "child"))  # the project's loader, as a plain model
    assert not any("lora" in name for name, _ in child_model.named_parameters())
    parent_weights = dict(parent[0].named_parameters())
    changed = [name for name, weight in child_model.named_parameters() if not torch.equal(weight, parent_weights[name])]
    assert any("q_proj" in name for name in changed) and not any("embed_tokens" in name for name in changed)
    assert _sft_loglik(child_model, child_tokenizer) > _sft_loglik(*parent)


def test_dpo_raises_chosen_over_rejected_margin(parent, prefs_path: Path, tmp_path: Path) -> None:
    from characterflywheel.train.dpo import run_dpo

    settings = TrainConfig(dpo_max_steps=3, dpo_batch_size=2, dpo_max_length=128, dpo_learning_rate=2e-5, save_steps=50)
    metrics = run_dpo(EMBEDDED_POLICY, prefs_path, tmp_path / "child", settings, tmp_path / "work")

    assert metrics["steps"] == 3
    assert metrics["reward_end"] > 0  # TRL's implicit reward margin, chosen minus rejected
    before, after = _dpo_margin(*parent), _dpo_margin(*_load_child(tmp_path / "child"))
    assert after > before + 1.0, (before, after)


def test_dpo_with_an_sft_loss_on_the_chosen_reply(parent, prefs_path: Path, tmp_path: Path) -> None:
    """``dpo_sft_loss_weight`` (RPO): the chosen reply's NLL joins DPO's loss, so the first step's loss
    is DPO's ln 2 plus that NLL, and the margin still rises."""
    from characterflywheel.train.dpo import run_dpo

    settings = TrainConfig(dpo_max_steps=3, dpo_batch_size=2, dpo_max_length=128, dpo_learning_rate=2e-5, save_steps=50,
                           dpo_sft_loss_weight=1.0)
    metrics = run_dpo(EMBEDDED_POLICY, prefs_path, tmp_path / "child", settings, tmp_path / "work")
    assert metrics["loss_start"] > 0.6932 + 0.5, metrics  # a chosen reply's mean NLL is well above 0.5 nats
    assert _dpo_margin(*_load_child(tmp_path / "child")) > _dpo_margin(*parent)


def test_sft_lora_adapter_children_chain_as_megabytes(parent, sft_path: Path, tmp_path: Path) -> None:
    """``lora_save = "adapter"``: each child is its adapter on its parent's folder (MBs, not a model copy);
    the project's loader merges the chain, and a child of a child trains on top of it."""
    from characterflywheel.models import is_adapter_folder
    from characterflywheel.train.sft import run_sft

    settings = TrainConfig(sft_max_steps=2, sft_batch_size=4, sft_max_length=128, sft_learning_rate=2e-3, lora=True,
                           lora_r=8, save_steps=50, lora_save="adapter")
    run_sft(EMBEDDED_POLICY, sft_path, tmp_path / "gen1", settings, tmp_path / "work1")
    run_sft(str(tmp_path / "gen1"), sft_path, tmp_path / "gen2", settings, tmp_path / "work2")
    for child in ("gen1", "gen2"):
        folder = tmp_path / child
        assert is_adapter_folder(folder)
        weights = sum(path.stat().st_size for path in folder.glob("*.safetensors"))
        assert weights < 20e6  # the base model's weights are ~540 MB in fp32
    # gen1 is gen2's sibling: named relatively, so the folder holding both can be renamed (a stage's .partial)
    assert json.loads((tmp_path / "gen2" / "adapter_config.json").read_text())["base_model_name_or_path"] == "../gen1"
    tmp_path.rename(tmp_path.with_name(tmp_path.name + "-moved"))
    tmp_path = tmp_path.with_name(tmp_path.name + "-moved")
    first, first_tokenizer = load_policy(str(tmp_path / "gen1"))
    second, second_tokenizer = load_policy(str(tmp_path / "gen2"))
    assert not any("lora" in name for name, _ in second.named_parameters())
    assert _sft_loglik(first, first_tokenizer) > _sft_loglik(*parent)
    assert _sft_loglik(second, second_tokenizer) > _sft_loglik(first, first_tokenizer)
