"""Rejection sampling (paper 5.1) with user-signal re-ranking under a win-rate guard (paper 7.4).

For each prompt:

1. **Model choice.** With more than one model in the pool (the current model first, then earlier
   generations), each model writes ``probe_n`` probe replies; the judge scores them and the model
   with the best mean probe score writes this prompt's candidates (ties go to the earlier pool
   entry, i.e. the current model). With one model there is nothing to choose and no probing.
2. **Candidates.** The chosen model's ``k`` candidates are its probe replies (samples from it with
   the same temperature and top-p) plus ``k - probe_n`` new ones, so choosing costs only the
   probes of the models not chosen; the judge scores them.
3. **Acceptance.** A candidate the token budget cut off mid-sentence is never kept (its finish
   reason is ``length``; SFT would teach the policy to stop mid-sentence), nor is a loop, a generic
   closer, a reply of one or two words or an echo of the character's earlier reply in the
   conversation (``sample.failures``). Otherwise
   a candidate is kept when its judge score >= tau (an absolute ``tau``, or
   ``tau_quantile`` of all candidate scores of the run, which does not depend on the judge's scale)
   and, with ``follow_rules``, it breaks no more of its character card's applicable rules than the
   prompt's best candidate does (a verifiable check, so no reward model can trade it away: the
   steerability half of the paper's goal). A rule no candidate keeps is out of the model's reach
   there and faults nobody, but does not excuse the card's other rules; a prompt whose candidates
   all break the same number is judged on score alone. A prompt whose best rule keepers all fall
   below tau yields nothing, unless ``keep_best_rule_keeper`` keeps the best of them (often a guided
   candidate): that buys steerability with engagement (see settings).
4. **Ranking.** Kept candidates are ordered by judge score. Unless the reward model's win rate of
   the current model over its parent is ``user_signal_max_win_rate`` (65 % by default) or more, the
   user-signal model (trained on what users did: continue or leave) re-ranks them by a blend of
   judge-score rank and predicted P(continue) rank. The user signal never sees candidates that
   failed tau, so it can only reorder, never admit. Generation 1 has no measured win rate yet: the
   guard has nothing to stop, so the user signal ranks from generation 1 on.
5. **Outputs.** SFT record = the top kept candidate (``messages`` = prompt + assistant reply);
   preference pair = that candidate vs. the lowest-scored candidate of the prompt, when their judge
   margin is >= ``min_margin`` and positive (TRL's conversational ``prompt``/``chosen``/``rejected``).
   When some candidate shows one of the policy's failure modes (a broken card rule, a cut-off, a
   loop, a generic closer), the rejected reply is the lowest-scored of those and the pair needs no
   margin: the check, not the judge, decided it (``rejected_reason`` says which).

Written by hand because no library implements best-of-n selection over a model pool with this
guard; generation goes through the project's backends and scoring through the reward judge.
Assumptions: judge scores are finite, higher is better; ``score_groups`` returns one array per
prompt with one score per reply. Only the model spec strings are recorded, never weights.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from characterflywheel import artifacts
from characterflywheel.data.jsonl import write_json, write_jsonl
from characterflywheel.data.records import check_prompts
from characterflywheel.models import SamplingParams
from characterflywheel.models.generation import reply_cut_off, trim_to_last_sentence
from characterflywheel.sample.protocols import (
    BackendFactory,
    CachedBackends,
    ChatMessages,
    Judge,
    ModelSpec,
    Opening,
    RuleCheck,
    UserSignalPredictor,
)
from characterflywheel.sample.failures import Failures, earlier_replies, find_failures
from characterflywheel.sample.guided import add_guided_candidates
from characterflywheel.sample.records import plain_messages
from characterflywheel.sample.settings import SampleConfig

CANDIDATES_FILE = "candidates.jsonl"
REPORT_FILE = "report.json"


@dataclass(frozen=True)
class UserSignalDecision:
    """Whether the user-signal model may re-rank this run, and why."""

    active: bool
    reason: str
    parent_win_rate: float | None
    max_win_rate: float
    weight: float


@dataclass
class RejectionResult:
    sft: list[dict[str, Any]]
    prefs: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    report: dict[str, Any]
    # Per prompt (input order): the judge scores of its k candidates; reused for hard prompts.
    scores: list[np.ndarray] = field(repr=False, default_factory=list)

    def write(self, out_dir: Path | str) -> dict[str, Path]:
        """sft.jsonl, prefs.jsonl, candidates.jsonl and report.json in ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / name for name in (artifacts.SFT, artifacts.PREFERENCES, CANDIDATES_FILE, REPORT_FILE)}
        write_jsonl(paths[artifacts.SFT], self.sft)
        write_jsonl(paths[artifacts.PREFERENCES], self.prefs)
        write_jsonl(paths[CANDIDATES_FILE], self.candidates)
        write_json(paths[REPORT_FILE], self.report)
        return paths


