"""The gateway serves the team's cards and user-created characters (a system message, no card) and
logs each under its own id; the logged traffic is then held to those characters' rules."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import openai
import pytest

from characterflywheel import artifacts, pipeline
from characterflywheel.characters.from_system import user_character_id
from characterflywheel.config import load_config
from characterflywheel.deploy.gateway import PUBLIC_MODEL, Arm, Gateway
from characterflywheel.deploy.traffic_log import read_events
from characterflywheel.evaluate.engagement import violations_for
from characterflywheel.models import SamplingParams
from characterflywheel.sample.stage import card_rule_check

PIRATE = "You are Ann, a pirate. Never use emoji. Always start with 'Ahoy'."


class Recorder:
    """Replies ``<last user line> 😀`` and remembers every conversation it was sent."""

    name = "recorder"

    def __init__(self) -> None:
        self.conversations: list[list[dict[str, str]]] = []
        self._lock = threading.Lock()

    def chat(self, conversations: Sequence[Sequence[dict[str, str]]], params: SamplingParams,
             progress: bool = False) -> list[list[str]]:
        with self._lock:
            self.conversations.extend([dict(m) for m in c] for c in conversations)
        return [[f"{c[-1]['content']} 😀"] * params.n for c in conversations]


def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="x", timeout=30, max_retries=0)


def chat(api: openai.OpenAI, messages: list[dict[str, str]], **metadata: str):
    return api.chat.completions.create(model=PUBLIC_MODEL, user="u-1", messages=messages,
                                       metadata=metadata or None)


def exchanges(log_dir: Path) -> list[dict]:
    events, _ = read_events(log_dir / artifacts.EVENTS)
    return [event for event in events if event["event"] == "exchange"]


def test_the_gateway_of_a_config_serves_the_team_cards(tmp_path: Path, serve, monkeypatch) -> None:
    cards = tmp_path / "team_cards.json"
    cards.write_text(json.dumps([{"id": "team-barista", "name": "Bea", "persona": "A barista. Loves beans.",
                                  "greeting": "Hi!", "instructions": [{"type": "no_emoji"}]}]), encoding="utf-8")
    backend = Recorder()
    monkeypatch.setattr(pipeline, "build_arms", lambda config: [Arm("only", "gen-0", backend)])
    config = load_config(preset="tiny", overrides=[f"characters.cards={json.dumps(str(cards))}"])
    gateway = pipeline.build_gateway(config, tmp_path / "logs")
    with serve(gateway) as base_url:
        api = client(base_url)
        chat(api, [{"role": "user", "content": "a latte?"}], character_id="team-barista")
        chat(api, [{"role": "user", "content": "ahoy"}], character_id="captain-saltbeard")  # shipped ones still there
    team_prompt, shipped_prompt = (c[0]["content"] for c in backend.conversations)
    assert team_prompt.startswith("You are Bea. A barista.") and "- Never use emoji." in team_prompt
    assert shipped_prompt.startswith("You are Captain Saltbeard.")
    assert [e["character_id"] for e in exchanges(tmp_path / "logs")] == ["team-barista", "captain-saltbeard"]


def test_a_system_message_only_request_is_a_user_created_character(make_gateway, serve, tmp_path: Path) -> None:
    backend = Recorder()
    own = [{"role": "system", "content": PIRATE}, {"role": "user", "content": "hello"}]
    with serve(make_gateway([Arm("only", "gen-0", backend)])) as base_url:
        api = client(base_url)
        chat(api, own)  # no metadata at all
        chat(api, own, character_id="my-pirate")  # an id the gateway has no card for, with a persona: kept
        chat(api, [{"role": "user", "content": "plain"}])  # no persona at all: still "none"
        with pytest.raises(openai.BadRequestError) as refused:  # an unknown id and nothing to play it from
            chat(api, [{"role": "user", "content": "hi"}], character_id="nobody")
        assert refused.value.body["param"] == "metadata.character_id"
        assert "unknown character 'nobody'" in refused.value.body["message"]
    derived = user_character_id(PIRATE)
    logged = exchanges(tmp_path / "logs")
    assert [e["character_id"] for e in logged] == [derived, "my-pirate", "none"]
    assert [e["conversation_id"] for e in logged] == [f"u-1:{derived}", "u-1:my-pirate", "u-1:none"]
    assert backend.conversations[0][0] == {"role": "system", "content": PIRATE}  # the client's persona is kept

    # Folded into traffic and read back, the conversation is held to the rules its system message states.
    traffic = [json.loads(line) for line in (tmp_path / "logs" / artifacts.TRAFFIC).read_text().splitlines()]
    record = next(r for r in traffic if r["character_id"] == derived)
    assert record["messages"][-1]["content"] == "hello 😀"  # breaks both: an emoji, and no "Ahoy" opening
    assert violations_for({})(record) == (2, 2)
    prompt = {"prompt_id": "p", "character_id": derived, "prompt": record["messages"][:-1]}
    broken_rules = card_rule_check()
    assert broken_rules(prompt, "hello 😀") == 2
    assert broken_rules(prompt, "Ahoy, hello!") == 0


def test_a_card_id_still_replaces_the_clients_system_message(make_gateway, serve, tmp_path: Path) -> None:
    backend = Recorder()
    with serve(make_gateway([Arm("only", "gen-0", backend)])) as base_url:
        chat(client(base_url), [{"role": "system", "content": PIRATE}, {"role": "user", "content": "bread?"}],
             character_id="bob")
    assert backend.conversations[0][0] == {"role": "system", "content": "You are Bob, a baker."}
    assert exchanges(tmp_path / "logs")[0]["character_id"] == "bob"


def test_an_arm_can_be_served_by_an_openai_compatible_server(make_gateway, serve, tmp_path: Path) -> None:
    """``serve.arms[].base_url``: the arm's replies come from that server (here another gateway, which
    speaks the same API; tests/models/test_vllm.py does it against a real vLLM), the others stay local."""
    remote, local = Recorder(), Recorder()
    upstream = Gateway([Arm("upstream", "gen-x", remote)], tmp_path / "upstream-logs", max_wait_ms=5.0)
    with serve(upstream) as upstream_url:
        config = load_config(preset="tiny", overrides=[
            "model.policy=embedded:smollm2-135m-instruct", "serve.arms=[]",
            f'serve.arms=[{{name = "champion", base_url = "{upstream_url}", served_model = "{PUBLIC_MODEL}", '
            f'model_version = "gen-1"}}]'])
        arms = pipeline.build_arms(config)
        assert [(arm.name, arm.model_version, arm.backend.name) for arm in arms] == [("champion", "gen-1", "openai")]
        arms.append(Arm("challenger", "gen-2", local))
        with serve(make_gateway(arms)) as base_url:
            api = client(base_url)
            for user in range(8):
                api.chat.completions.create(model=PUBLIC_MODEL, user=f"user-{user}", metadata={"character_id": "ann"},
                                            messages=[{"role": "user", "content": f"hello from {user}"}])
    upstream.close()
    logged = exchanges(tmp_path / "logs")
    served_by = {e["arm"] for e in logged}
    assert served_by == {"champion", "challenger"}  # 8 users split by the sticky hash reach both arms
    for event in logged:  # each reply came from its arm's backend: the upstream one through its own gateway
        backend = remote if event["arm"] == "champion" else local
        asked = [c[-1]["content"] for c in backend.conversations]
        assert event["messages"][-1]["content"] in asked and event["reply"] == f"{event['messages'][-1]['content']} 😀"
        assert event["model_version"] == ("gen-1" if event["arm"] == "champion" else "gen-2")
    assert remote.conversations[0][0]["content"].startswith("You are Ann")  # the card's system turn went upstream
