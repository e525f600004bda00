"""The whole recipe on real chit-chat with the tiny preset: every phase writes its outputs, the
counts reconcile from assistant turns to the curated set, and annotation runs when a filler is given."""

from __future__ import annotations

import json

import pytest

from characterflywheel.config import load_config
from characterflywheel.curate import consolidate
from characterflywheel.curate.records import read_prompt_records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_parquet(tmp_path_factory):
    from characterflywheel.data import ingest, write_seed_traffic

    folder = tmp_path_factory.mktemp("small")
    write_seed_traffic(folder / "traffic.jsonl", limit=15, two_speaker_only=True)
    ingest([folder / "traffic.jsonl"], folder / "ingested")
    return folder / "ingested" / "conversations.parquet"


def test_consolidate_tiny_reconciles_and_writes_every_phase(embedder, small_parquet, embedding_cache_dir, tmp_path):
    from characterflywheel.characters import load_characters
    from characterflywheel.simulate.annotators import AnnotatorPool, Guideline, make_annotators
    from characterflywheel.simulate.landscape import Landscape

    settings = load_config(preset="tiny", overrides=["curate.max_prompts=40"]).curate
    pool = AnnotatorPool(Guideline(Landscape(embedder), load_characters()), make_annotators(settings.annotators))

    def filler(tasks):  # seed traffic has no character card: annotate it as a card-less chat
        for task in tasks:
            task.character_id = None
        return pool.annotate(tasks, per_task=settings.annotators_per_task)

    report = consolidate(small_parquet, tmp_path, settings, embedder, cache_dir=embedding_cache_dir, filler=filler,
                         candidates={})
    counts = report.counts
    assert counts["conversations"] == 15 and counts["curated"] == settings.max_prompts
    assert counts["prompts"] == counts["after_privacy"] + counts["privacy_dropped"]
    assert counts["after_diversity"] == round(settings.keep_share * counts["after_privacy"])
    curated = list(read_prompt_records(tmp_path / "stratify" / "stratified.jsonl"))
    assert len(curated) == settings.max_prompts and all(isinstance(r["cluster"], int) for r in curated)
    saved = json.loads((tmp_path / "consolidation_report.json").read_text())
    assert saved["counts"] == counts and set(saved["phases"]) == {"prompts", "privacy", "diversity", "stratify", "annotate"}
    stratify = saved["phases"]["stratify"]
    assert stratify["mean_tv"] < stratify["random_mean_tv"]
    assert saved["phases"]["diversity"]["coverage"]["max_ratio"] < 1
    annotate = saved["phases"]["annotate"]
    assert annotate["tasks"] == settings.annotation_prompts * settings.ratings_per_prompt  # no candidates: ratings only
    assert annotate["annotations"] == annotate["tasks"] * settings.annotators_per_task