def decide_user_signal(
    user_signal: UserSignalPredictor | None, parent_win_rate: float | None, settings: SampleConfig
) -> UserSignalDecision:
    """The 7.4 guard: re-rank only with a model, a known win rate, and that rate below the limit."""
    limit = settings.user_signal_max_win_rate

    def decision(active: bool, reason: str) -> UserSignalDecision:
        return UserSignalDecision(active, reason, parent_win_rate, limit, settings.user_signal_weight)

    if user_signal is None:
        return decision(False, "no user-signal model")
    if settings.user_signal_weight == 0.0:
        return decision(False, "user_signal_weight is 0")
    if parent_win_rate is None:  # generation 1: nothing measured yet, so nothing for the guard to stop
        return decision(True, "no win rate over a parent measured yet: the guard has nothing to stop")
    if not 0.0 <= parent_win_rate <= 1.0:
        raise ValueError(f"parent_win_rate must be in [0, 1], got {parent_win_rate}")
    if parent_win_rate >= limit:
        return decision(False, f"parent win rate {parent_win_rate:.3f} >= {limit:.3f}: reward hacking risk")
    return decision(True, f"parent win rate {parent_win_rate:.3f} < {limit:.3f}")


def unique_pool(pool: Sequence[ModelSpec]) -> list[ModelSpec]:
    """The pool in order with repeated specs dropped (a model listed twice is one candidate)."""
    if not pool:
        raise ValueError("rejection_sample: the model pool is empty")
    unique: dict[str, ModelSpec] = {}
    for spec in pool:
        unique.setdefault(str(spec), spec)
    return list(unique.values())


def checked_score_groups(
    judge: Judge, prompts: Sequence[ChatMessages], groups: Sequence[Sequence[str]]
) -> list[np.ndarray]:
    """``judge.score_groups`` with its output checked against the groups' shapes."""
    scores = judge.score_groups(prompts, groups)
    if len(scores) != len(groups):
        raise ValueError(f"judge.score_groups returned {len(scores)} score arrays for {len(groups)} prompts")
    checked = []
    for index, (group, group_scores) in enumerate(zip(groups, scores, strict=True)):
        array = np.asarray(group_scores, dtype=float).reshape(-1)
        if len(array) != len(group) or not np.all(np.isfinite(array)):
            raise ValueError(
                f"judge.score_groups: prompt {index}: expected {len(group)} finite scores, got {array.tolist()}"
            )
        checked.append(array)
    return checked


def candidate_sampling(settings: SampleConfig, n: int, seed: int) -> SamplingParams:
    """How the ``[sample]`` section draws ``n`` candidates a prompt (the ``[generation]`` section's
    sampling is ``pipeline.sampling_params``)."""
    return SamplingParams(
        max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, top_p=settings.top_p,
        n=n, seed=seed,
    )




@dataclass
class ModelChoice:
    """Per prompt: the index into the pool of the model that writes its candidates, that model's
    probe replies (they count as candidates), and the (prompts x pool) mean probe scores (None when
    the pool has one model and nothing was probed)."""

    choice: np.ndarray
    probes: list[list[str]]
    probe_means: np.ndarray | None


def choose_models(
    conversations: Sequence[ChatMessages],
    pool: Sequence[ModelSpec],
    judge: Judge,
    backends: BackendFactory,
    settings: SampleConfig,
    progress: bool = False,
) -> ModelChoice:
    """The model with the best mean probe score per prompt (ties go to the earlier pool entry, the
    current model), and its probes."""
    if len(pool) == 1:
        return ModelChoice(np.zeros(len(conversations), dtype=int), [[] for _ in conversations], None)
    probe_means = np.empty((len(conversations), len(pool)))
    probes_by_model = []
    for model_index, spec in enumerate(pool):
        params = candidate_sampling(settings, settings.probe_n, settings.seed + model_index + 1)
        probes = backends(spec).chat(conversations, params, progress=progress)
        scores = checked_score_groups(judge, conversations, probes)
        probe_means[:, model_index] = [group.mean() for group in scores]
        probes_by_model.append(probes)
    choice = probe_means.argmax(axis=1)  # the first maximum: the earlier pool entry wins a tie
    chosen_probes = [list(probes_by_model[model][position]) for position, model in enumerate(choice)]
    return ModelChoice(choice, chosen_probes, probe_means)


