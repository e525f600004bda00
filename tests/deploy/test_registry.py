"""The MLflow model registry with lineage: register, aliases, promote, one-call rollback, local paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from characterflywheel.deploy.registry import ModelRef, Registry, RegistryError
from characterflywheel.tracking import tracking_uri


def tiny_model(folder: Path, seed: int) -> Path:
    """A 1-layer Llama with hidden size 16, saved as an HF folder; ``seed`` changes its weights."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


GATES_PASSED = {"passed": True, "checks": [{"name": "win_rate_vs_parent", "value": 0.6, "threshold": 0.5,
                                            "passed": True, "reason": ""}]}
GATES_FAILED = {"passed": False, "checks": [{"name": "violation_rate", "value": 0.3, "threshold": 0.1,
                                             "passed": False, "reason": "violations rose"}],
                "reasons": ["violation_rate: violations rose"]}


@pytest.fixture(scope="module")
def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run directory (one MLflow database: creating one costs seconds) shared by this module's tests;
    each test registers under its own model name."""
    return tmp_path_factory.mktemp("registry") / "run"


@pytest.fixture(scope="module")
def populated(run_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, dict[str, str], Path]:
    """gen-0 (champion), gen-1 (child of gen-0, passed), gen-2 (child of gen-1, failed) in one registry."""
    tmp = tmp_path_factory.mktemp("models")
    root = run_root
    registry = Registry(root, model_name="demo-policy")
    versions = {
        "gen-0": registry.register(tiny_model(tmp / "m0", 0), generation=0, parent_version=None,
                                   lineage={"source": "embedded:tiny"}, metrics={}, gates={"passed": True}),
    }
    registry.set_alias("champion", versions["gen-0"])
    versions["gen-1"] = registry.register(
        tiny_model(tmp / "m1", 1), generation=1, parent_version="gen-0",
        lineage={"input_curated": "abc123", "config_hash": "cfg1"},
        metrics={"offline.win_rate_vs_parent": 0.6, "offline.if_rate": 0.7, "nan_one": float("nan")},
        gates=GATES_PASSED)
    registry.set_alias("challenger", versions["gen-1"])
    versions["gen-2"] = registry.register(tiny_model(tmp / "m2", 2), generation=2,
                                          parent_version=versions["gen-1"], lineage={}, metrics={"x": 1.0},
                                          gates=GATES_FAILED, config_hash="cfg2")
    return registry, versions, root


def test_versions_carry_lineage_metrics_and_gates(populated) -> None:
    registry, versions, root = populated
    assert len(set(versions.values())) == 3
    mv = registry.client.get_model_version("demo-policy", versions["gen-1"])
    assert mv.tags["generation"] == "1" and mv.tags["model_version"] == "gen-1"
    assert mv.tags["parent_version"] == versions["gen-0"] and mv.tags["parent_model_version"] == "gen-0"
    assert mv.tags["lineage.input_curated"] == "abc123" and mv.tags["config_hash"] == "cfg1"
    assert mv.tags["gates.passed"] == "true"
    run = registry.client.get_run(mv.run_id)
    assert run.data.metrics == {"offline.win_rate_vs_parent": 0.6, "offline.if_rate": 0.7}
    failed = registry.client.get_model_version("demo-policy", versions["gen-2"])
    assert failed.tags["gates.passed"] == "false" and failed.tags["config_hash"] == "cfg2"
    assert "violations rose" in json.loads(failed.tags["gates.reasons"])[0]
    assert "violations rose" in failed.description
    record = registry.record(versions["gen-2"])
    assert record["gates"] == GATES_FAILED and record["metrics"] == {"x": 1.0}
    # The registry lives in the run directory's MLflow database, beside the stage runs.
    assert registry.uri == tracking_uri(root) and (root / "mlflow.db").is_file()
    assert str(root.resolve()) in str(registry.local_path(versions["gen-0"]))


def test_lineage_walks_parents_to_the_root(populated) -> None:
    registry, versions, _ = populated
    ancestors = registry.lineage(versions["gen-2"])
    assert [ref.model_version for ref in ancestors] == ["gen-1", "gen-0"]
    assert [ref.version for ref in ancestors] == [versions["gen-1"], versions["gen-0"]]
    assert registry.lineage("gen-0") == []
    assert [ref.generation for ref in registry.versions()] == [0, 1, 2]


def test_register_again_updates_the_same_version(run_root: Path, tmp_path: Path) -> None:
    registry = Registry(run_root, model_name="again")
    first = registry.register(tiny_model(tmp_path / "m", 1), 1, None, metrics={"w": 0.4}, gates=GATES_FAILED)
    # A re-run gate stage: same weights (another folder), new gate result.
    again = registry.register(tiny_model(tmp_path / "m-again", 1), 1, None, metrics={"w": 0.6}, gates=GATES_PASSED)
    assert again == first and len(registry.versions()) == 1
    mv = registry.client.get_model_version("again", first)
    assert mv.tags["gates.passed"] == "true" and "gates passed" in mv.description
    assert registry.record(first)["metrics"] == {"w": 0.6}
    assert registry.client.get_run(mv.run_id).data.metrics == {"w": 0.6}
    # Different weights for the same generation are a new version.
    assert registry.register(tiny_model(tmp_path / "m-other", 9), 1, None) != first


def test_local_path_loads_with_transformers(populated, tmp_path: Path) -> None:
    registry, versions, _ = populated
    path = registry.local_path(versions["gen-1"])
    loaded = AutoModelForCausalLM.from_pretrained(path)
    original = AutoModelForCausalLM.from_pretrained(tiny_model(tmp_path / "fresh", 1))
    for (name, a), (_, b) in zip(loaded.state_dict().items(), original.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # Loaded from the registry's copy, not the training folder.
    assert "mlartifacts" in str(path)


def test_aliases_promote_and_one_call_rollback(run_root: Path, tmp_path: Path) -> None:
    registry = Registry(run_root, model_name="p")
    v0 = registry.register(tiny_model(tmp_path / "a", 0), 0, None)
    v1 = registry.register(tiny_model(tmp_path / "b", 1), 1, v0)
    v2 = registry.register(tiny_model(tmp_path / "c", 2), 2, v1)
    assert registry.champion() is None and registry.challenger() is None
    registry.set_alias("champion", v0)
    registry.set_alias("challenger", v1)
    champion, challenger = registry.champion(), registry.challenger()
    assert isinstance(champion, ModelRef) and (champion.version, champion.generation) == (v0, 0)
    assert challenger.model_version == "gen-1" and (challenger.path / "config.json").is_file()

    promoted = registry.promote()  # the challenger by default
    assert promoted.version == v1 and registry.champion().version == v1 and registry.challenger() is None
    assert registry.client.get_model_version("p", v1).tags["previous_champion"] == v0
    registry.promote(v2)
    assert registry.champion_history() == [v0, v1, v2]

    restored = registry.rollback()
    assert restored.version == v1 and registry.champion().version == v1
    assert registry.client.get_model_version("p", v2).tags["rolled_back"] == "true"
    # A fresh handle (another process, the CLI) sees the same state: history is in the registry.
    reopened = Registry(run_root, model_name="p")
    assert reopened.champion().version == v1 and reopened.champion_history() == [v0, v1]
    assert reopened.rollback().version == v0
    with pytest.raises(RegistryError, match="no previous champion"):
        reopened.rollback()
    log = json.loads(reopened.client.get_registered_model("p").tags["rollback_log"])
    assert log == [{"from": v2, "to": v1}, {"from": v1, "to": v0}]


def test_bad_input_is_one_clear_error(run_root: Path, tmp_path: Path) -> None:
    registry = Registry(run_root, model_name="bad-input")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="config.json missing"):
        registry.register(tmp_path / "empty", 0, None)
    with pytest.raises(RegistryError, match="no version or model_version 'gen-7'"):
        registry.set_alias("champion", "gen-7")
    # An unknown parent is kept by name; lineage stops there.
    v = registry.register(tiny_model(tmp_path / "m", 0), 1, "gen-0")
    mv = registry.client.get_model_version("bad-input", v)
    assert mv.tags["parent_version"] == "" and mv.tags["parent_model_version"] == "gen-0"
    assert registry.lineage(v) == []


def test_register_in_place_without_copying(run_root: Path, tmp_path: Path) -> None:
    registry = Registry(run_root, model_name="in-place", copy_models=False)
    folder = tiny_model(tmp_path / "m", 3)
    version = registry.register(folder, 0, None, metrics={"a": 0.5})
    assert registry.local_path(version) == folder.resolve()
    assert registry.record(version)["metrics"] == {"a": 0.5}
    assert registry.ref(version, resolve_path=False).path == folder.resolve()


@pytest.mark.slow
def test_registers_the_real_embedded_policy(run_root: Path) -> None:
    from characterflywheel.models import EMBEDDED_POLICY, load_policy, resolve_model

    registry = Registry(run_root, model_name="smol")
    version = registry.register(resolve_model(EMBEDDED_POLICY), 0, None, lineage={"source": EMBEDDED_POLICY})
    registry.set_alias("champion", version)
    path = registry.champion().path
    model, tokenizer = load_policy(str(path))
    ids = tokenizer("Hello", return_tensors="pt").input_ids
    assert model(ids).logits.shape[-1] == model.config.vocab_size
