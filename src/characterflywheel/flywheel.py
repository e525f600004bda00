"""The flywheel: generation after generation of the paper's loop, resumable at any stage.

Generation 0 (the starting point)::

    seed -> ingest            real chit-chat plus any team traffic, validated (quarantine)
    register                  the base policy becomes version 1, alias ``champion``
    deploy                    the champion serves a first window of traffic (simulated users or real ones)

Generation g >= 1, parent = the champion after generation g-1::

    curate     Phase I privacy/safety, Phase II diversity, Phase III stratification on g-1's traffic;
               a held-out split (by conversation) for evaluation
    annotate   pairwise and rating tasks on the parent's candidate replies, filled by annotators
    reward     pointwise, pairwise and user-signal models trained on all annotations so far
    sample     rejection sampling (best of k >= tau) from a pool of models -> SFT and preference sets;
               hard prompts by reward variance for online RL
    herd       the configured recipes (SFT -> DPO -> online RL ...) turn the parent into the child
    evaluate   child vs parent and vs the reference on held-out prompts: win rates (reward models and
               annotators), instruction following, violations, style artifacts, history bias
    gate       thresholds from the config; the child is registered with lineage; a passing child
               becomes ``challenger``
    deploy     champion and challenger serve A/B arms; the A/B read-out on engagement breadth and depth
               decides promotion; the logged traffic is generation g+1's input (near-policy data)

What the world is — simulated users and annotators, or a team's own — is an ``Environment``; this
module never imports the simulation (``demo.py`` supplies it, ``production.py`` a team's own world),
so the loop learns only from signals, annotations and its own models. ``truth`` is the one exception
the report needs: an environment that knows the hidden landscape may score replies on it, and those
figures only go to the report.

Every stage runs through ``RunDir``: a killed run re-run skips finished stages and training resumes
from its checkpoints in ``<stage>.work/``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from characterflywheel import artifacts
from characterflywheel.characters.from_system import conversation_card
from characterflywheel.characters.instructions import evaluate_replies
from characterflywheel.config import ArmConfig, Config
from characterflywheel.curate import consolidate
from characterflywheel.curate.annotate import generate_candidates, run_annotate
from characterflywheel.curate.records import read_prompt_records as read_curated_prompts
from characterflywheel.data import ingest, read_conversations
from characterflywheel.data.annotation import read_annotations
from characterflywheel.data.jsonl import read_jsonl, write_json, write_jsonl
from characterflywheel.data.records import read_prompts
from characterflywheel.deploy.decision import Decision, read_decision
from characterflywheel.deploy.registry import Registry
from characterflywheel.evaluate.ab import change, lift
from characterflywheel.evaluate.gates import apply_gates, read_gates
from characterflywheel.evaluate.offline import run_offline_evaluation
from characterflywheel.models import load_embedder, make_backend, resolve_model
from characterflywheel.pipeline import (
    StageNotice,
    StageRunner,
    StageStart,
    analyze_traffic,
    backend_options,
    characters_for,
    sampling_params,
    seed_and_ingest,
)
from characterflywheel.reward import load_judge, load_user_signal, train_reward_models
from characterflywheel.runs import StageContext, StageResult, content_hash
from characterflywheel.sample.stage import run_pre_herding_sampling
from characterflywheel.summary import write_generation_summary
from characterflywheel.train import run_herding, run_herding_in_own_process

Records = list[dict[str, Any]]
POLICY_DIR = "model"


class Environment(Protocol):
    """Where annotations and traffic come from (simulated world, or a team's own people and users).
    An environment may also offer ``enter_stage(generation, stage)`` (see ``tell_environment``)."""

    simulated: bool

    def fill_annotations(self, tasks: Sequence[Any]) -> list[Any]:
        """Annotations (``characterflywheel.data.annotation``) for the tasks."""
        ...

    def collect_traffic(self, config: Config, arms: list[ArmConfig], out_dir: Path, generation: int,
                        scale: float = 1.0) -> dict[str, float]:
        """Serve ``arms`` to users and leave their traffic log in ``out_dir/traffic.jsonl``; ``scale``
        times the usual traffic (the run's last window, ``flywheel.final_window_scale``)."""
        ...

    def truth(self, prompts: Records, replies: list[str]) -> list[float] | None:
        """Hidden-world P(continue) of each reply, for the report only; None outside a simulation.
        An environment with a hidden world may also offer ``truth_prompts(count) -> Records``: a fixed
        set of prompts no window serves, on which the evaluate stage scores every model (the report's
        truth line)."""
        ...


def tell_environment(env: Environment, context: StageContext) -> None:
    """Tell an environment that files work for people by generation and stage (the production one:
    ``enter_stage(generation, stage)``) which stage asks next; the annotate and the evaluate stage
    both ask for labels, each with its own tasks. Other environments need not know."""
    enter_stage = getattr(env, "enter_stage", None)
    if enter_stage is not None:
        enter_stage(context.generation, context.name)


def backend_for(config: Config, model: str | Path) -> Any:
    return make_backend(**(backend_options(config) | {"model": str(model)}))


@dataclass
class Lineage:
    """Who is champion going into a generation, and the models earlier generations produced."""

    champion: str
    champion_version: str
    history: list[str]


def lineage_before(config: Config, runner: StageRunner, generation: int) -> Lineage:
    """The champion after generation ``generation - 1``, read from its deploy decision."""
    base = str(resolve_model(config.model.policy))
    champion, version, history = base, "gen-0", [base]
    for earlier in range(1, generation):
        decision = read_decision(runner.run.stage_dir(earlier, "deploy") / artifacts.DECISION)
        if decision.challenger_model:
            history.append(decision.challenger_model)
        champion, version = decision.champion_model, decision.champion_version
    if generation > 1:
        registered = registry_for(config).champion()  # a `rollback` since moves the champion
        if registered is not None and registered.model_version != version:
            champion, version = str(registered.path), registered.model_version
    return Lineage(champion, version, history)


def registry_for(config: Config) -> Any:
    return Registry(config.run_dir(), model_name=f"{config.name}-policy",
                    copy_models=config.tracking.registry_copies_models)


# --------------------------------------------------------------------------- generation 0


HOLDOUT_ARM = "holdout"


def deploy_arms(config: Config, champion: tuple[str, str], challenger: tuple[str, str] | None,
                generation0: tuple[str, str]) -> list[ArmConfig]:
    """Champion, challenger (if a child passed its gates) and, with ``flywheel.holdout_weight``, the
    holdout arm that keeps serving generation 0 so every window measures the lift over it."""
    arms = [ArmConfig(name="champion", model=champion[0], model_version=champion[1])]
    if challenger is not None:
        arms.append(ArmConfig(name="challenger", model=challenger[0], model_version=challenger[1]))
    if config.flywheel.holdout_weight > 0:
        arms.append(ArmConfig(name=HOLDOUT_ARM, model=generation0[0], model_version=generation0[1],
                              weight=config.flywheel.holdout_weight))
    return arms


def deploy_stage(config: Config, env: Environment, generation: int, champion: tuple[str, str],
                 challenger: tuple[str, str] | None, generation0: tuple[str, str],
                 scale: float = 1.0, serve: bool = True, final: bool = False) -> Callable[[StageContext], None]:
    """Serve the arms, collect a window of traffic (``scale`` times the usual), ingest it, read out the
    A/B, decide promotion (the run's ``final`` window by ``final_promote_rule``). ``serve=False``: no
    window (nothing would read it), only the decision.
    The previous window's traffic (input ``pre_period``, the same users) gives the CUPED covariates.
    With a holdout arm, ``vs-generation0/ab.json`` reads every served model against generation 0."""

    def run(context: StageContext) -> None:
        if not serve:
            Decision(champion_model=champion[0], champion_version=champion[1],
                     reason="no window served: no challenger, no holdout arm and no later generation to read it",
                     ).write(context.out_dir / artifacts.DECISION)
            context.log_metrics({"window_served": 0.0})
            return
        tell_environment(env, context)
        arms = deploy_arms(config, champion, challenger, generation0)
        context.log_metrics(env.collect_traffic(config, arms, context.out_dir, generation, scale=scale))
        report = ingest([context.out_dir / artifacts.TRAFFIC], context.out_dir / "ingested", progress=False)
        context.log_metrics({"traffic_accepted": report.accepted, "traffic_quarantined": report.quarantined})
        traffic = context.out_dir / "ingested" / artifacts.CONVERSATIONS
        pre_period = context.inputs.get("pre_period")
        decision = Decision(champion_model=champion[0], champion_version=champion[1],
                            challenger_model=challenger[0] if challenger else None,
                            challenger_version=challenger[1] if challenger else None,
                            arms={arm.name: arm.model_version for arm in arms})
        seen = served_arms(traffic)  # a small window may route nobody to an arm
        if challenger is not None and {"champion", "challenger"} <= seen:
            result = analyze_traffic(ab_config(config, arms, "champion"), traffic, context.out_dir, pre_period=pre_period)
            rule = window_promote_rule(config, final)
            promoted, reason = promotion_decision(result.to_dict(), rule)
            if rule != config.flywheel.promote_rule:
                window = f"last window (x{scale:g})" if scale != 1 else "last window"
                reason = f"{window}, promote rule {rule}: {reason}"
            decision.promoted, decision.reason = promoted, reason
            if promoted:
                decision.champion_model, decision.champion_version = challenger
            context.log_metrics({"promoted": float(promoted)})
        elif challenger is not None:
            decision.reason = f"no A/B read-out: the window routed users only to {sorted(seen)}"
        if HOLDOUT_ARM in seen and len(seen) > 1:
            (context.out_dir / artifacts.VS_GENERATION0).mkdir(exist_ok=True)
            analyze_traffic(ab_config(config, arms, HOLDOUT_ARM), traffic, context.out_dir / artifacts.VS_GENERATION0,
                            pre_period=pre_period)
        decision.write(context.out_dir / artifacts.DECISION)

    return run


def served_arms(traffic: Path) -> set[str]:
    return {c.arm for c in read_conversations(traffic) if c.arm}


def ab_config(config: Config, arms: list[ArmConfig], control: str) -> Config:
    """``config`` reading out ``arms`` (their weights set the SRM test's split) against ``control``."""
    return config.model_copy(update={"ab": config.ab.model_copy(update={"control_arm": control}),
                                     "serve": config.serve.model_copy(update={"arms": arms})})


def window_promote_rule(config: Config, final: bool) -> str:
    """The promotion rule of a window: ``flywheel.promote_rule``, or ``flywheel.final_promote_rule`` in
    the run's last window when set. Unset by default: ``point`` in the scaled-up last window kept a
    worse child out in `five12` and a better one in `five13` (its point estimates were down on both
    metrics for both children), so the window's estimates are not yet a better last judge than the
    offline gates."""
    if final and config.flywheel.final_promote_rule is not None:
        return config.flywheel.final_promote_rule
    return config.flywheel.promote_rule


def promotion_decision(ab: dict[str, Any], rule: str) -> tuple[bool, str]:
    """Promote on engagement. ``ci``: the A/B verdict must be ship (a lift significantly positive,
    none negative, no guardrail breached). ``point``: no guardrail breached or significantly negative
    lift, breadth and depth not down and one of them up (for short demo windows with wide CIs).
    ``guardrail``: the child already passed its offline gates, so it ships unless the A/B says no-ship;
    for windows whose minimum detectable effect is far above what one generation can gain, where the
    other rules turn promotion into a coin flip and gains cannot add up across generations."""
    challenger = ab.get("challengers", {}).get("challenger", {})
    verdict = challenger.get("verdict", "inconclusive")
    reasons = "; ".join(challenger.get("reasons", []))
    verdict_and_reasons = f"A/B verdict {verdict}" + (f": {reasons}" if reasons else "")
    if rule == "ci" or verdict == "no-ship":
        return verdict == "ship", verdict_and_reasons
    if rule == "guardrail":
        return True, f"offline gates passed and the A/B found no harm ({verdict_and_reasons})"
    b, d = change(ab, "breadth"), change(ab, "depth")
    ok = b >= 0 and d >= 0 and (b > 0 or d > 0)
    shown = ", ".join(f"{metric} {value:+.1%}" if value is not None else f"{metric} n/a"
                      for metric, value in ((m, lift(ab, m)["value"]) for m in ("breadth", "depth")))
    return ok, f"point estimates: {shown} ({verdict_and_reasons})"


# --------------------------------------------------------------------------- generation g >= 1


CURATED = Path("stratify") / artifacts.STRATIFIED
CLEAN = Path("privacy") / artifacts.CLEAN
HELDOUT = "heldout.jsonl"


def curate_stage(config: Config) -> Callable[[StageContext], None]:
    """Phases I-III on the traffic, then a held-out split for evaluation: clean prompts from
    conversations that contributed nothing to the curated (training) set."""

    def run(context: StageContext) -> None:
        report = consolidate(context.inputs["traffic"], context.out_dir, config.curate,
                             embedder=load_embedder(config.model.embedder), progress=True, seed=config.seed,
                             cache_dir=config.run_dir() / "embedding-cache")
        curated = list(read_curated_prompts(context.out_dir / CURATED))
        clean = list(read_curated_prompts(context.out_dir / CLEAN))
        used = {record["conversation_id"] for record in curated}
        heldout = [r for r in clean if r["conversation_id"] not in used]
        if len(heldout) < config.evaluate.heldout_prompts:  # small traffic: fall back to unseen prompts
            seen = {record["prompt_id"] for record in curated}
            heldout = [r for r in clean if r["prompt_id"] not in seen]
        write_jsonl(context.out_dir / HELDOUT, heldout)
        context.log_metrics({**report.counts, "heldout": len(heldout)})

    return run


def annotate_stage(config: Config, env: Environment, parent: str) -> Callable[[StageContext], None]:
    """Pairwise and rating tasks over the logged reply and the parent's candidates, filled by the
    environment's annotators; earlier generations' annotations are kept (the reward models see all)."""

    def run(context: StageContext) -> None:
        tell_environment(env, context)
        settings = config.curate
        records = list(read_curated_prompts(context.inputs["curated"]))[: settings.annotation_prompts]
        candidates = generate_candidates(records, backend_for(config, parent),
                                         sampling_params(config, n=max(1, settings.policy_candidates),
                                                  temperature=config.sample.temperature, top_p=config.sample.top_p,
                                                  max_new_tokens=config.sample.max_new_tokens),
                                         progress=True)
        report = run_annotate(context.inputs["curated"], context.out_dir / "new", settings, candidates=candidates,
                              filler=env.fill_annotations, seed=config.seed)
        sources = [path for path in (context.inputs.get("previous"), context.out_dir / "new" / artifacts.ANNOTATIONS)
                   if path is not None and path.is_file()]
        total = write_jsonl(context.out_dir / artifacts.ANNOTATIONS,
                            (annotation for path in sources for annotation in read_annotations(path)))
        context.log_metrics({"tasks": report.tasks, "annotations": report.annotations, "annotations_total": total}
                            | {f"agreement_{k}": v for k, v in report.agreement.items() if isinstance(v, (int, float))})

    return run


SIGNAL_TURNS = "signal_turns.jsonl"


def reward_stage(config: Config) -> Callable[[StageContext], None]:
    """Pointwise and pairwise models on all annotations so far; the user-signal model on every turn
    logged so far (inputs ``prompts*``: each window's clean turns, with what the user did next)."""

    def run(context: StageContext) -> None:
        turns = context.out_dir / SIGNAL_TURNS
        with turns.open("w", encoding="utf-8") as out:
            for name in sorted(key for key in context.inputs if key.startswith("prompts")):
                out.write(context.inputs[name].read_text(encoding="utf-8"))
        metrics = train_reward_models(context.inputs["annotations"], turns, context.out_dir,
                                      config.reward, work_dir=context.work_dir, progress=True)
        context.log_metrics(flat_numbers(metrics))

    return run


def judge_from(config: Config, reward_dir: Path) -> Any:
    return load_judge(reward_dir, config.reward.pairwise_weight)


def sample_stage(config: Config, lineage: Lineage, parent_win_rate: float | None,
                 earlier: Sequence[tuple[int, Path]] = ()) -> Callable[[StageContext], None]:
    """Rejection sampling on the curated prompts, plus (``sample.replay``) the rows earlier
    generations accepted, re-scored by this generation's reward models."""

    def run(context: StageContext) -> None:
        reward_dir = context.inputs["reward"]
        pool = [lineage.champion, *[m for m in reversed(lineage.history) if m != lineage.champion]]
        metrics = run_pre_herding_sampling(
            context.inputs["curated"], pool[: config.flywheel.pool_size], judge_from(config, reward_dir),
            load_user_signal(reward_dir / "user_signal"), lambda model: backend_for(config, model),
            context.out_dir, config.sample, parent_win_rate=parent_win_rate, progress=True,
            replay=list(earlier) if config.sample.replay else [], characters=characters_for(config))
        context.log_metrics(flat_numbers(metrics))

    return run


def rl_reward(config: Config, reward_dir: Path) -> Callable[[list[Any], list[str]], list[float]]:
    """The online-RL reward: the pointwise(+pairwise) judge. ``user_signal_thumbs`` exists only for
    the reward-hacking experiment (paper 7.4): RL on the predicted thumbs-up, which the paper warns
    against and which the training recipes refuse unless it is asked for by name here."""
    if config.flywheel.rl_reward == "judge":
        return judge_from(config, reward_dir).as_reward_fn()
    user_signal = load_user_signal(reward_dir / "user_signal")

    def thumbs_up_reward(prompts: list[Any], completions: list[str]) -> list[float]:
        return [float(p) for p in user_signal.predict(prompts, completions)[:, 1]]

    return thumbs_up_reward


@dataclass
class RewardFromModels:
    """``rl_reward`` as a picklable callable that loads the reward models on its first call: herding
    may run in a process of its own, and a closure cannot be sent there."""

    config: Config
    reward_dir: Path

    def __call__(self, prompts: list[Any], completions: list[str]) -> list[float]:
        if "_reward" not in self.__dict__:
            self._reward = rl_reward(self.config, self.reward_dir)
        return self._reward(prompts, completions)


def herd_stage(config: Config, parent: str) -> Callable[[StageContext], None]:
    def run(context: StageContext) -> None:
        sampled = context.inputs["sample"]
        data = {"sft": sampled / artifacts.SFT, "preferences": sampled / artifacts.PREFERENCES,
                "prompts": sampled / artifacts.HARD_PROMPTS}
        online = {"online_dpo", "grpo"} & set(config.train.recipes)  # only online RL needs the reward models loaded
        herd = run_herding_in_own_process if config.train.own_process else run_herding
        metrics = herd(parent, list(config.train.recipes), data, context.out_dir, config.train, context.work_dir,
                       reward_fn=RewardFromModels(config, context.inputs["reward"]) if online else None, progress=True)
        context.log_metrics(flat_numbers(metrics))

    return run


def evaluate_stage(config: Config, env: Environment, parent: str, reference: str) -> Callable[[StageContext], None]:
    """Held-out offline evaluation (replies cached in the stage folder), plus the hidden truth when
    the environment has one: the report's view of the proxy (reward) against the truth."""

    def run(context: StageContext) -> None:
        tell_environment(env, context)
        reward_dir = context.inputs["reward"]
        judge = judge_from(config, reward_dir)
        generation0 = str(resolve_model(config.model.policy))
        scored = [generation0] if hasattr(env, "truth_prompts") else []  # the truth set scores generation 0 too
        backends = dict.fromkeys([str(context.inputs["child"]), parent, reference, *scored])
        for model in backends:
            backends[model] = backend_for(config, model)
        report = run_offline_evaluation(
            context.inputs["heldout"], context.out_dir, backends[str(context.inputs["child"])], backends[parent],
            judge, config.evaluate, reference_backend=backends[reference], annotator_filler=env.fill_annotations,
            characters=characters_for(config), user_signal=load_user_signal(reward_dir / "user_signal"), progress=True,
            sampling=sampling_params(config, max_new_tokens=config.evaluate.max_new_tokens or config.generation.max_new_tokens,
                              temperature=evaluation_temperature(config), seed=config.evaluate.seed))
        offline = report.to_dict()
        write_json(context.out_dir / artifacts.OFFLINE, offline)
        context.log_metrics(report.metrics())
        records = {str(r.get("prompt_id")): r for r in read_prompts(context.inputs["heldout"])}
        rows = read_jsonl(context.out_dir / artifacts.REPLIES)
        prompts = [records[str(row["prompt_id"])] for row in rows]
        truth: dict[str, Any] = {"rm_score": {}, "n": len(rows)}
        for name in ("child", "parent"):
            replies = [row[name] for row in rows]
            truth["rm_score"][name] = mean(judge.pointwise.score([p["prompt"] for p in prompts], replies))
            hidden = env.truth(prompts, replies)
            if hidden is not None:
                truth.setdefault("landscape_p_continue", {})[name] = mean(hidden)
        if hasattr(env, "truth_prompts"):
            models = {"child": str(context.inputs["child"]), "parent": parent, "generation0": generation0}
            truth |= truth_set_figures(config, env, models, backends)
        write_json(context.out_dir / artifacts.TRUTH, truth)

    return run


def evaluation_temperature(config: Config) -> float:
    """Evaluate what users are served: ``evaluate.temperature``, else ``generation.temperature``."""
    temperature = config.evaluate.temperature
    return config.generation.temperature if temperature is None else temperature


def truth_set_figures(config: Config, env: Any, models: dict[str, str], backends: dict[str, Any]) -> dict[str, Any]:
    """For the report only: every model's mean hidden P(continue) on the environment's fixed truth set
    (prompts never served, never trained on), ``evaluate.truth_samples`` replies per prompt at the
    serving temperature and budget with the same seeds for every model, and the paired differences
    child - parent and child - generation 0 with 95 % CIs (prompts are the clusters: each prompt's
    replies are averaged first). A model's scores are cached by its folder for later generations.

    The same replies give steerability against the prompts' character cards (``instruction_following``,
    ``violation_rate``; definitions in characters/instructions.py), averaged per prompt first like
    P(continue), over the prompts where a card rule applies: 8 replies a prompt on a fixed set, where the
    held-out figures have one reply on each generation's own prompts."""
    prompts = env.truth_prompts(config.evaluate.truth_prompts)
    params = sampling_params(config, n=config.evaluate.truth_samples, temperature=config.generation.temperature,
                      seed=config.evaluate.seed)
    cache = config.run_dir() / "truth-cache"
    cache.mkdir(parents=True, exist_ok=True)
    cards = {card.id: card for card in characters_for(config)}
    per_prompt: dict[str, np.ndarray] = {}
    steering: dict[str, dict[str, np.ndarray]] = {"instruction_following": {}, "violation_rate": {}}
    for name, model in models.items():
        key = hashlib.sha256(f"{Path(model).resolve()}|{params}|{len(prompts)}".encode()).hexdigest()[:16]
        cached = cache / f"{key}.json"
        if not cached.is_file():
            replies = backends[model].chat([p["prompt"] for p in prompts], params, progress=True)
            flat_prompts = [p for p, group in zip(prompts, replies) for _ in group]
            scores = env.truth(flat_prompts, [reply for group in replies for reply in group])
            write_json(cached, {"model": model, "scores": scores,
                                "replies": [reply for group in replies for reply in group]})
        stored = json.loads(cached.read_text())
        scores = np.asarray(stored["scores"], dtype=float)
        per_prompt[name] = scores.reshape(len(prompts), -1).mean(axis=1)
        replies = np.asarray(stored["replies"], dtype=object).reshape(len(prompts), -1)
        following, violation = [], []
        for prompt, group in zip(prompts, replies):
            card = conversation_card(prompt.get("character_id"), prompt["prompt"], cards)
            rules = card.instructions if card is not None else ()
            checked = evaluate_replies((str(reply), rules, prompt["prompt"][-1]["content"]) for reply in group)
            following.append(checked.following_rate if checked.applicable else np.nan)
            violation.append(checked.violation_rate if checked.checks else np.nan)
        steering["instruction_following"][name] = np.asarray(following)
        steering["violation_rate"][name] = np.asarray(violation)

    def paired(values: dict[str, np.ndarray], a: str, b: str) -> dict[str, float]:
        diff = values[a] - values[b]
        diff = diff[~np.isnan(diff)]
        if len(diff) < 2:  # no interval from fewer than two prompts
            return {"diff": float(diff.mean()) if len(diff) else None, "lo": None, "hi": None,
                    "n_prompts": len(diff), "samples": config.evaluate.truth_samples}
        half = 1.96 * float(diff.std(ddof=1)) / np.sqrt(len(diff))
        return {"diff": float(diff.mean()), "lo": float(diff.mean()) - half, "hi": float(diff.mean()) + half,
                "n_prompts": len(diff), "samples": config.evaluate.truth_samples}

    def figures(values: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"mean": {name: float(np.nanmean(v)) if np.isfinite(v).any() else None for name, v in values.items()},
                "child_vs_parent": paired(values, "child", "parent"),
                "child_vs_generation0": paired(values, "child", "generation0"),
                "parent_vs_generation0": paired(values, "parent", "generation0")}

    return {"truth_set": figures(per_prompt) | {name: figures(values) for name, values in steering.items()}}


def gate_stage(config: Config, generation: int, lineage: Lineage) -> Callable[[StageContext], None]:
    def run(context: StageContext) -> None:
        offline = json.loads(context.inputs["evaluate"].read_text())
        user_signal = (offline.get("user_signal_win_rate_vs_parent") or {}).get("value")
        decision = apply_gates(offline, offline.get("style"), config.evaluate, user_signal_win_rate=user_signal)
        decision.write(context.out_dir / artifacts.GATES)
        registry = registry_for(config)
        version = registry.register(
            context.inputs["child"], generation=generation, parent_version=lineage.champion_version,
            lineage={"parent_model": lineage.champion, **manifest_hashes(context)},
            metrics=flat_numbers({"offline": offline}), gates=decision.to_dict())
        if decision.passed:
            registry.set_alias("challenger", version)
        else:
            registry.clear_alias("challenger")
        write_json(context.out_dir / artifacts.REGISTRY, {"version": str(version)})
        context.log_metrics({"passed": float(decision.passed)})

    return run


def manifest_hashes(context: StageContext) -> dict[str, str]:
    return {f"input_{name}": content_hash(path)[:16] for name, path in context.inputs.items() if path.is_file()}


def register_base_stage(config: Config) -> Callable[[StageContext], None]:
    def run(context: StageContext) -> None:
        registry = registry_for(config)
        version = registry.register(context.inputs["model"], generation=0, parent_version=None,
                                    lineage={"source": config.model.policy}, metrics={}, gates={"passed": True})
        registry.set_alias("champion", version)
        write_json(context.out_dir / artifacts.REGISTRY, {"version": str(version)})

    return run


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if len(values) else float("nan")


def flat_numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """Numbers of a nested dict as ``a.b.c`` keys (for MLflow metrics)."""
    out: dict[str, float] = {}
    if isinstance(value, dict):
        for key, inner in value.items():
            out |= flat_numbers(inner, f"{prefix}{key}.")
    elif isinstance(value, bool):
        out[prefix[:-1]] = float(value)
    elif isinstance(value, (int, float)) and value == value:
        out[prefix[:-1]] = float(value)
    return out


# --------------------------------------------------------------------------- the loop


def run_generation_zero(config: Config, env: Environment, stage: StageRunner) -> StageResult:
    seed_and_ingest(config, stage)
    base = str(resolve_model(config.model.policy))
    stage("register", register_base_stage(config), inputs={"model": Path(base)})
    holdout = f"+holdout{config.flywheel.holdout_weight:g}" if config.flywheel.holdout_weight else ""
    return stage("deploy", deploy_stage(config, env, 0, (base, "gen-0"), None, (base, "gen-0")),
                 config_hash=config.section_hash("model", "generation", "serve", "world", "seed") + holdout)


def run_generation(config: Config, env: Environment, generation: int, stage: StageRunner, final: bool = False) -> None:
    """One turn of the wheel; the ``final`` generation's window is ``flywheel.final_window_scale`` times the others."""
    lineage = lineage_before(config, stage, generation)
    parent = lineage.champion
    previous = stage.run.stage_dir(generation - 1, "deploy")
    source = previous if config.flywheel.data_source == "deployed" else stage.run.stage_dir(0, "deploy")
    hash_of = config.section_hash
    curated = stage("curate", curate_stage(config),
                    inputs={"traffic": source / "ingested" / artifacts.CONVERSATIONS},
                    config_hash=hash_of("curate", "model", "seed"))
    earlier_annotations = stage.run.stage_dir(generation - 1, "annotate") / artifacts.ANNOTATIONS
    annotated = stage("annotate", annotate_stage(config, env, parent),
                      inputs={"curated": curated.out_dir / CURATED, "parent": Path(parent)}
                      | ({"previous": earlier_annotations} if earlier_annotations.is_file() else {}),
                      config_hash=hash_of("curate", "generation", "seed"))
    rewarded = stage("reward", reward_stage(config),
                     inputs={"annotations": annotated.out_dir / artifacts.ANNOTATIONS,
                             "prompts": curated.out_dir / CLEAN}
                     | {f"prompts_window{g - 1}": stage.run.stage_dir(g, "curate") / CLEAN for g in range(1, generation)
                        if (stage.run.stage_dir(g, "curate") / CLEAN).is_file()},
                     config_hash=hash_of("reward", "seed"))
    parent_win_rate = previous_win_rate(stage, generation)
    earlier = [(g, stage.run.stage_dir(g, "sample")) for g in range(1, generation)]
    sampled = stage("sample", sample_stage(config, lineage, parent_win_rate, earlier),
                    inputs={"curated": curated.out_dir / CURATED, "reward": rewarded.out_dir,
                            "parent": Path(parent)}
                    | {f"replay_{g}": folder / artifacts.SFT for g, folder in earlier if (folder / artifacts.SFT).is_file()},
                    config_hash=hash_of("sample", "generation", "flywheel", "seed"),
                    params={"parent_win_rate": parent_win_rate})
    herded = stage("herd", herd_stage(config, parent),
                   inputs={"sample": sampled.out_dir, "reward": rewarded.out_dir, "parent": Path(parent)},
                   config_hash=hash_of("train", "seed"))
    child = herded.out_dir / POLICY_DIR
    reference = reference_model(config, lineage)
    evaluated = stage("evaluate", evaluate_stage(config, env, parent, reference),
                      inputs={"heldout": curated.out_dir / HELDOUT, "child": child,
                              "reward": rewarded.out_dir},
                      config_hash=hash_of("evaluate", "generation", "seed"))
    gated = stage("gate", gate_stage(config, generation, lineage),
                  inputs={"evaluate": evaluated.out_dir / artifacts.OFFLINE, "child": child},
                  config_hash=hash_of("evaluate"))
    passed = read_gates(gated.out_dir / artifacts.GATES).passed
    challenger = (str(child), f"gen-{generation}") if passed else None
    scale = config.flywheel.final_window_scale if final else 1.0
    # The last window of a run whose child was stopped at its gates has no reader: no A/B, no holdout
    # read-out, no next generation to curate it (extending the run later serves it: the hash differs).
    idle = final and challenger is None and not config.flywheel.holdout_weight
    deployed = stage("deploy", deploy_stage(config, env, generation, (parent, lineage.champion_version), challenger,
                                            (lineage.history[0], "gen-0"), scale=scale, serve=not idle,
                                            final=final),
                     inputs={"gate": gated.out_dir / artifacts.GATES,
                             "pre_period": previous / "ingested" / artifacts.CONVERSATIONS},
                     config_hash=hash_of("model", "generation", "serve", "world", "ab", "flywheel", "seed")
                     + (f"+x{scale:g}" if scale != 1 else "") + ("+idle" if idle else ""))
    decision = read_decision(deployed.out_dir / artifacts.DECISION)
    registry = registry_for(config)  # follows the deploy decision (idempotent on a re-run)
    if decision.promoted:
        version = json.loads((gated.out_dir / artifacts.REGISTRY).read_text())["version"]
        champion = registry.champion()
        if champion is None or str(champion.version) != str(version):
            registry.promote(version)
    else:
        registry.clear_alias("challenger")


def previous_win_rate(stage: StageRunner, generation: int) -> float | None:
    """The reward models' win rate of the current champion over its own parent (paper 7.4)."""
    if generation < 2:
        return None
    offline = stage.run.stage_dir(generation - 1, "evaluate") / artifacts.OFFLINE
    if not offline.is_file():
        return None
    by_judge = json.loads(offline.read_text()).get("win_rate_vs_parent") or {}
    return (by_judge.get("reward_model") or {}).get("value")


def reference_model(config: Config, lineage: Lineage) -> str:
    return config.flywheel.reference or lineage.history[0]


def run_flywheel(config: Config, env: Environment, generations: int | None = None,
                 notify: StageNotice | None = None, starting: StageStart | None = None) -> Path:
    """Run (or resume) generations 0..N; returns the run directory. ``starting`` hears of each stage
    before it runs, ``notify`` gets its result."""
    total = config.flywheel.generations if generations is None else generations
    for generation in range(total + 1):
        stage = StageRunner(config, generation, notify, starting)
        began = time.perf_counter()
        if generation == 0:
            run_generation_zero(config, env, stage)
        else:
            run_generation(config, env, generation, stage, final=generation == total)
        write_generation_summary(stage.run.root, generation, elapsed=time.perf_counter() - began)
    shutil.rmtree(Path(config.runs_dir) / config.name / "tmp", ignore_errors=True)
    return Path(config.runs_dir) / config.name
