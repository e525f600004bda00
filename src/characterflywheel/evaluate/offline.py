"""Offline evaluation of a child model on held-out prompts (issue 7 item 1).

``evaluate_child`` takes held-out prompt records (the curation contract: ``prompt_id``,
``character_id``, ``prompt`` = messages ending with a user turn), the child's, the parent's and
optionally a reference model's replies to them (one reply per prompt, aligned), and reports:

* **win rate vs parent / vs reference judged by the reward models**: ``judge.win_rate(prompts, a, b)``
  gives per-prompt P(a beats b); with ``symmetrize_judge`` each pair is also judged in the swapped
  order and ``(p_ab + 1 - p_ba) / 2`` is used, which cancels a pairwise model's position bias. The
  figure is the mean over prompts with a percentile-bootstrap CI over prompts. With several replies
  per prompt (``child_samples`` / ``parent_samples``; ``samples_per_prompt`` in the stage) a prompt's
  figure is the mean over its pairs of replies: one reply a prompt leaves each reply's sampling noise
  in the figure, and 32 prompts x 1 pair could not tell a child that gained +0.03 true engagement from
  one that lost (docs/climb.md, "Sixth round").
* **win rate judged by annotators** (when ``annotator_filler`` is given): one pairwise task per prompt
  and opponent, the child's reply shown first or second at random (seeded), written as
  ``annotation_tasks.jsonl`` (the :mod:`characterflywheel.data.annotation` format, so real annotators
  or a labelling tool can fill it) with the answer key apart in ``annotation_key.jsonl``. The
  filler -- ``list[AnnotationTask] -> list[Annotation]``, simulated annotators in the demo -- labels
  them; the figure is the mean over tasks of the share of a task's annotators preferring the child,
  bootstrap CI over tasks (annotators of one task are not independent). Annotations filled later
  by people are scored with ``annotator_win_rates(key_path, annotations_path)``.
* **user-signal win rate** (when a ``user_signal`` model is given): share of prompts where the
  child's predicted engagement (mean of P(continue) and P(thumbs up)) beats the parent's (ties
  count half), bootstrap CI. Paper 7.4: past ~65 % the proxy is being hacked (gated in ``gates``).
  And the child's mean predicted P(continue) minus the parent's, per prompt (bootstrap CI).
* **evidence vs parent** (``Evidence``): the reward models' and the user-signal model's paired z
  over the prompts and their Stouffer sum, the user signal weighted by its held-out skill, which ``gates``
  can gate on (``min_evidence_z``).
* **instruction following and violation rates** of child and parent, from each prompt's character
  card (:mod:`characterflywheel.characters.instructions`; following = share of replies with an applicable
  rule that followed them all, violation = share of failed (reply, rule) checks) over **every** reply
  to each prompt, and child-minus-parent differences paired by prompt; prompts are the clusters of
  each interval (``stats.clustered_rate``, ``stats.paired_rate_difference``). From the first reply
  alone, with Newcombe's interval, a demo gate's difference had a CI of about +-0.2: no step one
  generation takes in steerability could pass a gate asking for it (docs/climb.md, "Fourteenth round").
* **broken-reply rates** of child and parent over every sampled reply (loops, emoji spam, fewer than
  5 words: ``sample.failures.broken_reply``, what scrambled weights write; and an echo of the
  character's earlier reply in the prompt's conversation), clustered by prompt, and the
  child-minus-parent difference paired by prompt (bootstrap CI): a child can break in ways reward
  models trained on a few hundred rows score at chance, and the gates stop it here.
* **style figures** (:mod:`characterflywheel.evaluate.style`) of the child's replies against their
  reward-model scores (the judge's pointwise scorer when it has one), with parent movement; and the
  **history-bias** reports of child and parent plus the reintroduction flag
  (:mod:`characterflywheel.evaluate.history_bias`).
* a **per-character** breakdown of the win rates and instruction rates.

Every figure is ``{value, lo, hi, n}`` (``Estimate``); ``OfflineReport.to_dict()`` is JSON-ready and is
what ``gates.apply_gates`` reads.

Generating the replies is the caller's job; ``generate_replies(backend, prompts, params)`` does it
with any generation backend. The reference may be any model: the generation-0 model through the
``fast`` backend, or a model behind an OpenAI-compatible endpoint (the paper used GPT-4o)::

    reference = make_backend("openai", "gpt-4o", base_url="https://api.openai.com/v1")
    reference_replies = generate_replies(reference, prompts, SamplingParams(max_new_tokens=64))

``run_offline_evaluation`` is the stage function wiring it all: it picks held-out prompts, generates
(caching replies in ``replies.jsonl`` so a killed stage resumes without regenerating), evaluates and
writes ``offline_report.json``. ``characterflywheel.reward`` is not imported here: the judge is any
object with ``win_rate`` (and ``pointwise.score`` or ``score_groups``), as in the reward contract.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from characterflywheel import artifacts
from characterflywheel.characters import Character, load_characters
from characterflywheel.characters.from_system import conversation_card
from characterflywheel.data.annotation import Annotation, AnnotationTask, ChatTurn, read_annotations
from characterflywheel.data.jsonl import write_json, write_jsonl
from characterflywheel.data.records import check_prompts, read_prompts
from characterflywheel.evaluate.history_bias import ReintroductionReport, history_bias, reintroduction_flag
from characterflywheel.characters.instructions import InstructionReport, evaluate_replies
from characterflywheel.evaluate.settings import EvaluateConfig
from characterflywheel.evaluate.stats import Estimate, bootstrap_mean, clustered_rate, paired_rate_difference, paired_z
from characterflywheel.evaluate.style import StyleReport, style_monitor
from characterflywheel.reward.protocols import Judge
from characterflywheel.sample.failures import broken_reply, earlier_replies

__all__ = [
    "AnnotatorFiller",
    "OfflineReport",
    "annotator_win_rates",
    "build_pairwise_tasks",
    "evaluate_child",
    "generate_replies",
    "judge_win_rates",
    "run_offline_evaluation",
    "select_heldout_prompts",
]

AnnotatorFiller = Callable[[list[AnnotationTask]], list[Annotation]]
PARENT, REFERENCE = "parent", "reference"
REPLIES_FILE, REPORT_FILE = artifacts.REPLIES, "offline_report.json"


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------


def _check_replies(replies: Sequence[str], count: int, name: str) -> list[str]:
    if len(replies) != count:
        raise ValueError(f"{name}: {len(replies)} replies for {count} prompts (one per prompt, aligned)")
    for index, reply in enumerate(replies):
        if not isinstance(reply, str):
            raise ValueError(f"{name}[{index}]: must be a string (got {type(reply).__name__})")
    return list(replies)


def _check_samples(samples: Sequence[Sequence[str]] | None, first: list[str], name: str) -> list[list[str]]:
    """Every reply per prompt; without samples, the one reply per prompt."""
    if samples is None:
        return [[reply] for reply in first]
    groups = [list(group) for group in samples]
    if len(groups) != len(first):
        raise ValueError(f"{name}: {len(groups)} groups of replies for {len(first)} prompts (one per prompt, aligned)")
    for index, group in enumerate(groups):
        if not group or not all(isinstance(reply, str) for reply in group) or group[0] != first[index]:
            raise ValueError(f"{name}[{index}]: must be a non-empty list of strings starting with the prompt's reply")
    return groups


def select_heldout_prompts(records: Sequence[Mapping[str, Any]], count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Up to ``count`` records spread evenly over characters (round-robin over a seeded shuffle)."""
    rng = np.random.default_rng(seed)
    by_character: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        by_character[str(record.get("character_id"))].append(record)
    queues = []
    for character in sorted(by_character):
        group = by_character[character]
        queues.append([group[i] for i in rng.permutation(len(group))])
    chosen: list[dict[str, Any]] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(dict(queue.pop(0)))
    return chosen


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------


