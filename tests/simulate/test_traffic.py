"""Simulated users through the real gateway over HTTP: the log ingests, reconciles, and a better arm wins."""

from collections.abc import Mapping, Sequence
from pathlib import Path

from characterflywheel.characters import load_characters
from characterflywheel.data import ingest, read_conversations
from characterflywheel.demo import seed_scripts
from characterflywheel.deploy.gateway import Arm, Gateway
from characterflywheel.deploy.serving import running_gateway
from characterflywheel.evaluate.ab import analyze_ab
from characterflywheel.models import SamplingParams
from characterflywheel.simulate.landscape import Landscape
from characterflywheel.simulate.traffic import SessionDriver, simulate_days
from characterflywheel.simulate.users import make_users


class ScriptedBackend:
    """Engaging replies (echo the user's topic and ask back) or evasive ones, by temperature."""

    name = "scripted"

    def chat(self, conversations: Sequence[Sequence[Mapping[str, str]]], params: SamplingParams,
             progress: bool = False) -> list[list[str]]:
        replies = []
        for messages in conversations:
            last = messages[-1]["content"]
            if params.temperature > 0.5:
                replies.append(f"Oh, {last.rstrip('.!?')}? Tell me more, what happened next?")
            else:
                replies.append("I'm not sure.")
        return [[reply] * params.n for reply in replies]


def test_simulated_days_through_the_gateway(tmp_path: Path, embedder) -> None:
    characters = {c.id: c for c in load_characters()}
    users = make_users(seed_scripts(limit=300), 24, sorted(characters), seed=1)
    backend = ScriptedBackend()
    arms = [Arm("control", "gen-0", backend, sampling=SamplingParams(temperature=0.2)),
            Arm("engaging", "gen-1", backend, sampling=SamplingParams(temperature=0.9))]
    gateway = Gateway(arms, tmp_path, {cid: c.system_prompt() for cid, c in characters.items()}, batch_size=8)
    landscape = Landscape(embedder, seed=1)
    with running_gateway(gateway) as served:
        driver = SessionDriver(served.base_url, landscape, {cid: c.persona for cid, c in characters.items()},
                               seed=1, max_turns=4)
        report = simulate_days(driver, users, days=3, concurrency=8)
    # day 0 has every user; later days only those who came back
    assert sum(s.day == 0 for s in report.sessions) == len(users)
    assert report.requests == sum(s.turns for s in report.sessions) == sum(gateway.served.values())

    traffic = tmp_path / "traffic.jsonl"
    assert traffic.is_file(), "the gateway folds its log on shutdown"
    ingested = ingest([traffic], tmp_path / "ingested", progress=False)
    assert ingested.read == ingested.accepted == len(report.sessions) and ingested.quarantined == 0
    sessions = [c.to_record() for c in read_conversations(tmp_path / "ingested" / "conversations.parquet")]
    assert sum(m["role"] == "assistant" for s in sessions for m in s["messages"]) == report.requests
    signals = [m.get("signals") for s in sessions for m in s["messages"] if m["role"] == "assistant"]
    assert all(sig is not None and sig["continued"] is not None for sig in signals)
    # sessions are stamped with simulated days, so breadth can be measured
    assert len({s["started_at"][:10] for s in sessions}) >= 2

    result = analyze_ab(sessions, control_arm="control", bootstrap=200, seed=0)
    arms_summary = result.to_dict()["arms"]
    assert arms_summary["engaging"]["depth"] > arms_summary["control"]["depth"]
    assert result.to_dict()["challengers"]["engaging"]["depth"]["lift"] > 0.2
