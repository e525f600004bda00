"""Throughput of each curation phase on real chit-chat traffic (about 10,000 assistant turns).

Usage: ``python benchmarks/curation.py [--turns 10000] [--cache-dir DIR] [--keep-share 0.5]``

Seed traffic: the first two-sided conversations of the PyPI ``chitchat_dataset`` until they hold
``--turns`` assistant turns, written with ``write_seed_traffic`` and ingested. Phases timed
separately, each printed as turns/s (one prompt record per assistant turn):

* prompts      -- explode conversations.parquet into prompt records;
* pii          -- Phase I masking of every distinct user/assistant message (regex + phonenumbers + stdnum);
* safety fit   -- fitting the classifier (embeds ~1,650 training sentences; once, then cached);
* safety       -- Phase I unsafe classification (sentence embeddings + logistic regression);
* embedding    -- Phase II prompt vectors (MiniLM on messages not embedded yet);
* diversity    -- Phase II KMeans topics + k-center greedy selection + coverage report;
* stratify     -- Phase III greedy deficit filling (half of the diverse set) to uniform targets
  over character, depth bucket, cluster and outcome.

The embedding cache starts empty (a temporary folder) unless ``--cache-dir`` is given, so the
embedding figures are cold-cache figures. CPU threads: torch's default.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from characterflywheel.curate.diversity import coverage_report, fit_clusters, prompt_vectors, select_diverse  # noqa: E402
from characterflywheel.curate.embedding import EmbeddingCache  # noqa: E402
from characterflywheel.curate.privacy import _texts, filter_records  # noqa: E402
from characterflywheel.curate.prompts import PromptsReport, explode_prompts  # noqa: E402
from characterflywheel.curate.safety import SafetyClassifier  # noqa: E402
from characterflywheel.curate.settings import CurateConfig  # noqa: E402
from characterflywheel.curate.stratify import stratify  # noqa: E402
from characterflywheel.data import ingest, iter_chitchat_conversations, read_conversations  # noqa: E402
from characterflywheel.data.chitchat import DEFAULT_CHARACTER_ID  # noqa: E402
from characterflywheel.models import load_embedder  # noqa: E402


def conversations_for(turns: int) -> int:
    """How many two-sided chit-chat conversations hold ``turns`` assistant turns."""
    total = 0
    for count, conversation in enumerate(iter_chitchat_conversations(two_speaker_only=True), start=1):
        total += sum(message.role == "assistant" for message in conversation.messages)
        if total >= turns:
            return count
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--keep-share", type=float, default=0.5)
    args = parser.parse_args()
    settings = CurateConfig(keep_share=args.keep_share, max_prompts=2000, clusters=16)
    work = Path(tempfile.mkdtemp(prefix="curation-bench-"))
    cache_dir = args.cache_dir or work / "cache"

    from characterflywheel.data import write_seed_traffic

    write_seed_traffic(work / "traffic.jsonl", limit=conversations_for(args.turns), two_speaker_only=True,
                       character_id=DEFAULT_CHARACTER_ID)
    ingest([work / "traffic.jsonl"], work / "ingested")
    figures: dict[str, float] = {}

    def timed(name: str, units: int, step):
        started = time.perf_counter()
        result = step()
        seconds = time.perf_counter() - started
        figures[f"{name}_seconds"] = round(seconds, 2)
        figures[f"{name}_turns_per_s"] = round(units / seconds, 1)
        print(f"{name:<12} {units:>7} turns  {seconds:8.2f} s  {units / seconds:10.1f} turns/s", flush=True)
        return result

    conversations = list(read_conversations(work / "ingested"))
    report = PromptsReport()
    records = []
    timed("prompts", sum(sum(m.role == "assistant" for m in c.messages) for c in conversations),
          lambda: records.extend(explode_prompts(conversations, settings.max_history_turns, report)))
    turns = len(records)
    messages = len({text for record in records for _, text in _texts(record)})
    print(f"{report.conversations} conversations, {turns} prompt records, {messages} distinct messages")

    embedder = load_embedder()
    cache = EmbeddingCache(embedder, cache_dir, batch_size=settings.embed_batch_size)
    timed("pii", turns, lambda: filter_records(records, classifier=None, region=settings.phone_region))
    classifier = SafetyClassifier(cache, negatives=settings.safety_negatives)
    timed("safety_fit", turns, classifier.fit)
    kept, dropped, privacy = timed("safety", turns, lambda: filter_records(records, classifier, settings.phone_region,
                                                                           scope=settings.unsafe_scope))
    print(f"  privacy: kept {privacy.kept}, dropped {privacy.dropped} {privacy.dropped_by_reason}, "
          f"masked records {privacy.records_masked} {privacy.masked_spans_by_type}")
    touched = {entry["conversation_id"] for entry in dropped}
    whole = sum(record["conversation_id"] in touched for record in records)
    print(f"  unsafe scope {settings.unsafe_scope}: {privacy.dropped} records dropped "
          f"({privacy.dropped / max(turns, 1):.1%}); dropping whole conversations would drop {whole} "
          f"({whole / max(turns, 1):.1%}) from {len(touched)} of {report.conversations} conversations")
    vectors = timed("embedding", len(kept), lambda: prompt_vectors(kept, cache, settings.context_messages))

    def select():
        labels = fit_clusters(vectors, settings.clusters)
        selected = select_diverse(vectors, round(settings.keep_share * len(kept)), settings.diversity_method, labels)
        return labels, selected, coverage_report(vectors, selected)

    labels, selected, coverage = timed("diversity", len(kept), select)
    print(f"  coverage: {json.dumps({k: round(v, 4) for k, v in coverage.items()})}")
    diverse = [{**kept[i], "cluster": int(labels[i])} for i in selected]
    half = settings.model_copy(update={"max_prompts": max(1, len(diverse) // 2)})
    _, strata = timed("stratify", len(diverse), lambda: stratify(diverse, half))
    print(f"  stratify: mean TV {strata.mean_tv:.4f} vs random {strata.random_mean_tv:.4f}; "
          + ", ".join(f"{d} {v['tv']:.3f}/{v['random_tv']:.3f}" for d, v in strata.dimensions.items()))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