def generate_replies(backend: Any, prompts: Sequence[Mapping[str, Any]], params: Any,
                     progress: bool = False) -> list[str]:
    """One reply per prompt record from any generation backend (``params``: ``SamplingParams``, n=1)."""
    if getattr(params, "n", 1) != 1:
        raise ValueError(f"params.n: offline evaluation takes one reply per prompt (got n={params.n})")
    return [replies[0] for replies in generate_samples(backend, prompts, params, progress)]


def generate_samples(backend: Any, prompts: Sequence[Mapping[str, Any]], params: Any,
                     progress: bool = False) -> list[list[str]]:
    """``params.n`` replies per prompt record from any generation backend."""
    conversations = [list(record["prompt"]) for record in check_prompts(prompts)]
    return [list(replies) for replies in backend.chat(conversations, params, progress=progress)]


# --------------------------------------------------------------------------------------------------
# Reward-model judge
# --------------------------------------------------------------------------------------------------


def _probabilities(values: Any, count: int, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.size != count:
        raise ValueError(f"{what}: returned {array.size} values for {count} prompts")
    if np.any(~np.isfinite(array)) or np.any((array < 0) | (array > 1)):
        raise ValueError(f"{what}: returned values outside [0, 1]")
    return array


def judge_win_rates(judge: Judge, conversations: Sequence[list[dict]], replies_a: Sequence[str],
                    replies_b: Sequence[str], symmetrize: bool = True) -> np.ndarray:
    """Per-prompt P(a beats b) from the judge, averaged over both orders when ``symmetrize``."""
    forward = _probabilities(judge.win_rate(conversations, replies_a, replies_b), len(conversations),
                             "judge.win_rate")
    if not symmetrize:
        return forward
    backward = _probabilities(judge.win_rate(conversations, replies_b, replies_a), len(conversations),
                              "judge.win_rate")
    return (forward + 1.0 - backward) / 2.0


def _pointwise_rewards(judge: Any, conversations: Sequence[list[dict]], replies: Sequence[str]) -> np.ndarray:
    """Reward per reply: the judge's pointwise scorer, else its combined score of one-reply groups."""
    pointwise = getattr(judge, "pointwise", None)
    if pointwise is not None and hasattr(pointwise, "score"):
        scores = pointwise.score(conversations, replies)
    elif hasattr(judge, "score"):
        scores = judge.score(conversations, replies)
    elif hasattr(judge, "score_groups"):
        scores = [float(np.asarray(group).reshape(-1)[0])
                  for group in judge.score_groups(conversations, [[reply] for reply in replies])]
    else:
        raise TypeError("judge: needs pointwise.score, score or score_groups to give the style monitor rewards")
    return np.asarray(scores, dtype=float).reshape(-1)


def sample_win_rates(judge: Judge, conversations: Sequence[list[dict]], child: Sequence[Sequence[str]],
                     opponent: Sequence[Sequence[str]], symmetrize: bool = True) -> np.ndarray:
    """Per-prompt P(child beats opponent): ``judge_win_rates`` over the prompt's pairs of replies (the
    j-th child reply against the j-th opponent reply, as many pairs as the shorter side has), averaged."""
    pairs = [min(len(a), len(b)) for a, b in zip(child, opponent)]
    flat_conversations = [conversation for conversation, k in zip(conversations, pairs) for _ in range(k)]
    wins = judge_win_rates(judge, flat_conversations, [r for group, k in zip(child, pairs) for r in group[:k]],
                           [r for group, k in zip(opponent, pairs) for r in group[:k]], symmetrize)
    return np.asarray([chunk.mean() for chunk in np.split(wins, np.cumsum(pairs)[:-1])])


def _user_signal_means(user_signal: Any, conversations: Sequence[list[dict]],
                       groups: Sequence[Sequence[str]]) -> np.ndarray:
    """(prompts, heads): a prompt's mean predicted signal per head over its replies."""
    flat_conversations = [c for c, group in zip(conversations, groups) for _ in group]
    scores = np.asarray(user_signal.predict(flat_conversations, [r for group in groups for r in group]),
                        dtype=float).reshape(sum(map(len, groups)), -1)
    return np.stack([chunk.mean(axis=0) for chunk in np.split(scores, np.cumsum([len(g) for g in groups])[:-1])])


def _continue_model_se(user_signal: Any, child_groups: Sequence[Sequence[str]],
                       parent_groups: Sequence[Sequence[str]]) -> float:
    """The user-signal model's own standard error of the mean child-minus-parent P(continue): its spread
    over the habits' bootstrap refits (``reward.habits``); 0 for a model without them."""
    draws_of = getattr(user_signal, "continue_draws", None)
    if draws_of is None:
        return 0.0

    def per_prompt(groups: Sequence[Sequence[str]]) -> np.ndarray | None:
        draws = draws_of([reply for group in groups for reply in group])
        if draws is None:
            return None
        chunks = np.split(draws, np.cumsum([len(group) for group in groups])[:-1], axis=1)
        return np.stack([chunk.mean(axis=1) for chunk in chunks], axis=1)  # (draws, prompts)

    child, parent = per_prompt(child_groups), per_prompt(parent_groups)
    if child is None or parent is None or len(child) < 2:
        return 0.0
    return float((child - parent).mean(axis=1).std(ddof=1))


def _user_signal_wins(child_means: np.ndarray, parent_means: np.ndarray) -> np.ndarray:
    """1 / 0.5 / 0 per prompt: the child's mean predicted signal (over its replies and the model's heads)
    above / equal / below the parent's."""
    child_mean, parent_mean = child_means.mean(axis=1), parent_means.mean(axis=1)
    return np.where(child_mean > parent_mean, 1.0, np.where(child_mean < parent_mean, 0.0, 0.5))


@dataclass(frozen=True)
class Evidence:
    """How strongly the flywheel's own scorers say the child beats its parent, paired by prompt: the
    reward models' per-prompt win rate minus 0.5 and the user-signal model's per-prompt P(continue)
    difference, each as ``paired_z`` (mean over its standard error), and their weighted Stouffer
    combination ``(z_rm + w z_us) / sqrt(1 + w^2)`` (the reward models' z alone without a user-signal
    model, or with ``w = 0``). The user signal's standard error includes its model's own
    (``user_signal_model_se``, the habits' bootstrap spread): fitted on a window's few hundred turns, its
    coefficients' error is shared by every prompt.

    Why both: on the gate's own held-out replies (32 prompts x 4) of 19 generations of 8 earlier runs
    (docs/climb.md, "Tenth round"), the reward models' z read a first generation's step well and later
    ones hardly at all (their children are selected on them), the user-signal model's more often the
    other way round. Why the model's error: without it, 5 of 18 later generations were stopped by a
    user-signal z of -2.5 to -5.4 that came from one uncertain coefficient (docs/climb.md, "Thirteenth
    round"). Why the weight ``w`` (``user_signal_weight``): a z says how sure a scorer is of its own
    difference, not how well that scorer tracks what users do. Stouffer's best weights are each z's
    expected size under a real gain, which grows with the scorer's validity; the user-signal model's is
    measured where the flywheel can see it, its Somers' D (2 AUC - 1) for continuing on the window's
    held-out conversations (``heldout_continue_auc``). On the windows measured that AUC is 0.41-0.62
    (demo windows, median 0.53; `five12`'s 0.535-0.590), and equal weights let a user-signal z of -2.98
    stop a child +0.056 ahead of its parent whose reward models read +2.51 (docs/climb.md, "Fourteenth
    round", "Fifteenth round")."""

    reward_model_z: float | None
    user_signal_z: float | None
    combined_z: float | None
    n: int
    user_signal_model_se: float | None = None
    user_signal_weight: float | None = None
    heldout_continue_auc: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def user_signal_weight(heldout_continue_auc: float | None, rule: str) -> float:
    """The user signal's weight beside the reward models' (1): 1 under ``equal``; under
    ``heldout_skill`` its Somers' D on held-out conversations, 2 AUC - 1 clipped to [0, 1] (0 when the AUC
    is unknown: a scorer with no measured skill gets no vote)."""
    if rule == "equal":
        return 1.0
    if heldout_continue_auc is None or not math.isfinite(heldout_continue_auc):
        return 0.0
    return float(np.clip(2.0 * heldout_continue_auc - 1.0, 0.0, 1.0))


def parent_evidence(reward_model_wins: np.ndarray, continue_difference: np.ndarray | None,
                    continue_model_se: float = 0.0, weight: float = 1.0,
                    heldout_continue_auc: float | None = None) -> Evidence:
    reward_model_z = paired_z(np.asarray(reward_model_wins, dtype=float) - 0.5)
    user_signal_z = None if continue_difference is None else paired_z(continue_difference, continue_model_se)
    weighted = [(w, z) for w, z in ((1.0, reward_model_z), (weight, user_signal_z)) if z is not None and w > 0]
    combined = (sum(w * z for w, z in weighted) / math.sqrt(sum(w * w for w, _ in weighted))
                if weighted else None)
    measured = continue_difference is not None
    return Evidence(reward_model_z, user_signal_z, combined, len(reward_model_wins),
                    continue_model_se if measured else None, weight if measured else None,
                    heldout_continue_auc if measured else None)


# --------------------------------------------------------------------------------------------------
# Annotators
# --------------------------------------------------------------------------------------------------


def build_pairwise_tasks(prompts: Sequence[Mapping[str, Any]], child_replies: Sequence[str],
                         other_replies: Sequence[str], opponent: str, seed: int = 0
                         ) -> tuple[list[AnnotationTask], list[dict[str, Any]]]:
    """One pairwise task per prompt (child first or second at random) and the answer key rows."""
    rng = np.random.default_rng([seed, sum(map(ord, opponent))])
    tasks, key = [], []
    for index, (record, child, other) in enumerate(zip(prompts, child_replies, other_replies)):
        child_index = int(rng.integers(2))
        responses = [child, other] if child_index == 0 else [other, child]
        task_id = f"eval-{opponent}-{index}-{record.get('prompt_id', index)}"
        tasks.append(AnnotationTask(
            task_id=task_id, kind="pairwise", character_id=record.get("character_id"),
            messages=[ChatTurn(role=m["role"], content=m["content"]) for m in record["prompt"]],
            responses=responses,
        ))
        key.append({"task_id": task_id, "opponent": opponent, "child_index": child_index, "prompt_index": index,
                    "character_id": record.get("character_id")})
    return tasks, key


def _task_preferences(annotations: Iterable[Annotation], key: Mapping[str, Mapping[str, Any]]
                      ) -> dict[str, list[float]]:
    """task_id -> 1.0/0.0 per annotator (preferred the child or not)."""
    prefs: dict[str, list[float]] = defaultdict(list)
    for annotation in annotations:
        entry = key.get(annotation.task_id)
        if entry is None or annotation.kind != "pairwise" or annotation.label.preferred is None:
            continue
        prefs[annotation.task_id].append(float(annotation.label.preferred == entry["child_index"]))
    return prefs


def _annotator_figures(annotations: Sequence[Annotation], key_rows: Sequence[Mapping[str, Any]],
                       settings: EvaluateConfig) -> tuple[dict[str, Estimate], dict[str, dict[str, Estimate]], int]:
    """Per opponent: overall figure; per opponent and character: figure; and annotations used."""
    key = {row["task_id"]: row for row in key_rows}
    prefs = _task_preferences(annotations, key)
    shares: dict[str, list[float]] = defaultdict(list)
    by_character: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for task_id, values in prefs.items():
        row = key[task_id]
        share = float(np.mean(values))
        shares[row["opponent"]].append(share)
        by_character[row["opponent"]][str(row.get("character_id"))].append(share)
    boot = (settings.confidence, settings.bootstrap, settings.seed)
    overall = {opponent: bootstrap_mean(values, *boot) for opponent, values in shares.items()}
    per_character = {opponent: {character: bootstrap_mean(values, *boot) for character, values in groups.items()}
                     for opponent, groups in by_character.items()}
    return overall, per_character, sum(len(values) for values in prefs.values())


def annotator_win_rates(key_path: Path | str, annotations_path: Path | str,
                        settings: EvaluateConfig | None = None) -> dict[str, Estimate]:
    """Win rate of the child per opponent from an answer key and a filled annotations file."""
    settings = settings or EvaluateConfig()
    key_rows = [json.loads(line) for line in Path(key_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return _annotator_figures(list(read_annotations(annotations_path)), key_rows, settings)[0]


# --------------------------------------------------------------------------------------------------
# Instructions
# --------------------------------------------------------------------------------------------------


def _last_user_message(messages: Sequence[Mapping[str, Any]]) -> str | None:
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message["content"])
    return None


def _instruction_reports(prompts: Sequence[Mapping[str, Any]], samples: Sequence[Sequence[str]],
                         cards: Mapping[str, Character], indices: Iterable[int]) -> list[InstructionReport]:
    """One report per prompt at ``indices``, over every reply to it (its card's rules, its last user turn)."""
    reports = []
    for index in indices:
        card = conversation_card(prompts[index].get("character_id"), prompts[index]["prompt"], cards)
        rules = card.instructions if card is not None else ()
        user_message = _last_user_message(prompts[index]["prompt"])
        reports.append(evaluate_replies((reply, rules, user_message) for reply in samples[index]))
    return reports


def _instruction_figures(child: Sequence[InstructionReport], parent: Sequence[InstructionReport], confidence: float,
                         bootstrap: int, seed: int) -> tuple[dict[str, Estimate], dict[str, Estimate]]:
    """Following (replies keeping every applicable rule) and violation (failed checks) rates from each
    prompt's report over every reply of child and parent; prompts are the clusters of each interval, and
    the child-minus-parent differences are paired by prompt (``stats.paired_rate_difference``)."""
    boot = (confidence, bootstrap, seed)

    def counts(reports: Sequence[InstructionReport], field: str) -> np.ndarray:
        return np.array([getattr(report, field) for report in reports], dtype=float)

    figures = []
    for success, trials in (("followed", "applicable"), ("failed_checks", "checks")):
        c_s, c_n, p_s, p_n = (counts(child, success), counts(child, trials), counts(parent, success),
                              counts(parent, trials))
        figures.append({"child": clustered_rate(c_s, c_n, *boot), "parent": clustered_rate(p_s, p_n, *boot),
                        "child_minus_parent": paired_rate_difference(c_s, c_n, p_s, p_n, *boot)})
    return figures[0], figures[1]


def _broken_figures(conversations: Sequence[Sequence[Mapping[str, str]]], child: Sequence[Sequence[str]],
                    parent: Sequence[Sequence[str]], confidence: float, bootstrap: int,
                    seed: int) -> dict[str, Estimate]:
    """Shares of broken replies over every sample (an echo of the conversation's earlier replies counts),
    and the child-minus-parent difference of each prompt's share, bootstrapped over prompts (paired:
    both answered the same prompts)."""
    earlier = [earlier_replies(conversation) for conversation in conversations]

    def broken_flags(samples: Sequence[Sequence[str]]) -> list[list[bool]]:
        return [[broken_reply(reply, earlier=before) for reply in replies]
                for replies, before in zip(samples, earlier, strict=True)]

    child_broken, parent_broken = broken_flags(child), broken_flags(parent)
    difference = np.array([np.mean(c) - np.mean(p) for c, p in zip(child_broken, parent_broken, strict=True)])

    def rate(broken: list[list[bool]]) -> Estimate:
        return clustered_rate([sum(b) for b in broken], [len(b) for b in broken], confidence, bootstrap, seed)

    return {
        "child": rate(child_broken),
        "parent": rate(parent_broken),
        "child_minus_parent": bootstrap_mean(difference, confidence, bootstrap, seed),
    }


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def _figures_dict(figures: Mapping[str, Estimate | None]) -> dict[str, Any]:
    return {name: None if figure is None else figure.to_dict() for name, figure in figures.items()}


@dataclass
class OfflineReport:
    """Offline evaluation of one child (see the module docstring); ``to_dict()`` feeds the gates."""

    n_prompts: int
    characters: list[str]
    win_rate_vs_parent: dict[str, Estimate | None]
    win_rate_vs_reference: dict[str, Estimate | None] | None
    user_signal_win_rate_vs_parent: Estimate | None
    user_signal_continue_vs_parent: Estimate | None
    evidence_vs_parent: Evidence
    instruction_following: dict[str, Estimate]
    violation_rate: dict[str, Estimate]
    broken_reply_rate: dict[str, Estimate]
    per_character: dict[str, dict[str, Any]]
    style: StyleReport
    history_bias: dict[str, Any]
    reintroduction: ReintroductionReport
    annotation: dict[str, Any] = field(default_factory=dict)
    unknown_characters: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_prompts": self.n_prompts,
            "characters": self.characters,
            "win_rate_vs_parent": _figures_dict(self.win_rate_vs_parent),
            "win_rate_vs_reference": (None if self.win_rate_vs_reference is None
                                      else _figures_dict(self.win_rate_vs_reference)),
            "user_signal_win_rate_vs_parent": (None if self.user_signal_win_rate_vs_parent is None
                                               else self.user_signal_win_rate_vs_parent.to_dict()),
            "user_signal_continue_vs_parent": (None if self.user_signal_continue_vs_parent is None
                                               else self.user_signal_continue_vs_parent.to_dict()),
            "evidence_vs_parent": self.evidence_vs_parent.to_dict(),
            "instruction_following": _figures_dict(self.instruction_following),
            "violation_rate": _figures_dict(self.violation_rate),
            "broken_reply_rate": _figures_dict(self.broken_reply_rate),
            "per_character": {
                character: {metric: _nested_dict(value) for metric, value in metrics.items()}
                for character, metrics in self.per_character.items()
            },
            "style": self.style.to_dict(),
            "history_bias": self.history_bias,
            "reintroduction": self.reintroduction.to_dict(),
            "annotation": self.annotation,
            "unknown_characters": self.unknown_characters,
        }

    def metrics(self) -> dict[str, float]:
        """Flat numeric figures for MLflow (``context.log_metrics``); undefined values left out."""
        flat: dict[str, float] = {}

        def add(prefix: str, figure: Estimate | None) -> None:
            if figure is not None:
                for part, value in figure.to_dict().items():
                    if value is not None and part != "n":
                        flat[f"{prefix}.{part}" if part != "value" else prefix] = float(value)

        for judge_name, figure in self.win_rate_vs_parent.items():
            add(f"win_rate_vs_parent.{judge_name}", figure)
        for judge_name, figure in (self.win_rate_vs_reference or {}).items():
            add(f"win_rate_vs_reference.{judge_name}", figure)
        add("user_signal_win_rate_vs_parent", self.user_signal_win_rate_vs_parent)
        add("user_signal_continue_vs_parent", self.user_signal_continue_vs_parent)
        for part, value in self.evidence_vs_parent.to_dict().items():
            if part != "n" and value is not None:
                flat[f"evidence_vs_parent.{part}"] = float(value)
        for who, figure in self.instruction_following.items():
            add(f"instruction_following.{who}", figure)
        for who, figure in self.violation_rate.items():
            add(f"violation_rate.{who}", figure)
        for who, figure in self.broken_reply_rate.items():
            add(f"broken_reply_rate.{who}", figure)
        flat["style.flagged_features"] = float(len(self.style.flagged))
        return flat


def _nested_dict(value: Any) -> Any:
    if isinstance(value, Estimate):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {key: _nested_dict(item) for key, item in value.items()}
    return value


def _card_map(characters: Mapping[str, Character] | Sequence[Character] | None) -> dict[str, Character]:
    if characters is None:
        characters = load_characters()
    if isinstance(characters, Mapping):
        return dict(characters)
    return {character.id: character for character in characters}


def evaluate_child(
    prompts: Sequence[Mapping[str, Any]],
    child_replies: Sequence[str],
    parent_replies: Sequence[str],
    reference_replies: Sequence[str] | None = None,
    judge: Judge | None = None,
    annotator_filler: AnnotatorFiller | None = None,
    characters: Mapping[str, Character] | Sequence[Character] | None = None,
    settings: EvaluateConfig | None = None,
    *,
    user_signal: Any = None,
    style_rewards: Sequence[float] | np.ndarray | None = None,
    out_dir: Path | str | None = None,
    child_samples: Sequence[Sequence[str]] | None = None,
    parent_samples: Sequence[Sequence[str]] | None = None,
) -> OfflineReport:
    """Evaluate the child's replies against the parent's (and a reference's) on held-out prompts.

    ``child_samples`` / ``parent_samples``: every reply per prompt (the first of each being
    ``child_replies[i]`` / ``parent_replies[i]``), for the win rates against the parent, the instruction
    and broken-reply rates and the user signal; annotation tasks and the monitors read the first reply.

    ``judge``: the reward models (``RewardJudge`` or anything with ``win_rate``); required.
    ``style_rewards``: rewards of the child's replies for the style monitor (default: the judge's
    pointwise scores). ``out_dir``: where the annotation tasks, key and annotations are written.
    """
    if judge is None:
        raise ValueError("judge: offline evaluation needs the reward models (an object with win_rate)")
    settings = settings or EvaluateConfig()
    records = check_prompts(prompts)
    if not records:
        raise ValueError("prompts: no held-out prompts to evaluate")
    count = len(records)
    child = _check_replies(child_replies, count, "child_replies")
    parent = _check_replies(parent_replies, count, "parent_replies")
    reference = None if reference_replies is None else _check_replies(reference_replies, count, "reference_replies")
    cards = _card_map(characters)
    conversations = [list(record["prompt"]) for record in records]
    boot = (settings.confidence, settings.bootstrap, settings.seed)

    child_all = _check_samples(child_samples, child, "child_samples")
    parent_all = _check_samples(parent_samples, parent, "parent_samples")

    # Reward-model win rates, per prompt.
    per_prompt = {PARENT: sample_win_rates(judge, conversations, child_all, parent_all, settings.symmetrize_judge)}
    if reference is not None:
        per_prompt[REFERENCE] = judge_win_rates(judge, conversations, child, reference, settings.symmetrize_judge)

    # Annotators.
    annotation_info: dict[str, Any] = {}
    annotator_overall: dict[str, Estimate] = {}
    annotator_by_character: dict[str, dict[str, Estimate]] = {}
    opponents = {PARENT: parent, **({REFERENCE: reference} if reference is not None else {})}
    all_tasks: list[AnnotationTask] = []
    key_rows: list[dict[str, Any]] = []
    for opponent, replies in opponents.items():
        tasks, key = build_pairwise_tasks(records, child, replies, opponent, settings.seed)
        all_tasks.extend(tasks)
        key_rows.extend(key)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_jsonl(out / artifacts.ANNOTATION_TASKS, all_tasks)
        write_jsonl(out / artifacts.ANNOTATION_KEY, key_rows)
        annotation_info.update({"tasks_path": str(out / artifacts.ANNOTATION_TASKS), "key_path": str(out / artifacts.ANNOTATION_KEY)})
    annotation_info["tasks"] = len(all_tasks)
    if annotator_filler is not None:
        annotations = list(annotator_filler(all_tasks))
        annotator_overall, annotator_by_character, used = _annotator_figures(annotations, key_rows, settings)
        annotation_info["annotations"] = used
        if out_dir is not None:
            write_jsonl(Path(out_dir) / artifacts.ANNOTATIONS, annotations)
            annotation_info["annotations_path"] = str(Path(out_dir) / artifacts.ANNOTATIONS)

    def judged(opponent: str) -> dict[str, Estimate | None]:
        return {"reward_model": bootstrap_mean(per_prompt[opponent], *boot),
                "annotators": annotator_overall.get(opponent)}

    # Instructions, over every reply: one report per prompt, read whole and per character.
    child_if = _instruction_reports(records, child_all, cards, range(count))
    parent_if = _instruction_reports(records, parent_all, cards, range(count))
    following, violation = _instruction_figures(child_if, parent_if, *boot)
    broken = _broken_figures(conversations, child_all, parent_all, *boot)

    # Per character.
    by_character: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_character[str(record.get("character_id"))].append(index)
    per_character: dict[str, dict[str, Any]] = {}
    for character, indices in sorted(by_character.items()):
        c_following, c_violation = _instruction_figures([child_if[i] for i in indices],
                                                        [parent_if[i] for i in indices], *boot)
        entry: dict[str, Any] = {
            "n": len(indices),
            "win_rate_vs_parent": {
                "reward_model": bootstrap_mean(per_prompt[PARENT][indices], *boot),
                "annotators": annotator_by_character.get(PARENT, {}).get(character),
            },
            "instruction_following": c_following,
            "violation_rate": c_violation,
        }
        if reference is not None:
            entry["win_rate_vs_reference"] = {
                "reward_model": bootstrap_mean(per_prompt[REFERENCE][indices], *boot),
                "annotators": annotator_by_character.get(REFERENCE, {}).get(character),
            }
        per_character[character] = entry

    # Style and history bias.
    rewards = (np.asarray(style_rewards, dtype=float) if style_rewards is not None
               else _pointwise_rewards(judge, conversations, child))
    style = style_monitor(child, rewards, parent_replies=parent, settings=settings)
    child_history = history_bias(records, child, settings=settings)
    parent_history = history_bias(records, parent, settings=settings)
    reintroduction = reintroduction_flag(parent_history, child_history, settings=settings)

    user_signal_figure = continue_figure = continue_difference = None
    continue_model_se = 0.0
    auc = getattr(user_signal, "heldout_continue_auc", None)
    if user_signal is not None:
        child_means = _user_signal_means(user_signal, conversations, child_all)
        parent_means = _user_signal_means(user_signal, conversations, parent_all)
        user_signal_figure = bootstrap_mean(_user_signal_wins(child_means, parent_means), *boot)
        continue_difference = child_means[:, 0] - parent_means[:, 0]  # head 0: P(continue)
        continue_figure = bootstrap_mean(continue_difference, *boot)
        continue_model_se = _continue_model_se(user_signal, child_all, parent_all)

    unknown = sorted({key for key in by_character if key not in cards})
    return OfflineReport(
        n_prompts=count,
        characters=sorted(by_character),
        win_rate_vs_parent=judged(PARENT),
        win_rate_vs_reference=judged(REFERENCE) if reference is not None else None,
        user_signal_win_rate_vs_parent=user_signal_figure,
        user_signal_continue_vs_parent=continue_figure,
        evidence_vs_parent=parent_evidence(per_prompt[PARENT], continue_difference, continue_model_se,
                                           user_signal_weight(auc, settings.evidence_user_signal_weight), auc),
        instruction_following=following,
        violation_rate=violation,
        broken_reply_rate=broken,
        per_character=per_character,
        style=style,
        history_bias={"child": child_history.to_dict(), "parent": parent_history.to_dict()},
        reintroduction=reintroduction,
        annotation=annotation_info,
        unknown_characters=unknown,
    )


# --------------------------------------------------------------------------------------------------
# Stage function
# --------------------------------------------------------------------------------------------------


def _cached_replies(path: Path, prompt_ids: list[str], names: list[str],
                    samples: int) -> tuple[dict[str, list[str]], dict[str, list[list[str]]]] | None:
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if [row.get("prompt_id") for row in rows] != prompt_ids or not all(name in row for row in rows for name in names):
        return None
    sampled = [name for name in (PARENT, "child") if samples > 1]
    if not all(len(row.get("samples", {}).get(name, [])) == samples for row in rows for name in sampled):
        return None
    return ({name: [row[name] for row in rows] for name in names},
            {name: [row["samples"][name] for row in rows] for name in sampled})


def run_offline_evaluation(
    prompts_path: Path | str,
    out_dir: Path | str,
    child_backend: Any,
    parent_backend: Any,
    judge: Judge,
    settings: EvaluateConfig | None = None,
    *,
    sampling: Any = None,
    reference_backend: Any = None,
    annotator_filler: AnnotatorFiller | None = None,
    characters: Mapping[str, Character] | Sequence[Character] | None = None,
    user_signal: Any = None,
    progress: bool = False,
) -> OfflineReport:
    """Stage: held-out prompts (JSONL records) -> replies.jsonl, annotation files, offline_report.json.

    Backends come from ``models.make_backend`` (any of fast / transformers / openai); ``sampling`` is a
    ``SamplingParams`` (default: ``settings.max_new_tokens`` or 64 tokens, ``settings.temperature``,
    ``settings.seed``; the temperature falls back to SamplingParams' own). Child and parent answer each prompt ``settings.samples_per_prompt`` times (the
    reference once); a row of ``replies.jsonl`` holds each model's first reply and, with several, all of
    them under ``samples``. Replies already there for the same prompts are reused.
    """
    from characterflywheel.models import SamplingParams

    settings = settings or EvaluateConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prompts = select_heldout_prompts(read_prompts(prompts_path), settings.heldout_prompts, settings.seed)
    if not prompts:
        raise ValueError(f"{prompts_path}: no prompt records")
    temperature = {} if settings.temperature is None else {"temperature": settings.temperature}
    params = sampling or SamplingParams(max_new_tokens=settings.max_new_tokens or 64, seed=settings.seed, **temperature)
    k = settings.samples_per_prompt
    prompt_ids = [str(record.get("prompt_id", index)) for index, record in enumerate(prompts)]
    backends = {"child": child_backend, "parent": parent_backend}
    if reference_backend is not None:
        backends["reference"] = reference_backend
    cached = _cached_replies(out / REPLIES_FILE, prompt_ids, list(backends), k)
    if cached is None:
        groups: dict[str, list[list[str]]] = {}
        for name, backend in backends.items():
            # the same backend (the parent is the reference until a child is promoted) samples the same replies
            same = next((other for other in groups if backends[other] is backend), None)
            n = k if name in ("child", PARENT) else 1
            groups[name] = (groups[same] if same else
                            generate_samples(backend, prompts, dataclasses.replace(params, n=n), progress))
        replies = {name: [group[0] for group in groups[name]] for name in backends}
        samples = {name: groups[name] for name in ("child", PARENT)} if k > 1 else {}
        write_jsonl(out / REPLIES_FILE, (
            {"prompt_id": prompt_id, **{name: replies[name][index] for name in backends},
             **({"samples": {name: samples[name][index] for name in samples}} if samples else {})}
            for index, prompt_id in enumerate(prompt_ids)))
    else:
        replies, samples = cached
    report = evaluate_child(prompts, replies["child"], replies["parent"], replies.get("reference"), judge,
                            annotator_filler, characters, settings, user_signal=user_signal, out_dir=out,
                            child_samples=samples.get("child"), parent_samples=samples.get(PARENT))
    write_json(out / REPORT_FILE, report.to_dict())
    return report
