"""Explode ingested traffic into prompt records: one per assistant turn.

For every assistant turn of every conversation in ``conversations.parquet`` (read with
``characterflywheel.data.read_conversations``), the prompt is the messages before it -- the system
turn if any, then at most ``max_history_turns`` of the latest messages -- and the reply is that
assistant turn, with ``continued``/``thumbs`` from its signals. ``depth`` counts the user turns up to
and including the one the reply answers (1-based).

Assumptions and decisions:

* The contract says a prompt ends with a user turn. An assistant turn that does not directly follow
  a user turn (a greeting before the user spoke, or a double text by the character) yields no prompt;
  it is counted as ``skipped["no_user_before"]`` or ``skipped["after_assistant"]``, so
  ``assistant_turns = prompts + sum(skipped)``.
* ``prompt_id`` is ``<conversation_id>:<index of the assistant turn in messages>`` -- stable
  across re-runs and unique as long as conversation ids are (ingest guarantees that).
* Conversations are streamed; the output is written atomically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from characterflywheel.curate.records import write_json, write_jsonl
from characterflywheel.curate.settings import CurateConfig
from characterflywheel.data import Conversation, read_conversations
from characterflywheel.models.progress import show_bars

PROMPTS_FILENAME = "prompts.jsonl"
PROMPTS_REPORT_FILENAME = "prompts_report.json"


@dataclass
class PromptsReport:
    """Counts of one explode run: ``assistant_turns == prompts + sum(skipped.values())``."""

    conversations: int = 0
    assistant_turns: int = 0
    prompts: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    output: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def conversation_prompts(conversation: Conversation, max_history_turns: int) -> Iterator[dict[str, Any] | str]:
    """Prompt records of one conversation, in turn order; a skipped assistant turn yields its reason."""
    messages = conversation.messages
    system = [{"role": "system", "content": messages[0].content}] if messages[0].role == "system" else []
    history_start = len(system)
    user_turns = 0
    for index, message in enumerate(messages):
        if message.role == "user":
            user_turns += 1
            continue
        if message.role != "assistant":
            continue
        if user_turns == 0:
            yield "no_user_before"
            continue
        if messages[index - 1].role != "user":
            yield "after_assistant"
            continue
        first = max(history_start, index - max_history_turns)
        history = [{"role": m.role, "content": m.content} for m in messages[first:index]]
        signals = message.signals
        yield {
            "prompt_id": f"{conversation.conversation_id}:{index}",
            "conversation_id": conversation.conversation_id,
            "user_id": conversation.user_id,
            "character_id": conversation.character_id,
            "model_version": conversation.model_version,
            "arm": conversation.arm,
            "depth": user_turns,
            "prompt": system + history,
            "reply": message.content,
            "continued": signals.continued if signals is not None else None,
            "thumbs": signals.thumbs if signals is not None else None,
        }


def explode_prompts(
    conversations: Iterable[Conversation], max_history_turns: int, report: PromptsReport | None = None
) -> Iterator[dict[str, Any]]:
    """Prompt records of all conversations; counts go into ``report`` when given."""
    report = report if report is not None else PromptsReport()
    skipped: Counter[str] = Counter(report.skipped)
    for conversation in conversations:
        report.conversations += 1
        for item in conversation_prompts(conversation, max_history_turns):
            report.assistant_turns += 1
            if isinstance(item, str):
                skipped[item] += 1
                report.skipped = dict(skipped)
                continue
            report.prompts += 1
            yield item


def run_prompts(
    conversations_parquet: Path, out_dir: Path, settings: CurateConfig, progress: bool = False
) -> PromptsReport:
    """``conversations.parquet`` (or its folder) -> ``out_dir/prompts.jsonl`` + ``prompts_report.json``."""
    out_dir = Path(out_dir)
    report = PromptsReport()
    conversations: Iterable[Conversation] = read_conversations(Path(conversations_parquet))
    if show_bars(progress):
        conversations = tqdm(conversations, desc="prompts", unit="conv", leave=False)
    output = out_dir / PROMPTS_FILENAME
    write_jsonl(output, explode_prompts(conversations, settings.max_history_turns, report))
    report.output = str(output)
    write_json(out_dir / PROMPTS_REPORT_FILENAME, report.to_json())
    return report