def generate_candidates(
    conversations: Sequence[ChatMessages],
    chosen: ModelChoice,
    pool: Sequence[ModelSpec],
    backends: BackendFactory,
    settings: SampleConfig,
    progress: bool = False,
) -> list[list[str]]:
    """``k`` replies per prompt from its chosen model: its probes first, then new samples (one
    batched call per model)."""
    reused = min(settings.k, len(chosen.probes[0])) if conversations else 0
    candidates = [list(probes[:reused]) for probes in chosen.probes]
    if reused == settings.k:
        return candidates
    params = candidate_sampling(settings, settings.k - reused, settings.seed)
    for model_index, spec in enumerate(pool):
        positions = np.flatnonzero(chosen.choice == model_index)
        if len(positions) == 0:
            continue
        replies = backends(spec).chat([conversations[i] for i in positions], params, progress=progress)
        for position, group in zip(positions, replies, strict=True):
            if len(group) != settings.k - reused:
                raise ValueError(f"backend for {spec} returned {len(group)} replies, expected {settings.k - reused}")
            candidates[position].extend(group)
    return candidates


def effective_tau(scores: Sequence[np.ndarray], settings: SampleConfig,
                  eligible: Sequence[np.ndarray] | None = None) -> tuple[float, str]:
    """The acceptance threshold: ``tau``, or ``tau_quantile`` of the scores of the ``eligible``
    candidates (the finished ones: a cut-off reply is never kept, so it must not set the bar)."""
    if settings.tau_quantile is None:
        return float(settings.tau), "absolute"
    if eligible is not None:
        scores = [group[mask] for group, mask in zip(scores, eligible, strict=True)]
    pooled = np.concatenate(list(scores)) if scores else np.array([])
    if pooled.size == 0:
        pooled = np.array([settings.tau])
    return float(np.quantile(pooled, settings.tau_quantile)), f"quantile {settings.tau_quantile:g}"


def blend_order(judge_scores: np.ndarray, p_continue: np.ndarray | None, weight: float) -> np.ndarray:
    """Positions of ``judge_scores`` best first: by judge score alone, or by the blend
    ``(1 - weight) * judge rank + weight * P(continue) rank`` (ranks scaled to [0, 1], ties
    averaged); ties of the blend go to the higher judge score."""
    from scipy.stats import rankdata  # scipy.stats takes a while to import; only re-ranking needs it

    count = len(judge_scores)
    if p_continue is None or count < 2:
        return np.argsort(-judge_scores, kind="stable")
    judge_rank = (rankdata(judge_scores) - 1) / (count - 1)
    signal_rank = (rankdata(p_continue) - 1) / (count - 1)
    blend = (1 - weight) * judge_rank + weight * signal_rank
    return np.lexsort((-judge_scores, -blend))


def predict_continue(
    user_signal: UserSignalPredictor, conversations: Sequence[ChatMessages], replies: Sequence[str]
) -> np.ndarray:
    if not replies:
        return np.empty(0)
    predictions = np.asarray(user_signal.predict(conversations, replies), dtype=float)
    if predictions.ndim != 2 or predictions.shape[0] != len(replies) or predictions.shape[1] < 1:
        raise ValueError(f"user_signal.predict: expected shape ({len(replies)}, 2), got {predictions.shape}")
    return predictions[:, 0]


@dataclass
class PromptOutcome:
    """What one prompt contributes: its candidate rows, and its SFT record and pair if any."""

    candidates: list[dict[str, Any]]
    sft: dict[str, Any] | None
    pair: dict[str, Any] | None
    user_signal_changed_top: bool


