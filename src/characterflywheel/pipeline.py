"""What a ``Config`` builds, for the flywheel and the CLI alike: the stage runner (with tracking
hooks), generation 0's recipe and the objects every stage takes from the config (sampling
parameters, generation backends, the gateway and its arms, the character cards, the A/B read-out).

Generation 0's recipe (``run_foundation``):

1. ``seed``     real human chit-chat (PyPI chitchat-dataset) written as traffic JSONL;
2. ``ingest``   seed traffic plus any user traffic files validated into Parquet, rejects quarantined;
3. ``generate`` replies from the policy to the opening user line of a few ingested conversations.

Each stage is resumable through ``RunDir``: re-running the pipeline skips what already finished.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from characterflywheel import artifacts
from characterflywheel.characters import CharacterCardError, load_characters
from characterflywheel.config import Config, ConfigError
from characterflywheel.data import read_conversations
from characterflywheel.data.chitchat import write_seed_traffic
from characterflywheel.data.ingest import ingest
from characterflywheel.data.jsonl import write_jsonl
from characterflywheel.deploy.gateway import Arm, Gateway
from characterflywheel.evaluate.engagement import analyze_traffic as read_out
from characterflywheel.models import SamplingParams, make_backend
from characterflywheel.models.loading import local_generation_precision
from characterflywheel.models.progress import show_bars
from characterflywheel.runs import RunDir, StageContext, StageHook, StageResult

StageNotice = Callable[[StageResult], None]
StageStart = Callable[[int, str], None]  # (generation, stage name), before the stage runs or is skipped


def stage_hooks(config: Config, run: RunDir) -> list[StageHook]:
    if not config.tracking.mlflow:
        return []
    from characterflywheel.tracking import MlflowStageLogger  # MLflow's import costs seconds: only when tracking

    return [MlflowStageLogger(run.root, config.tracking.experiment)]


class StageRunner:
    """Runs one generation's stages in order, with tracking hooks, collecting their results."""

    def __init__(self, config: Config, generation: int = 0, notify: StageNotice | None = None,
                 starting: StageStart | None = None) -> None:
        self.run = RunDir(config.run_dir())
        self.generation = generation
        self.hooks = stage_hooks(config, self.run)
        self.notify = notify
        self.starting = starting
        self.results: list[StageResult] = []

    def __call__(self, name: str, fn: Callable[[StageContext], None], **kwargs: Any) -> StageResult:
        if self.starting is not None:
            self.starting(self.generation, name)
        result = self.run.run_stage(self.generation, name, fn, on_complete=self.hooks, **kwargs)
        self.results.append(result)
        if self.notify is not None:
            self.notify(result)
        return result


def seed_stage(config: Config) -> Callable[[StageContext], None]:
    def run(context: StageContext) -> None:
        limit = config.data.seed_conversations or None
        written = write_seed_traffic(context.out_dir / artifacts.TRAFFIC, limit=limit)
        context.log_metrics({"conversations": written})

    return run


def ingest_stage(context: StageContext) -> None:
    report = ingest(list(context.inputs.values()), context.out_dir, progress=show_bars(True))
    context.log_metrics({"read": report.read, "accepted": report.accepted, "quarantined": report.quarantined})


def opening_prompts(dataset: Path, count: int, seed: int) -> list[list[dict[str, str]]]:
    """The system prompt (if any) and first user line of ``count`` randomly chosen conversations."""
    openings = []
    for conversation in read_conversations(dataset):
        messages = conversation.messages
        head = [m for m in messages[:1] if m.role == "system"]
        first_user = next(m for m in messages if m.role == "user")
        openings.append([{"role": m.role, "content": m.content} for m in [*head, first_user]])
    random.Random(seed).shuffle(openings)
    return openings[:count]


def generate_stage(config: Config) -> Callable[[StageContext], None]:
    def run(context: StageContext) -> None:
        prompts = opening_prompts(context.inputs["traffic"], config.demo.prompts, config.seed)
        backend = make_backend(**backend_options(config))
        replies = backend.chat(prompts, sampling_params(config), progress=True)
        write_jsonl(context.out_dir / artifacts.REPLIES,
                    ({"messages": messages, "replies": candidates} for messages, candidates in zip(prompts, replies)))
        context.log_metrics({"prompts": len(prompts)})

    return run


def sampling_params(config: Config, **changes: Any) -> Any:
    """The ``SamplingParams`` of the ``[generation]`` section (seeded with ``config.seed``), with ``changes``:
    the one place a stage's sampling is built from the config."""
    gen = config.generation
    values = {"max_new_tokens": gen.max_new_tokens, "temperature": gen.temperature, "top_p": gen.top_p,
              "seed": config.seed} | changes
    return SamplingParams(**values)


