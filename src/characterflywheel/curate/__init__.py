"""Data consolidation (paper 3.3): from a generation's raw traffic to a curated, annotated prompt set.

The recipe, in order (each a plain function; ``recipe.consolidate`` runs them all, as the flywheel's curate stage does):

1. ``prompts.run_prompts``   -- conversations.parquet -> one prompt record per assistant turn
   (``prompts.jsonl``, the "prompts" artifact contract: history capped at ``max_history_turns``).
2. ``privacy.run_privacy``   -- Phase I: PII masked with typed placeholders (``pii.py``), unsafe
   conversations dropped (``safety.py``, MiniLM + logistic regression + lexicon) -> ``clean.jsonl``,
   ``dropped.jsonl`` with reasons; measured on the shipped check set (``checkset.py``).
3. ``diversity.run_diversity`` -- Phase II: MiniLM prompt embeddings (cached by content hash,
   ``embedding.py``), k-center greedy (or cluster-then-sample) keeps ``keep_share``; every kept
   prompt gets a KMeans topic ``cluster`` -> ``diverse.jsonl``, coverage vs a random sample.
4. ``stratify.run_stratify`` -- Phase III: a sample matching target distributions over character,
   depth bucket, cluster and outcome at once -> ``stratified.jsonl`` (the curated prompts), TV
   distance per dimension vs target and vs a random sample.
5. ``annotate.run_annotate`` -- pairwise and rating tasks (``data.annotation`` format) over the
   logged reply and policy candidates, filled by a ``filler`` or imported, Cohen's kappa.

``consolidate(conversations_parquet, out_dir, settings, embedder, progress)`` runs them all
(``recipe.py``); the config section is ``settings.CurateConfig`` (``config.curate``).
Nothing here imports the simulated world: the demo passes its annotators in as the filler.
"""

from __future__ import annotations

from typing import Any

__all__ = ["consolidate"]


def __getattr__(name: str) -> Any:
    # lazy: config.py imports curate.settings, which must not pull in the phases (and torch, sklearn)
    if name == "consolidate":
        from characterflywheel.curate.recipe import consolidate

        return consolidate
    raise AttributeError(f"module 'characterflywheel.curate' has no attribute {name!r}")