def select_for_prompt(
    record: dict[str, Any],
    conversation: ChatMessages,
    model: str,
    replies: Sequence[str],
    scores: np.ndarray,
    kept: np.ndarray,
    p_continue: np.ndarray | None,
    settings: SampleConfig,
    failures: Failures | None = None,
    guided: int = 0,
) -> PromptOutcome:
    """Rank the kept candidates (re-ranked when ``p_continue`` is given), then build the SFT record
    from the top one and the pair top vs. lowest-scored candidate when the margin allows, or vs. the
    lowest-scored failing candidate of the first failure tier (``Failures.rejectable``: broken
    rules, then loops, generic closers and too-short replies, then cut-offs) whatever the margin.
    The last ``guided`` replies are guided candidates."""
    if failures is None:
        none = np.zeros(len(replies), dtype=bool)
        failures = Failures(none, none, none)
    breaks_rules = failures.breaks_rules
    kept_positions = np.flatnonzero(kept)
    order = kept_positions[blend_order(scores[kept_positions], p_continue, settings.user_signal_weight)]
    judge_top = kept_positions[np.argmax(scores[kept_positions])] if len(kept_positions) else None
    rank_of = {int(position): rank for rank, position in enumerate(order)}
    rows = [
        {
            "prompt_id": record["prompt_id"], "model": model, "candidate": position, "reply": reply,
            "score": float(scores[position]), "kept": bool(kept[position]), "rank": rank_of.get(position),
            "p_continue": _lookup_p_continue(p_continue, kept_positions, position),
            "selected": bool(len(order)) and position == int(order[0]),
            "breaks_rules": bool(failures.broken_rules[position] > 0),
            "broken_rules": int(failures.broken_rules[position]), "cut_off": bool(failures.cut_off[position]),
            "degenerate": bool(failures.degenerate[position]), "guided": position >= len(replies) - guided,
            "echo": failures.echo is not None and bool(failures.echo[position]),
        }
        for position, reply in enumerate(replies)
    ]
    if not len(order):
        return PromptOutcome(rows, None, None, False)
    best = int(order[0])
    breakers = failures.rejectable(best)  # the policy's own failure modes make the rejected side
    worst = int(breakers[np.argmin(scores[breakers])]) if len(breakers) else int(np.argmin(scores))
    sft = {
        "messages": [*conversation, {"role": "assistant", "content": replies[best]}],
        "prompt_id": record["prompt_id"], "score": float(scores[best]), "guided": best >= len(replies) - guided,
    }
    if sft["guided"] and settings.guided_sft_weight > 1:
        sft["weight"] = settings.guided_sft_weight
    margin = float(scores[best] - scores[worst])
    pair = None
    if len(breakers) or (margin > 0 and margin >= settings.min_margin):
        pair = {
            "prompt": conversation,
            "chosen": [{"role": "assistant", "content": replies[best]}],
            "rejected": [{"role": "assistant", "content": replies[worst]}],
            "prompt_id": record["prompt_id"],
            "score_chosen": float(scores[best]), "score_rejected": float(scores[worst]),
            "rule_pair": bool(breaks_rules[worst]) and not breaks_rules[best],
            # the check, not the judge's margin, decided this pair
            "rejected_reason": failures.reason(worst, replies) if len(breakers) else "lower score",
        }
    return PromptOutcome(rows, sft, pair, best != judge_top)


def trim_cut_offs(groups: list[list[str]], cut: list[list[bool]]) -> list[np.ndarray]:
    """In place: every cut-off candidate with a whole sentence before the cut ends there instead and
    counts as finished (a failure check still drops it if it came out too short); returns, per
    prompt, which candidates were trimmed."""
    trimmed = []
    for group, flags in zip(groups, cut):
        mask = np.zeros(len(group), dtype=bool)
        for position, was_cut in enumerate(flags):
            shorter = trim_to_last_sentence(group[position]) if was_cut else None
            if shorter:
                group[position], flags[position], mask[position] = shorter, False, True
        trimmed.append(mask)
    return trimmed


def prefer_finished(kept: np.ndarray, trimmed: np.ndarray) -> np.ndarray:
    """A trimmed candidate is kept only where no candidate that finished on its own is: trimming drops
    the cut sentence, often the question a reply was closing with, so a trimmed reply stands in for a
    prompt that has nothing better and never displaces a finished one."""
    finished_kept = kept & ~trimmed
    return finished_kept if finished_kept.any() else kept