def backend_options(config: Config) -> dict[str, Any]:
    """``make_backend`` keyword arguments for the configured generation backend."""
    gen = config.generation
    options: dict[str, Any] = {"kind": gen.backend, "model": config.model.policy}
    if gen.backend == "openai":
        options.update(
            base_url=gen.base_url,
            api_key=os.environ.get(gen.api_key_env, "EMPTY"),
            served_model=gen.served_model or config.model.policy,
            forward_seed=gen.forward_seed,
        )
    else:
        options["batch_size"] = gen.batch_size
    if gen.backend == "fast":
        precision = local_generation_precision(gen.dtype)
        options["dtype"] = precision.dtype
        if precision.int8:
            options["int8"] = True
    return options


def build_arms(config: Config) -> list[Any]:
    """The configured A/B arms, one backend per distinct model folder, shared by the arms serving it."""
    backends: dict[str, Any] = {}
    base = sampling_params(config, seed=None)  # each request draws its own
    arms = []
    for arm in config.serve.arms:
        model = arm.model or config.model.policy
        key = f"{arm.base_url}|{arm.served_model}|{model}"
        if key not in backends:
            if arm.base_url:  # this arm is served elsewhere (a team's vLLM), whatever [generation] says
                options = {"kind": "openai", "model": model, "base_url": arm.base_url,
                           "api_key": os.environ.get(config.generation.api_key_env, "EMPTY"),
                           "served_model": arm.served_model or config.generation.served_model or model,
                           "forward_seed": config.generation.forward_seed}
            else:
                options = backend_options(config) | {"model": model}
                if config.generation.backend != "openai":
                    options["batch_size"] = config.serve.batch_size
            backends[key] = make_backend(**options)
        sampling = base if arm.temperature is None else replace(base, temperature=arm.temperature)
        arms.append(Arm(arm.name, arm.model_version or arm.name, backends[key], arm.weight, sampling))
    return arms


def characters_for(config: Config) -> list[Any]:
    """The run's character cards: the shipped ones with the team's (``characters.cards``) added or
    overriding by id; the one place a stage with a config gets its cards from. A bad card file is a
    ConfigError naming the key, the file, the card and the field."""
    try:
        return load_characters(extra=config.characters.cards or None)
    except CharacterCardError as error:
        raise ConfigError(f"characters.cards: {error}") from None


def build_gateway(config: Config, log_dir: Path) -> Any:
    """The gateway the config describes: its arms, the run's character cards, the batching settings."""
    prompts = {character.id: character.system_prompt() for character in characters_for(config)}
    return Gateway(build_arms(config), log_dir, prompts, batch_size=config.serve.batch_size,
                   max_wait_ms=config.serve.max_wait_ms, continuous_batching=config.serve.continuous_batching)


def analyze_traffic(config: Config, dataset: Path, out_dir: Path, pre_period: Path | None = None) -> Any:
    """``evaluate.engagement.analyze_traffic`` with the config's control arm, arm weights, bootstrap and cards."""
    return read_out(dataset, out_dir, control_arm=config.ab.control_arm, bootstrap=config.ab.bootstrap,
                    seed=config.seed, arm_weights={arm.name: arm.weight for arm in config.serve.arms},
                    pre_period=pre_period, characters=characters_for(config))


def seed_and_ingest(config: Config, stage: StageRunner, traffic: Sequence[Path] = ()) -> StageResult:
    """Generation 0's data: the seed conversations, then ingest of them with the config's traffic
    (``data.traffic``) and ``traffic``; returns the ingest stage's result."""
    seeded = stage("seed", seed_stage(config), config_hash=config.section_hash("data"),
                   params={"seed_conversations": config.data.seed_conversations})
    extra = [Path(p) for p in [*config.data.traffic, *traffic]]
    inputs = {"seed": seeded.out_dir / artifacts.TRAFFIC} | {f"traffic_{i}": p for i, p in enumerate(extra)}
    return stage("ingest", ingest_stage, inputs=inputs)


def run_foundation(config: Config, traffic: Sequence[Path] = (), notify: StageNotice | None = None,
                   stage: StageRunner | None = None) -> list[StageResult]:
    """Generation 0 of the foundation recipe; returns each stage's result (skipped or run)."""
    stage = stage or StageRunner(config, 0, notify)
    ingested = seed_and_ingest(config, stage, traffic)
    stage(
        "generate",
        generate_stage(config),
        inputs={"traffic": ingested.out_dir / artifacts.CONVERSATIONS},
        config_hash=config.section_hash("model", "generation", "demo", "seed"),
        params={"model": config.model.policy, **config.generation.model_dump(), "prompts": config.demo.prompts},
    )
    return stage.results
