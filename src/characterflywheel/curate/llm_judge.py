"""An LLM judge as annotator: AI feedback that fills annotation tasks, for teams without annotators.

``LLMJudge`` asks any OpenAI-compatible chat server (vLLM, SGLang, a hosted API; the official
``openai`` client, temperature 0, a small ``max_tokens``) to label the tasks of
``characterflywheel.data.annotation`` the way UltraFeedback and distilabel collect AI feedback: a
rubric (``DEFAULT_RUBRIC`` or the team's own), the conversation with the character's system prompt
(its card: the rules the reply must keep), then the reply or replies, and a verdict on a last line.

* Pairwise: asked twice, the replies as A/B and then as B/A. LLM judges favour a position (often
  the first); a verdict that follows the position instead of the reply flips between the two
  orders. So a task gets a label only when both orders choose the same reply; when they choose
  different replies the task stays unlabelled and counts as a ``position_disagreement``.
* Rating: asked once for a 1-5 score.
* The answer is read from its verdict line, ``Answer: A`` / ``Rating: 4`` (the last one, so reasons
  before it, markdown emphasis and ``<think>`` blocks are fine; a bare ``A`` or ``4`` is taken too).
  An answer without a readable verdict counts as ``unparseable`` and labels nothing; it never
  stops the run. A server that cannot be reached or refuses a request does:
  ``JudgeEndpointError``, one line naming the base_url and the model.

Labels come back as ``Annotation`` records with ``annotator_id`` ``llm:<model>``, so the judge is a
``Filler`` for ``annotate.run_annotate`` and the production environment like any annotator pool;
``JudgeCounts`` reconcile: ``tasks == labelled + position_disagreements + unparseable_tasks``.
``judge_agreement(judge, people)`` measures the judge against people's labels of the same tasks
with the agreement code people's own labels get (``annotate.agreement_report``).

Why our own code and not distilabel: we need our task format in and out (task ids, the extra
``prompt_id``/``sources`` keys the reward stage joins on, the quarantine-checked ``Annotation``) and
both-order position handling with a count of the disagreements; distilabel's UltraFeedback task
rates replies in one order. distilabel is on PyPI (1.5.3 in this workplace's package list) but not
installed in our environment, and it would bring a pipeline framework for what is two prompts and
two regular expressions here.

This module takes plain arguments; reading the ``[llm_judge]`` config section is the wiring's
(``production.py``). It imports ``openai`` only when a judge is built and scikit-learn only in
``judge_agreement``: ``config`` imports ``DEFAULT_RUBRIC`` from here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from characterflywheel.data.annotation import Annotation, AnnotationTask

__all__ = ["DEFAULT_RUBRIC", "JudgeCounts", "JudgeEndpointError", "LLMJudge", "judge_agreement",
           "judge_messages", "parse_preference", "parse_rating"]

DEFAULT_RUBRIC = """\
A good reply from a character is:
1. Engaging: it gives the user something to answer (a question, a hook, a feeling), not a dead end.
2. In character: the voice, knowledge and manner of the character described in the system prompt; it \
never breaks the fourth wall or talks like a generic AI assistant.
3. True to the card's rules: whatever the system prompt says the character must or must not do \
(topics, length, language, style), the reply does.
4. Finished: a complete reply, not cut off mid-sentence.
5. Specific: it answers this user's last message, not a stock line that would fit any conversation.
Being longer is no merit in itself."""

_SYSTEM = ("You are an expert annotator for a character chat app. You judge a character's reply to a "
           "conversation by this rubric:\n\n{rubric}\n\nJudge what the replies say: the order in which they "
           "are shown is no reason to prefer one.")
_PAIRWISE_QUESTION = ('Which reply is better by the rubric? Give at most two sentences of reasons, then a last '
                      'line that is exactly "Answer: A" or "Answer: B".')
_RATING_QUESTION = ('How good is the reply by the rubric, from 1 (bad) to 5 (excellent)? Give at most two '
                    'sentences of reasons, then a last line that is exactly "Rating: N" with N a whole number '
                    'from 1 to 5.')

# The verdict must end its line, so "the answer: a reply that ..." in the reasons is not read as "A".
_VERDICT_END = r"\s*[\])\"'.!]*\s*$"
_PREFERENCE = re.compile(r"answer(?:\s+is)?\s*[:=\-]?\s*(?:reply|response)?\s*[\[(\"']?\s*([AB])" + _VERDICT_END,
                         re.IGNORECASE | re.MULTILINE)
_RATING = re.compile(r"(?:rating|score)(?:\s+is)?\s*[:=\-]?\s*[\[(\"']?\s*([1-5])\s*(?:/\s*5|out of 5)?"
                     + _VERDICT_END, re.IGNORECASE | re.MULTILINE)
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_MARKDOWN = str.maketrans("", "", "*_`#")


class JudgeEndpointError(RuntimeError):
    """The judge's server could not be reached or refused a request (one line: base_url, model, why)."""