def rejection_sample(
    prompts: Sequence[dict[str, Any]],
    pool: Sequence[ModelSpec],
    judge: Judge,
    backend_factory: BackendFactory,
    settings: SampleConfig | None = None,
    user_signal: UserSignalPredictor | None = None,
    parent_win_rate: float | None = None,
    progress: bool = False,
    out_dir: Path | str | None = None,
    rule_check: RuleCheck | None = None,
    opening: Opening | None = None,
) -> RejectionResult:
    """Best-of-k rejection sampling over a model pool; writes the four files when ``out_dir`` is set.
    ``rule_check`` (used when ``settings.follow_rules``): whether a reply keeps its prompt's rules.
    ``opening`` (used when ``settings.guided``): the opening a prompt's rules demand, for the
    guided candidates appended to its group (``sample.guided``)."""
    settings = settings or SampleConfig()
    records = check_prompts(list(prompts))
    pool = unique_pool(pool)
    backends = backend_factory if isinstance(backend_factory, CachedBackends) else CachedBackends(backend_factory)
    conversations = [plain_messages(record["prompt"]) for record in records]

    chosen = choose_models(conversations, pool, judge, backends, settings, progress)
    choice, probe_means = chosen.choice, chosen.probe_means
    groups = generate_candidates(conversations, chosen, pool, backends, settings, progress)
    guided = [0] * len(records)
    if opening is not None and settings.guided:
        guided = add_guided_candidates(records, conversations, groups, choice, pool, backends, opening,
                                       candidate_sampling(settings, settings.guided, settings.seed + 2000), progress)
    cut = [reply_cut_off(backends(pool[int(choice[index])]), group, settings.max_new_tokens)
           for index, group in enumerate(groups)]
    trimmed = trim_cut_offs(groups, cut) if settings.trim_cut_offs else None
    scores = checked_score_groups(judge, conversations, groups) if records else []
    breaking = broken_rule_counts(records, groups, rule_check if settings.follow_rules else None)
    tau, tau_source = effective_tau(scores, settings, [~np.asarray(flags, dtype=bool) for flags in cut])
    failures = [find_failures(group, cut_flags, breaks, settings.min_words, earlier_replies(conversation))
                for group, cut_flags, breaks, conversation in zip(groups, cut, breaking, conversations, strict=True)]
    kept_masks = [accepted(group_scores, failed, tau, settings.keep_best_rule_keeper)
                  for group_scores, failed in zip(scores, failures, strict=True)]
    if trimmed is not None:
        kept_masks = [prefer_finished(kept, mask) for kept, mask in zip(kept_masks, trimmed, strict=True)]

    decision = decide_user_signal(user_signal, parent_win_rate, settings)
    p_continue = _kept_p_continue(user_signal, decision, conversations, groups, kept_masks)

    outcomes = [
        select_for_prompt(
            record, conversations[index], str(pool[int(choice[index])]), groups[index], scores[index],
            kept_masks[index], p_continue[index], settings, failures[index], guided[index],
        )
        for index, record in enumerate(records)
    ]
    sft = [outcome.sft for outcome in outcomes if outcome.sft is not None]
    prefs = [outcome.pair for outcome in outcomes if outcome.pair is not None]
    candidate_rows = [row for outcome in outcomes for row in outcome.candidates]
    pairs_below_margin = sum(outcome.sft is not None and outcome.pair is None for outcome in outcomes)
    changed_top = sum(outcome.user_signal_changed_top for outcome in outcomes)

    report = _report(
        records, pool, choice, probe_means, scores, kept_masks, tau, tau_source, sft, prefs,
        pairs_below_margin, decision, changed_top, settings, breaking, guided, failures, trimmed,
    )
    result = RejectionResult(sft, prefs, candidate_rows, report, scores)
    if out_dir is not None:
        result.write(out_dir)
    return result


