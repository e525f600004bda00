"""The demo's world wiring: the only place outside ``simulate/`` (and the CLI) that may touch it.

Generation 0 of the demo, after the foundation stages (seed, ingest, generate):

4. ``headroom``  the base model's k samples on the hidden landscape: can the world be climbed?
5. ``simulate``  the gateway serves the A/B arms; simulated users chat with them over HTTP for a
                 few days; the gateway's log is folded into traffic;
6. ``traffic``   that log ingested like any production traffic (quarantine, reconciliation);
7. ``ab``        the A/B read-out: engagement breadth and depth per arm, lifts with CIs, guardrails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from characterflywheel import artifacts
from characterflywheel.characters import Character, load_characters
from characterflywheel.config import Config
from characterflywheel.data import ingest, iter_chitchat_conversations
from characterflywheel.data.jsonl import write_json
from characterflywheel.deploy.serving import running_gateway
from characterflywheel.models import load_embedder, make_backend
from characterflywheel.pipeline import (
    StageNotice,
    StageRunner,
    analyze_traffic,
    backend_options,
    build_gateway,
    run_foundation,
    sampling_params,
)
from characterflywheel.runs import StageContext, StageResult, release_freed_memory
from characterflywheel.simulate.annotators import AnnotatorPool, Guideline, make_annotators
from characterflywheel.simulate.headroom import measure_headroom
from characterflywheel.simulate.landscape import Landscape
from characterflywheel.simulate.traffic import SessionDriver, simulate_days
from characterflywheel.simulate.users import SimUser, make_users
from characterflywheel.train import in_own_process


# Conversations kept out of every traffic window: their first lines are the fixed truth set on which
# the report scores every generation's model against the hidden landscape (never a training prompt).
TRUTH_SCRIPTS = 256
NEWCOMER_SEED_OFFSET = 7919


@dataclass
class World:
    landscape: Landscape
    users: list[SimUser]
    characters: dict[str, Character]


def truth_set(world: World, count: int) -> list[dict[str, Any]]:
    """``count`` single-turn prompts from conversations no window serves, each spoken by a simulated
    user (round robin) to that user's character: the same prompts for every model of a run."""
    scripts = seed_scripts()[-TRUTH_SCRIPTS:]
    prompts = []
    for index in range(min(count, len(scripts))):
        user = world.users[index % len(world.users)]
        character = world.characters[user.character_id]
        prompts.append({"prompt_id": f"truth-{index}", "user_id": user.user_id, "character_id": character.id,
                        "prompt": [{"role": "system", "content": character.system_prompt()},
                                   {"role": "user", "content": scripts[index][0]}]})
    return prompts


def seed_scripts(limit: int | None = None) -> list[list[str]]:
    """User lines of real two-speaker chit-chat conversations: what simulated users say."""
    scripts = []
    for conversation in iter_chitchat_conversations(limit=limit, two_speaker_only=True):
        lines = [m.content for m in conversation.messages if m.role == "user"]
        if len(lines) >= 2:
            scripts.append(lines)
    return scripts


def build_world(config: Config, users: int | None = None) -> World:
    characters = {character.id: character for character in load_characters()}
    count = users or config.world.users
    # The pool users are drawn from (it fixes their tastes and first scripts, as before), then the rest
    # of the dataset (about 3,460 scripts in all) for later sessions: 48 users have about 72 sessions
    # each, 36 windows of 2 days, before any conversation is replayed (see ``make_users``).
    scripts = seed_scripts(limit=max(400, count * 8))
    later = seed_scripts()[len(scripts):-TRUTH_SCRIPTS]  # the last ones are the truth set's, never served
    landscape = Landscape(load_embedder(config.model.embedder), seed=config.seed)
    population = make_users(scripts, count, sorted(characters), seed=config.seed, later_scripts=later)
    return World(landscape, population, characters)


def with_newcomers(config: Config, world: World, count: int) -> World:
    """``world`` with ``count`` more users who never came before: an independent draw from the same
    population (their own ids and tastes), for a window larger than the usual ones (the run's last,
    ``flywheel.final_window_scale``). Their first scripts may be lines earlier windows' users said;
    nothing trains on the last window."""
    scripts = seed_scripts(limit=max(400, count * 8))
    later = seed_scripts()[len(scripts):-TRUTH_SCRIPTS]
    # A seed of its own: ids (``sim-<seed>-<i>``) and tastes apart from the regular users'.
    newcomers = make_users(scripts, count, sorted(world.characters), seed=config.seed + NEWCOMER_SEED_OFFSET,
                           later_scripts=later)
    return World(world.landscape, [*world.users, *newcomers], world.characters)


def headroom_stage(config: Config, world: Callable[[], World]) -> Callable[[StageContext], None]:
    def run(context: StageContext) -> None:
        built = world()
        backend = make_backend(**backend_options(config))
        params = sampling_params(config, temperature=1.0, top_p=0.95, seed=None)
        result = measure_headroom(backend, built.landscape, built.users[: config.world.headroom_prompts],
                                  built.characters, k=config.world.headroom_k, params=params, seed=config.seed)
        write_json(context.out_dir / artifacts.HEADROOM, asdict(result))
        context.log_metrics({k: v for k, v in asdict(result).items() if isinstance(v, float)})

    return run


def serve_window(config: Config, arms: list[Any], out_dir: Path, generation: int, scale: float = 1.0,
                 world: World | None = None) -> dict[str, float]:
    """A flywheel generation's window: ``arms`` served to the world's users, ``scale`` times as many
    (the extra ones newcomers). Module-level so that a spawned process can run it; there it builds
    the world afresh, which gives the same users and landscape (both follow from the config's seed,
    and users carry nothing from one window to the next: ``SessionDriver.session_offset``)."""
    world = world or build_world(config)
    served = config.model_copy(update={"serve": config.serve.model_copy(update={"arms": arms})})
    extra = round(len(world.users) * (scale - 1.0))
    world = with_newcomers(config, world, extra) if extra > 0 else world
    return simulate_traffic(served, world, out_dir, generation=generation)