def _plain(answer: str) -> str:
    return _THINKING.sub("", answer).translate(_MARKDOWN).strip()


def parse_preference(answer: str) -> int | None:
    """0 for "Answer: A", 1 for "Answer: B" (the last verdict line), None when there is none."""
    text = _plain(answer)
    found = _PREFERENCE.findall(text)
    verdict = found[-1] if found else text.strip(" .!()[]\"'")
    return {"A": 0, "B": 1}.get(verdict.upper()) if len(verdict) == 1 else None


def parse_rating(answer: str) -> int | None:
    """The 1-5 score of "Rating: 4" (the last verdict line, "4/5" too), None when there is none."""
    text = _plain(answer)
    found = _RATING.findall(text)
    verdict = found[-1] if found else text.strip(" .!()[]\"'")
    return int(verdict) if verdict in {"1", "2", "3", "4", "5"} else None


def judge_messages(task: AnnotationTask, rubric: str, swapped: bool = False) -> list[dict[str, str]]:
    """The judge's chat for one task: the rubric as its system prompt; the character's card, the
    conversation and the reply (rating) or replies (pairwise; ``swapped`` shows response 1 as A)."""
    card = "\n\n".join(turn.content for turn in task.messages if turn.role == "system") or "(no system prompt)"
    conversation = "\n".join(f"{'User' if turn.role == 'user' else 'Character'}: {turn.content}"
                             for turn in task.messages if turn.role != "system")
    parts = [f"The character's system prompt (its card and rules):\n<card>\n{card}\n</card>",
             f"The conversation so far:\n<conversation>\n{conversation}\n</conversation>"]
    if task.kind == "pairwise":
        first, second = reversed(task.responses) if swapped else task.responses
        parts += [f"Reply A:\n<reply_a>\n{first}\n</reply_a>", f"Reply B:\n<reply_b>\n{second}\n</reply_b>",
                  _PAIRWISE_QUESTION]
    else:
        parts += [f"The character's reply:\n<reply>\n{task.responses[0]}\n</reply>", _RATING_QUESTION]
    return [{"role": "system", "content": _SYSTEM.format(rubric=rubric.strip())},
            {"role": "user", "content": "\n\n".join(parts)}]


@dataclass
class JudgeCounts:
    """One judging pass: ``tasks == labelled + position_disagreements + unparseable_tasks``."""

    tasks: int = 0
    asked: int = 0  # requests sent: two per pairwise task (both orders), one per rating task
    labelled: int = 0
    position_disagreements: int = 0  # pairwise tasks whose two orders chose different replies
    unparseable: int = 0  # answers without a readable verdict
    unparseable_tasks: int = 0  # tasks left unlabelled because of one

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class LLMJudge:
    """Labels annotation tasks with an OpenAI-compatible chat model (see the module docstring).

    ``api_key``: the key itself (the wiring reads it from the environment variable the config
    names); empty sends a placeholder, as local servers want none. ``concurrency`` requests are in
    flight at once (threads: the client is thread-safe and the work waits on the network)."""

    def __init__(self, base_url: str, model: str, rubric: str = DEFAULT_RUBRIC, *, api_key: str = "",
                 max_tokens: int = 256, concurrency: int = 8, timeout_s: float = 120.0, max_retries: int = 2) -> None:
        from openai import OpenAI

        if not base_url or not model:
            raise ValueError("the LLM judge needs a base_url (e.g. http://127.0.0.1:8000/v1) and a model name")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.base_url, self.model, self.rubric = base_url, model, rubric
        self.max_tokens, self.concurrency = max_tokens, concurrency
        self.client = OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout_s, max_retries=max_retries)
        self.last_counts = JudgeCounts()

    @property
    def annotator_id(self) -> str:
        return f"llm:{self.model}"

    def __call__(self, tasks: Sequence[AnnotationTask]) -> list[Annotation]:
        """A ``Filler``: the labels only (the counts stay in ``last_counts``)."""
        return self.judge(tasks)[0]

    def judge(self, tasks: Sequence[AnnotationTask]) -> tuple[list[Annotation], JudgeCounts]:
        """One label per task the judge could decide, in task order, and the counts."""
        tasks = list(tasks)
        requests = [(task, swapped) for task in tasks
                    for swapped in ((False, True) if task.kind == "pairwise" else (False,))]
        answers = iter(self._ask_all([judge_messages(task, self.rubric, swapped) for task, swapped in requests]))
        counts = JudgeCounts(tasks=len(tasks), asked=len(requests))
        annotations = []
        for task in tasks:
            if task.kind == "pairwise":
                as_shown, swapped_back = parse_preference(next(answers)), parse_preference(next(answers))
                verdicts = [as_shown, None if swapped_back is None else 1 - swapped_back]  # B/A: "A" is response 1
                label = {"preferred": verdicts[0]} if verdicts[0] == verdicts[1] else None
            else:
                verdicts = [parse_rating(next(answers))]
                label = {"rating": verdicts[0]}
            unreadable = sum(verdict is None for verdict in verdicts)
            counts.unparseable += unreadable
            if unreadable:
                counts.unparseable_tasks += 1
            elif label is None:
                counts.position_disagreements += 1
            else:
                counts.labelled += 1
                annotations.append(Annotation.model_validate(
                    task.model_dump(mode="json") | {"annotator_id": self.annotator_id, "label": label}))
        self.last_counts = counts
        return annotations, counts

    def _ask_all(self, chats: list[list[dict[str, str]]]) -> list[str]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures: list[Future[str]] = [pool.submit(self._ask, chat) for chat in chats]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:  # the server is failing: do not send the rest
                    future.cancel()
                raise

    def _ask(self, chat: list[dict[str, str]]) -> str:
        from openai import APIError, APIStatusError

        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=chat, temperature=0.0, max_tokens=self.max_tokens)  # type: ignore[arg-type]
        except APIStatusError as error:
            raise JudgeEndpointError(f"LLM judge {self.base_url} (model {self.model!r}): HTTP {error.status_code}: "
                                     f"{' '.join(str(error.message).split())}") from None
        except APIError as error:
            raise JudgeEndpointError(f"LLM judge {self.base_url} (model {self.model!r}): "
                                     f"{' '.join(str(error).split())} (is the server running?)") from None
        # No choice or no text is an answer without a verdict (counted), not a broken server.
        return (response.choices[0].message.content or "") if response.choices else ""