def accepted(scores: np.ndarray, failures: Failures | np.ndarray, tau: float,
             keep_best_rule_keeper: bool) -> np.ndarray:
    """Which candidates of one prompt are kept: finished (never cut off) and not degenerate (no loop,
    generic closer or one- or two-word reply), score >= tau, and keeping the rules where they bind.

    A rule binds a prompt only where some candidate keeps it (else the prompt is out of reach and is
    judged on score alone). With ``keep_best_rule_keeper``, a prompt whose rules bind but whose rule
    keepers all score below tau keeps its best finished rule keeper: there the check decides, not the
    judge, as it does for the prompt's preference pair. ``failures`` may be a plain rule-breaker mask."""
    if not isinstance(failures, Failures):  # broken-rule counts alone: nothing cut off or degenerate
        none = np.zeros(len(scores), dtype=bool)
        failures = Failures(none, none, np.asarray(failures, dtype=int))
    eligible = ~failures.cut_off & ~failures.degenerate
    kept = (scores >= tau) & eligible & ~failures.binding_rules
    if keep_best_rule_keeper and failures.binding_rules.any() and not kept.any():
        keepers = np.flatnonzero(~failures.breaks_rules & eligible)
        if len(keepers):
            kept[keepers[np.argmax(scores[keepers])]] = True
    return kept


def broken_rule_counts(records: Sequence[dict[str, Any]], groups: Sequence[Sequence[str]],
                       rule_check: RuleCheck | None) -> list[np.ndarray]:
    """Per prompt, how many of its character's rules each candidate breaks (all 0 without a check)."""
    if rule_check is None:
        return [np.zeros(len(group), dtype=int) for group in groups]
    return [np.array([int(rule_check(record, reply)) for reply in group], dtype=int)
            for record, group in zip(records, groups, strict=True)]


def _kept_p_continue(
    user_signal: UserSignalPredictor | None,
    decision: UserSignalDecision,
    conversations: Sequence[ChatMessages],
    groups: Sequence[Sequence[str]],
    kept_masks: Sequence[np.ndarray],
) -> list[np.ndarray | None]:
    """Per prompt, P(continue) of its kept candidates only (None when re-ranking is off)."""
    if not decision.active or user_signal is None:
        return [None] * len(groups)
    owners = [i for i, mask in enumerate(kept_masks) for _ in np.flatnonzero(mask)]
    replies = [groups[i][p] for i, mask in enumerate(kept_masks) for p in np.flatnonzero(mask)]
    flat = predict_continue(user_signal, [conversations[i] for i in owners], replies)
    per_prompt: list[np.ndarray | None] = []
    start = 0
    for mask in kept_masks:
        count = int(mask.sum())
        per_prompt.append(flat[start:start + count])
        start += count
    return per_prompt


def _lookup_p_continue(values: np.ndarray | None, kept_positions: np.ndarray, position: int) -> float | None:
    if values is None:
        return None
    where = np.flatnonzero(kept_positions == position)
    return float(values[where[0]]) if len(where) else None