def simulate_traffic(config: Config, world: World, out_dir: Path, base_url: str | None = None,
                     generation: int | None = None) -> dict[str, float]:
    """Simulated users chat for ``world.days``; with no ``base_url`` a local gateway serves the arms
    and its traffic log lands in ``out_dir``. A flywheel ``generation`` gets its own days and ids, and
    its users' sessions take scripts after those of earlier generations' windows (no replays)."""
    personas = {cid: c.persona for cid, c in world.characters.items()}

    def drive(url: str) -> dict[str, float]:
        start, tag, offset = None, "", 0
        if generation is not None:
            start = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc) + dt.timedelta(days=generation * config.world.days)
            tag = f"g{generation}-"
            offset = generation * config.world.days  # at most one session a user a day
        driver = SessionDriver(url, world.landscape, personas, seed=config.seed, max_turns=config.world.max_turns,
                               start=start, tag=tag, session_offset=offset)
        return simulate_days(driver, world.users, config.world.days, config.world.concurrency).summary()

    if base_url is not None:
        summary = drive(base_url)
    else:
        gateway = build_gateway(config, out_dir)
        with running_gateway(gateway, config.serve.host, config.serve.port) as served:
            summary = drive(served.base_url)
        summary |= {"gateway_served": sum(gateway.served.values()),
                    **{f"gateway_{kind}_events": n for kind, n in gateway.log.written.items()}}
        del gateway, served
        # The app and the server may keep the arms' models in reference cycles: free them before the
        # next stage loads its own.
        release_freed_memory()
    write_json(out_dir / "simulation.json", summary)
    return summary


def simulate_stage(config: Config, world: Callable[[], World]) -> Callable[[StageContext], None]:
    def run(context: StageContext) -> None:
        context.log_metrics(simulate_traffic(config, world(), context.out_dir))

    return run


def traffic_stage(context: StageContext) -> None:
    report = ingest([context.inputs["traffic"]], context.out_dir, progress=False)
    context.log_metrics({"read": report.read, "accepted": report.accepted, "quarantined": report.quarantined})


def ab_stage(config: Config) -> Callable[[StageContext], None]:
    def run(context: StageContext) -> None:
        result = analyze_traffic(config, context.inputs["traffic"], context.out_dir)
        for arm, summary in result.to_dict()["arms"].items():
            context.log_metrics({f"{arm}.{key}": summary[key] for key in ("users", "sessions", "breadth", "depth")})

    return run


def run_demo(config: Config, traffic: tuple[Path, ...] = (), notify: StageNotice | None = None) -> list[StageResult]:
    """Foundation stages, then the world: headroom, simulated A/B traffic, its ingest and read-out."""
    stage = StageRunner(config, 0, notify)
    run_foundation(config, traffic, stage=stage)
    cached: dict[str, World] = {}

    def world() -> World:
        if "world" not in cached:
            cached["world"] = build_world(config)
        return cached["world"]

    world_hash = config.section_hash("model", "generation", "serve", "world", "seed")
    stage("headroom", headroom_stage(config, world), config_hash=world_hash)
    simulated = stage("simulate", simulate_stage(config, world), config_hash=world_hash)
    ingested = stage("traffic", traffic_stage, inputs={"traffic": simulated.out_dir / artifacts.TRAFFIC})
    stage("ab", ab_stage(config),
          inputs={"traffic": ingested.out_dir / artifacts.CONVERSATIONS}, config_hash=config.section_hash("ab", "seed"))
    return stage.results


class SimulatedEnvironment:
    """The flywheel's world in the demo: simulated users behind the gateway, simulated annotators,
    and the hidden landscape's verdict on replies (for the report's truth lines only)."""

    simulated = True

    def __init__(self, config: Config) -> None:
        self.config = config
        self._world: World | None = None
        self._pool: Any = None

    @property
    def world(self) -> World:
        if self._world is None:
            self._world = build_world(self.config)
        return self._world

    def fill_annotations(self, tasks: Any) -> list[Any]:
        if self._pool is None:
            guideline = Guideline(self.world.landscape, self.world.characters)
            self._pool = AnnotatorPool(guideline, make_annotators(self.config.world.annotators, seed=self.config.seed),
                                       seed=self.config.seed)
        return self._pool.annotate(list(tasks), per_task=self.config.world.annotators_per_task)

    def collect_traffic(self, config: Config, arms: list[Any], out_dir: Path, generation: int,
                        scale: float = 1.0) -> dict[str, float]:
        """One window, in a fresh process of its own with ``world.own_process`` (see ``serve_window``)."""
        if config.world.own_process:
            return in_own_process(serve_window, config, arms, out_dir, generation, scale)
        return serve_window(config, arms, out_dir, generation, scale, self.world)

    def truth_prompts(self, count: int) -> list[dict[str, Any]]:
        """The fixed truth set (``truth_set``): prompts no traffic window ever served."""
        return truth_set(self.world, count)

    def truth(self, prompts: list[dict[str, Any]], replies: list[str]) -> list[float]:
        users = {user.user_id: user for user in self.world.users}
        fallback = self.world.users[0]
        scores = []
        for prompt, reply in zip(prompts, replies):
            user = users.get(prompt.get("user_id"), fallback)
            character = self.world.characters.get(prompt.get("character_id") or "")
            history = [m for m in prompt["prompt"] if m["role"] != "system"]
            persona = character.persona if character else None
            scores.append(self.world.landscape.react(user.taste, history, reply, persona).p_continue)
        return scores
