import tomllib

import pytest

from characterflywheel.config import PRESETS, Config, ConfigError, load_config, parse_override, render_commented


def test_defaults_validate_and_presets_differ() -> None:
    default = load_config()
    tiny = load_config(preset="tiny")
    demo = load_config(preset="demo")
    assert isinstance(default, Config)
    assert tiny.data.seed_conversations < demo.data.seed_conversations
    assert tiny.generation.max_new_tokens < demo.generation.max_new_tokens
    assert set(PRESETS) == {"tiny", "demo"}


def test_file_then_overrides_layer_over_preset(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('name = "mine"\n[generation]\ntemperature = 0.3\nbatch_size = 4\n')
    cfg = load_config(path, "tiny", ["generation.batch_size=2", "data.traffic=['a.jsonl']", "model.policy=/x/y"])
    assert cfg.name == "mine"
    assert cfg.generation.temperature == 0.3
    assert cfg.generation.batch_size == 2
    assert cfg.generation.max_new_tokens == PRESETS["tiny"]["generation"]["max_new_tokens"]
    assert cfg.data.traffic == ["a.jsonl"]
    assert cfg.model.policy == "/x/y"


def test_bad_value_is_one_line_naming_file_and_key(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[generation]\ntemperature = -1\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message and "generation.temperature" in message and "-1" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[generation]\nbackend = 'llamafile'\n", "generation.backend"),
        ("[generation]\nsurprise = 1\n", "generation.surprise: unknown key"),
        ("[data]\nseed_conversations = 'many'\n", "data.seed_conversations"),
    ],
)
def test_bad_keys_are_named(tmp_path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path)


def test_bad_override_and_missing_file_and_bad_toml(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"--set.*generation\.top_p"):
        load_config(overrides=["generation.top_p=7"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("generation.top_p")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[generation\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="unknown, choose one of tiny, demo"):
        load_config(preset="huge")


def test_override_values_are_toml_literals_or_strings() -> None:
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("a=true") == {"a": True}
    assert parse_override("name=my-run") == {"name": "my-run"}


def test_commented_default_round_trips(tmp_path) -> None:
    text = render_commented(load_config(preset="demo"))
    assert "# Sampling temperature" in text
    path = tmp_path / "flywheel.toml"
    path.write_text(text)
    assert tomllib.loads(text)["generation"]["temperature"] == 0.8
    assert load_config(path) == load_config(preset="demo")
