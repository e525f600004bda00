"""The pre-herding sampling stage: rejection sampling on the curated prompts (paper 5.1, 7.4) and
the hard-prompt selection that online RL uses later (paper 7.3).

Outputs in ``out_dir``: sft.jsonl, prefs.jsonl, candidates.jsonl, report.json (rejection
sampling), hard_prompts.jsonl and hard_prompts_report.json (hard prompts). By default the hard
prompts are measured on the rejection-sampling candidates (no extra generation); with
``hard_source = "current"`` the current model (``pool[0]``) writes ``hard_n`` fresh replies per
prompt, which measures difficulty for exactly the policy online RL will train.

The reward models are loaded by the caller (``run_pre_herding_sampling``) or, in the stage
adapter, lazily from ``characterflywheel.reward`` so this package does not depend on it at import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from characterflywheel import artifacts
from characterflywheel.data.jsonl import write_json, write_jsonl
from characterflywheel.data.records import read_prompts
from characterflywheel.models import make_backend
from characterflywheel.sample.guided import card_openings
from characterflywheel.sample.hard_prompts import select_hard_prompts, select_hard_prompts_from_scores
from characterflywheel.sample.protocols import (
    BackendFactory,
    CachedBackends,
    Judge,
    ModelSpec,
    Opening,
    RuleCheck,
    UserSignalPredictor,
)
from characterflywheel.sample.rejection import candidate_sampling, rejection_sample
from characterflywheel.sample.replay import replay_rows
from characterflywheel.sample.settings import SampleConfig


def local_backend_factory(kind: str = "fast", batch_size: int = 32) -> BackendFactory:
    """Model spec -> a ``make_backend(kind, spec, batch_size=...)`` backend."""
    return lambda spec: make_backend(kind, spec, batch_size=batch_size)


def card_rule_check(characters: Iterable[Any] | None = None) -> RuleCheck:
    """How many rules of its prompt's character card that apply to the turn a reply breaks
    (``characters.instructions``); 0 for a prompt with no known character, or no rule applying.
    ``characters``: ``Character`` cards, default the shipped ones; a prompt whose character has no
    card (a user-created one) is held to the rules its system message states."""
    from characterflywheel.characters import load_characters
    from characterflywheel.characters.from_system import conversation_card
    from characterflywheel.characters.instructions import check_reply

    cards = {card.id: card for card in (load_characters() if characters is None else characters)}

    def broken_rules(record: Mapping[str, Any], reply: str) -> int:
        card = conversation_card(record.get("character_id"), record.get("prompt") or (), cards)
        instructions = card.instructions if card is not None else ()
        if not instructions:
            return 0
        last_user = next((m["content"] for m in reversed(record["prompt"]) if m["role"] == "user"), None)
        return sum(result is False for result in check_reply(reply, instructions, last_user).values())

    return broken_rules


def run_pre_herding_sampling(
    curated_prompts_path: Path | str,
    pool: Sequence[ModelSpec],
    judge: Judge,
    user_signal: UserSignalPredictor | None,
    backend_factory: BackendFactory,
    out_dir: Path | str,
    settings: SampleConfig | None = None,
    parent_win_rate: float | None = None,
    progress: bool = False,
    rule_check: RuleCheck | None = None,
    opening: Opening | None = None,
    replay: Sequence[tuple[int, Path]] = (),
    characters: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Rejection sampling + hard prompts on a curated prompt file; returns flat metrics.
    ``characters``: the run's ``Character`` cards (default the shipped ones), for the two defaults:
    ``rule_check``: default those cards' rules (when ``settings.follow_rules``);
    ``opening``: default the openings those cards demand (when ``settings.guided``);
    ``replay``: [(generation, sample dir)] of earlier generations, whose accepted rows are re-scored
    and appended (``sample.replay``)."""
    settings = settings or SampleConfig()
    if settings.follow_rules and rule_check is None:
        rule_check = card_rule_check(characters)
    if settings.guided and opening is None:
        opening = card_openings(characters)
    out = Path(out_dir)
    prompts = read_prompts(curated_prompts_path)
    backends = CachedBackends(backend_factory)
    result = rejection_sample(
        prompts, pool, judge, backends, settings, user_signal=user_signal,
        parent_win_rate=parent_win_rate, progress=progress, out_dir=out, rule_check=rule_check, opening=opening,
    )
    if settings.hard_source == "candidates":
        hard = select_hard_prompts_from_scores(
            prompts, result.scores, settings.hard_share, settings.hard_count, settings.hard_by
        )
    else:
        hard = select_hard_prompts(
            prompts, backends(pool[0]), judge, settings.hard_share, settings.hard_count, settings.hard_by,
            sampling=candidate_sampling(settings, settings.hard_n, settings.seed + 1000), progress=progress,
        )
    hard.report["source"] = settings.hard_source
    hard.write(out)
    metrics = pre_herding_metrics(result.report, hard.report)
    if replay:
        sft, prefs, counts = replay_rows(replay, judge, result.report["tau"], {str(r["prompt_id"]) for r in prompts})
        write_jsonl(out / artifacts.SFT, [*result.sft, *sft])
        write_jsonl(out / artifacts.PREFERENCES, [*result.prefs, *prefs])
        write_json(out / "replay.json", counts)
        metrics |= {f"sample.{key}": float(value) for key, value in counts.items()}
    return metrics


def pre_herding_metrics(rejection: dict[str, Any], hard: dict[str, Any]) -> dict[str, float]:
    """The figures worth tracking per generation, as floats (None -> NaN)."""

    def number(value: Any) -> float:
        return float("nan") if value is None else float(value)

    metrics = {
        f"sample.{key}": number(rejection[key])
        for key in ("prompts", "candidates", "kept", "acceptance_rate", "sft_records", "preference_pairs",
                    "tau", "mean_score_all", "mean_score_kept", "mean_score_sft", "rule_breaking_share",
                    "pairs_against_rule_breakers", "guided_candidates", "sft_guided", "cut_off_share",
                    "pairs_against_failures")
    }
    metrics["sample.user_signal_active"] = float(rejection["user_signal"]["active"])
    metrics["sample.user_signal_changed_top_pick"] = float(rejection["user_signal"]["changed_top_pick"])
    for index, count in enumerate(rejection["model_choice_counts"].values()):
        metrics[f"sample.model_choice.pool{index}"] = float(count)
    metrics["sample.hard_prompts"] = float(hard["selected"])
    for criterion in ("by_variance", "by_mean", "all"):
        metrics[f"sample.hard.{criterion}.mean_variance"] = number(hard[criterion]["mean_variance"])
        metrics[f"sample.hard.{criterion}.mean_score"] = number(hard[criterion]["mean_score"])
    metrics["sample.hard.overlap_jaccard"] = float(hard["overlap_jaccard"])
    return metrics
