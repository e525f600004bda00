"""Phase I: mask PII in user and assistant turns and drop unsafe conversations.

Input: prompt records (``prompts.jsonl``). Output in ``out_dir``:

* ``clean.jsonl`` -- kept records, PII replaced by typed placeholders in every user and assistant
  message of the prompt and in the reply (system turns are the character's card and are kept);
* ``dropped.jsonl`` -- ``{"prompt_id", "conversation_id", "reason": "unsafe:<category>",
  "where": "prompt[3]" | "reply" | "conversation", "first_unsafe": "<prompt_id>/<where>",
  "probability": float, "lexicon": str|null}``;
* ``privacy_report.json`` -- ``PrivacyReport``: ``records_in == kept + dropped``, dropped counts
  per reason, masked records and spans per PII type, conversations in and dropped.

Decisions:

* Unsafe is judged per message. With ``unsafe_scope = "from_message"`` (the default) an unsafe
  message drops the records of its conversation from the first unsafe message's depth on: the
  records before it never saw it, and a long real conversation (some 40 sentences) is not lost to
  one hyperbolic line late in it (dropping whole conversations lost 20 % of real chit-chat
  records). ``"conversation"`` drops every record of the conversation. Dropped records that do not
  hold the message themselves get ``where: "conversation"``.
* Each distinct message text is masked and classified once (records of one conversation share
  their history), after masking: the classifier never needs the PII, and the masked text is what
  Phase II embeds, so it reuses the embeddings from the cache.
* Records are held in memory (a few KB each: fine for 10^5-10^6 prompts; a larger run would
  shard the input by conversation id).
* With ``settings.privacy`` off the records are copied through, and the report says so.

Detectors and classifier: ``pii.py`` and ``safety.py`` (their docstrings give the library choice).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from characterflywheel import artifacts
from characterflywheel.curate.embedding import EmbeddingCache
from characterflywheel.curate.pii import PiiSpan, mask_pii
from characterflywheel.curate.records import read_prompt_records, write_json, write_jsonl
from characterflywheel.curate.safety import SafetyClassifier, SafetyVerdict
from characterflywheel.curate.settings import CurateConfig
from characterflywheel.models.progress import show_bars

DROPPED_FILENAME = "dropped.jsonl"
PRIVACY_REPORT_FILENAME = "privacy_report.json"


@dataclass
class PrivacyReport:
    """Counts of one Phase I run; ``records_in == kept + dropped`` always."""

    enabled: bool = True
    records_in: int = 0
    kept: int = 0
    dropped: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    records_masked: int = 0
    masked_records_by_type: dict[str, int] = field(default_factory=dict)
    masked_spans_by_type: dict[str, int] = field(default_factory=dict)
    messages_checked: int = 0
    unsafe_messages_by_category: dict[str, int] = field(default_factory=dict)
    conversations_in: int = 0
    conversations_dropped: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        if self.records_in != self.kept + self.dropped or self.dropped != sum(self.dropped_by_reason.values()):
            raise AssertionError(f"privacy counts do not reconcile: {self.to_json()}")


@dataclass(frozen=True)
class MessageVerdict:
    masked: str
    spans: tuple[PiiSpan, ...]
    safety: SafetyVerdict | None


def _texts(record: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """(where, text) of every user/assistant message of a record, the reply last."""
    for index, message in enumerate(record["prompt"]):
        if message["role"] != "system":
            yield f"prompt[{index}]", message["content"]
    yield "reply", record["reply"]


def judge_messages(texts: Sequence[str], classifier: SafetyClassifier | None, region: str,
                   progress: bool = False) -> dict[str, MessageVerdict]:
    """Distinct text -> its masked form, PII spans and safety verdict (``None`` without a classifier)."""
    distinct = list(dict.fromkeys(texts))
    masked: list[tuple[str, list[PiiSpan]]] = [
        mask_pii(text, region) for text in tqdm(distinct, desc="pii", unit="msg", disable=not show_bars(progress), leave=False)
    ]
    verdicts: list[SafetyVerdict | None] = [None] * len(distinct)
    if classifier is not None:
        verdicts = list(classifier.classify([text for text, _ in masked]))
    return {
        text: MessageVerdict(masked_text, tuple(spans), verdict)
        for text, (masked_text, spans), verdict in zip(distinct, masked, verdicts)
    }


def filter_records(
    records: Sequence[dict[str, Any]], classifier: SafetyClassifier | None, region: str = "US",
    progress: bool = False, scope: str = "from_message",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], PrivacyReport]:
    """(kept records with PII masked, dropped entries with reasons, report); ``scope`` as ``unsafe_scope``."""
    if scope not in ("from_message", "conversation"):
        raise ValueError(f"unsafe_scope: expected 'from_message' or 'conversation', got {scope!r}")
    report = PrivacyReport(records_in=len(records))
    verdicts = judge_messages([text for record in records for _, text in _texts(record)], classifier, region, progress)
    report.messages_checked = len(verdicts)
    unsafe_by_category = Counter(v.safety.category for v in verdicts.values() if v.safety and v.safety.unsafe)
    report.unsafe_messages_by_category = dict(sorted(unsafe_by_category.items()))
    first_unsafe = first_unsafe_messages(records, verdicts)
    kept, dropped = [], []
    reasons: Counter[str] = Counter()
    masked_records: Counter[str] = Counter()
    masked_spans: Counter[str] = Counter()
    for record in records:
        conversation_id = record["conversation_id"]
        first = first_unsafe.get(conversation_id)
        if first is not None and (scope == "conversation" or record["depth"] >= first[0]):
            _, origin, safety = first
            own = [where for where, text in _texts(record) if (s := verdicts[text].safety) is not None and s.unsafe]
            reason = f"unsafe:{safety.category}"
            reasons[reason] += 1
            dropped.append({"prompt_id": record["prompt_id"], "conversation_id": conversation_id, "reason": reason,
                            "where": own[0] if own else "conversation", "first_unsafe": origin,
                            "probability": round(safety.probability, 4), "lexicon": safety.lexicon})
            continue
        spans_here: Counter[str] = Counter()
        prompt = []
        for message in record["prompt"]:
            if message["role"] == "system":
                prompt.append(dict(message))
                continue
            verdict = verdicts[message["content"]]
            spans_here.update(span.kind for span in verdict.spans)
            prompt.append({**message, "content": verdict.masked})
        reply_verdict = verdicts[record["reply"]]
        spans_here.update(span.kind for span in reply_verdict.spans)
        if spans_here:
            masked_records.update(spans_here.keys())
            masked_spans.update(spans_here)
            report.records_masked += 1
        kept.append({**record, "prompt": prompt, "reply": reply_verdict.masked})
    report.kept, report.dropped = len(kept), len(dropped)
    report.dropped_by_reason = dict(sorted(reasons.items()))
    report.masked_records_by_type = dict(sorted(masked_records.items()))
    report.masked_spans_by_type = dict(sorted(masked_spans.items()))
    report.conversations_in = len({record["conversation_id"] for record in records})
    report.conversations_dropped = len({entry["conversation_id"] for entry in dropped})
    report.check()
    return kept, dropped, report


def first_unsafe_messages(records: Sequence[dict[str, Any]],
                          verdicts: dict[str, MessageVerdict]) -> dict[str, tuple[int, str, SafetyVerdict]]:
    """conversation id -> (depth, "prompt_id/where", verdict) of its shallowest record holding an unsafe message."""
    first: dict[str, tuple[int, str, SafetyVerdict]] = {}
    for record in records:
        known = first.get(record["conversation_id"])
        if known is not None and known[0] <= record["depth"]:
            continue
        for where, text in _texts(record):
            safety = verdicts[text].safety
            if safety is not None and safety.unsafe:
                first[record["conversation_id"]] = (record["depth"], f"{record['prompt_id']}/{where}", safety)
                break
    return first


def run_privacy(
    input_path: Path, out_dir: Path, settings: CurateConfig, embedder: Any = None, *, cache_dir: Path | None = None,
    seed: int = 0, progress: bool = False, classifier: SafetyClassifier | None = None,
) -> PrivacyReport:
    """``prompts.jsonl`` -> ``clean.jsonl``, ``dropped.jsonl``, ``privacy_report.json`` in ``out_dir``.

    ``embedder`` (a SentenceTransformer) feeds the safety classifier; pass ``classifier`` to reuse
    a fitted one. One of them is required when ``settings.privacy`` is on."""
    out_dir = Path(out_dir)
    records = list(read_prompt_records(input_path))
    if not settings.privacy:
        report = PrivacyReport(enabled=False, records_in=len(records), kept=len(records),
                               conversations_in=len({r["conversation_id"] for r in records}))
        kept, dropped = records, []
    else:
        if classifier is None:
            if embedder is None:
                raise ValueError("run_privacy: an embedder (or a fitted classifier) is needed when privacy is on")
            cache = EmbeddingCache(embedder, cache_dir, batch_size=settings.embed_batch_size,
                                   max_chars=settings.embed_max_chars, progress=progress)
            classifier = SafetyClassifier(cache, settings.unsafe_threshold, settings.unsafe_cue_threshold,
                                          negatives=settings.safety_negatives, seed=seed,
                                          strict_false_positive_rate=settings.unsafe_strict_false_positive_rate,
                                          cue_false_positive_rate=settings.unsafe_cue_false_positive_rate)
        kept, dropped, report = filter_records(records, classifier, settings.phone_region, progress,
                                               settings.unsafe_scope)
    write_jsonl(out_dir / artifacts.CLEAN, kept)
    write_jsonl(out_dir / DROPPED_FILENAME, dropped)
    write_json(out_dir / PRIVACY_REPORT_FILENAME, report.to_json())
    return report