def _mean(values: Sequence[float] | np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _report(
    records: Sequence[dict[str, Any]],
    pool: Sequence[ModelSpec],
    choice: np.ndarray,
    probe_means: np.ndarray | None,
    scores: Sequence[np.ndarray],
    kept_masks: Sequence[np.ndarray],
    tau: float,
    tau_source: str,
    sft: Sequence[dict[str, Any]],
    prefs: Sequence[dict[str, Any]],
    pairs_below_margin: int,
    decision: UserSignalDecision,
    changed_top: int,
    settings: SampleConfig,
    breaking: Sequence[np.ndarray],
    guided: Sequence[int],
    failures: Sequence[Failures] = (),
    trimmed: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    all_scores = np.concatenate(list(scores)) if scores else np.empty(0)
    trimmed_flat = np.concatenate(list(trimmed)) if trimmed else np.zeros(all_scores.size, dtype=bool)
    breaks = np.concatenate(list(breaking)) > 0 if breaking else np.empty(0, dtype=bool)
    above_tau = all_scores >= tau
    kept_flat = np.concatenate(list(kept_masks)) if kept_masks else np.empty(0, dtype=bool)
    cut = np.concatenate([f.cut_off for f in failures]) if failures else np.zeros(all_scores.size, dtype=bool)
    degenerate = np.concatenate([f.degenerate for f in failures]) if failures else np.zeros(all_scores.size, dtype=bool)
    dropped = above_tau & ~kept_flat
    kept_scores = np.concatenate([s[m] for s, m in zip(scores, kept_masks, strict=True)]) if scores else np.empty(0)
    prompts_with_kept = sum(bool(mask.any()) for mask in kept_masks)
    counts = Counter(str(pool[int(i)]) for i in choice)
    report = {
        "prompts": len(records),
        "candidates": int(all_scores.size),
        "kept": int(kept_scores.size),
        "filtered_below_tau": int((~above_tau & ~kept_flat).sum()),
        "kept_below_tau_keeping_rules": int((~above_tau & kept_flat).sum()),
        "filtered_breaking_rules": int((dropped & breaks).sum()),
        "filtered_cut_off": int((dropped & ~breaks & cut).sum()),
        "filtered_degenerate": int((dropped & ~breaks & ~cut & degenerate).sum()),
        "filtered_trimmed": int((dropped & ~breaks & ~cut & ~degenerate & trimmed_flat).sum()),
        "trimmed_cut_offs": int(trimmed_flat.sum()),
        "kept_trimmed": int((kept_flat & trimmed_flat).sum()),
        "cut_off_candidates": int(cut.sum()),
        "cut_off_share": float(cut.mean()) if cut.size else 0.0,
        "degenerate_candidates": int(degenerate.sum()),
        "echo_candidates": sum(int(f.echo.sum()) for f in failures if f.echo is not None),
        "pairs_against_failures": sum(pair["rejected_reason"] != "lower score" for pair in prefs),
        "rejected_reasons": dict(Counter(pair["rejected_reason"] for pair in prefs)),
        "prompts_rules_out_of_reach": sum(bool(len(b)) and bool((b > 0).all()) for b in breaking),
        "rule_breaking_candidates": int(breaks.sum()),
        "rule_breaking_share": float(breaks.mean()) if breaks.size else 0.0,
        "pairs_against_rule_breakers": sum(bool(pair["rule_pair"]) for pair in prefs),
        "guided_candidates": int(sum(guided)),
        "prompts_guided": sum(bool(count) for count in guided),
        "guided_kept": int(sum(mask[len(mask) - count:].sum() for mask, count in zip(kept_masks, guided) if count)),
        "sft_guided": sum(bool(record["guided"]) for record in sft),
        "acceptance_rate": float(kept_scores.size / all_scores.size) if all_scores.size else 0.0,
        "prompts_with_kept": prompts_with_kept,
        "prompts_without_kept": len(records) - prompts_with_kept,
        "sft_records": len(sft),
        "preference_pairs": len(prefs),
        "pairs_skipped_below_margin": pairs_below_margin,
        "tau": tau,
        "tau_source": tau_source,
        "mean_score_all": _mean(all_scores),
        "mean_score_kept": _mean(kept_scores),
        "mean_score_sft": _mean([record["score"] for record in sft]),
        "pool": [str(spec) for spec in pool],
        "model_choice_counts": {str(spec): counts.get(str(spec), 0) for spec in pool},
        "probe_replies": 0 if probe_means is None else len(records) * len(pool) * settings.probe_n,
        "probe_mean_score": None if probe_means is None else {
            str(spec): float(probe_means[:, j].mean()) if len(records) else None for j, spec in enumerate(pool)
        },
        "user_signal": {
            "active": decision.active, "reason": decision.reason, "parent_win_rate": decision.parent_win_rate,
            "max_win_rate": decision.max_win_rate, "weight": decision.weight, "changed_top_pick": changed_top,
        },
        "settings": settings.model_dump(),
    }
    _check_reconciled(report, settings)
    return report


def _check_reconciled(report: dict[str, Any], settings: SampleConfig) -> None:
    """Counts must add up; a mismatch is a bug here, not bad input."""
    identities = {
        "candidates == prompts * k + guided":
            report["candidates"] == report["prompts"] * settings.k + report["guided_candidates"],
        "kept + filtered == candidates":
            report["kept"] + report["filtered_below_tau"] + report["filtered_breaking_rules"]
            + report["filtered_cut_off"] + report["filtered_degenerate"] + report["filtered_trimmed"]
            == report["candidates"],
        "prompts with + without kept == prompts":
            report["prompts_with_kept"] + report["prompts_without_kept"] == report["prompts"],
        "sft records == prompts with kept": report["sft_records"] == report["prompts_with_kept"],
        "pairs + skipped == prompts with kept":
            report["preference_pairs"] + report["pairs_skipped_below_margin"] == report["prompts_with_kept"],
        "model choices == prompts": sum(report["model_choice_counts"].values()) == report["prompts"],
    }
    broken = [name for name, holds in identities.items() if not holds]
    if broken:
        raise RuntimeError(f"rejection sampling counts do not reconcile: {', '.join(broken)}")