def judge_agreement(judge_annotations: Iterable[Annotation],
                    human_annotations: Iterable[Annotation]) -> dict[str, float]:
    """The judge against people on the tasks both labelled, each (judge, person) label pair counted.

    Per kind: ``<kind>_tasks`` (tasks both labelled), ``<kind>_label_pairs``, ``<kind>_agreement``
    (share of pairs where the judge gave the person's label) and ``<kind>_kappa`` -- Cohen's kappa
    (pairwise) or quadratic-weighted kappa (rating) computed by ``annotate.agreement_report``, the
    code that gives people's agreement with each other (pooled over both orders of each pair), so
    that "judge vs people" reads against "people vs people" in ``agreement.json``; plus
    ``rating_correlation`` (Pearson). A figure that is undefined (no pair, one label value) is left
    out. ``judge_annotations``: one judge, one label per task."""
    from characterflywheel.curate.annotate import agreement_report  # lazy: see the module docstring

    judged = {(annotation.kind, annotation.task_id): annotation for annotation in judge_annotations}
    pairs: list[Annotation] = []
    tasks: dict[str, set[str]] = {"pairwise": set(), "rating": set()}
    ratings: list[tuple[int, int]] = []
    for human in human_annotations:
        judge = judged.get((human.kind, human.task_id))
        if judge is None:
            continue
        tasks[human.kind].add(human.task_id)
        # Each (judge, person) pair as a task of its own with two annotators: agreement_report then
        # compares exactly these two labels, never two people's.
        pair_id = f"{human.task_id}|{human.annotator_id}"
        pairs += [judge.model_copy(update={"task_id": pair_id, "annotator_id": "judge"}),
                  human.model_copy(update={"task_id": pair_id, "annotator_id": "person"})]
        if human.kind == "rating":
            assert judge.label.rating is not None and human.label.rating is not None
            ratings.append((judge.label.rating, human.label.rating))
    pooled = agreement_report(pairs)
    result: dict[str, float] = {}
    for kind in ("pairwise", "rating"):
        result[f"{kind}_tasks"] = float(len(tasks[kind]))
        for name in ("label_pairs", "percent_agreement", "kappa"):
            if f"{kind}_{name}" in pooled:
                result[f"{kind}_{name.removeprefix('percent_')}"] = pooled[f"{kind}_{name}"]
    if len(ratings) > 1 and len({r[0] for r in ratings}) > 1 and len({r[1] for r in ratings}) > 1:
        result["rating_correlation"] = float(np.corrcoef(np.array(ratings, dtype=float).T)[0, 1])
    return result
