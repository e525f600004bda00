"""Annotation: tasks built from curated prompts round-trip through the JSONL format, are filled by
the simulated annotator pool (the demo's filler) or imported, and agreement is computed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from characterflywheel import artifacts
from characterflywheel.curate.annotate import (
    AGREEMENT_FILENAME,
    TASKS_FILENAME,
    agreement_report,
    annotate,
    build_tasks,
    import_annotations,
    read_task_file,
    run_annotate,
)
from characterflywheel.curate.records import write_jsonl
from characterflywheel.curate.settings import CurateConfig
from characterflywheel.data.annotation import Annotation, Label

LINES = [
    ("Tell me about the scariest storm you ever sailed through.",
     "Yo ho ho! Off Cape Horn the waves stood taller than the mainmast and we rode them all night, recruit."),
    ("What do you eat on a long voyage?", "Hardtack, salted pork and limes against scurvy, matey!"),
    ("Do you have a parrot?", "Aye, Captain Squawk, who steals biscuits from the cook."),
    ("What's your favourite shanty?", "Drunken Sailor, sung loud enough to wake the kraken!"),
    ("Have you ever found treasure?", "Once, a chest of Spanish doubloons buried under a palm on Tortuga."),
    ("How did you become a captain?", "I won the Barnacle in a card game from a one-eyed smuggler."),
]


def curated_records() -> list[dict]:
    return [{"prompt_id": f"p{i}", "conversation_id": f"c{i}", "user_id": "u", "character_id": "captain-saltbeard",
             "model_version": "g0", "arm": None, "depth": 1, "prompt": [{"role": "user", "content": user}],
             "reply": reply, "continued": True, "thumbs": None, "cluster": 0}
            for i, (user, reply) in enumerate(LINES * 3)]


CANDIDATES = {f"p{i}": ["I'm not sure.", "Ok."] for i in range(18)}


def test_build_tasks_pairs_logged_with_candidates_and_rates():
    settings = CurateConfig(annotation_prompts=4, pairs_per_prompt=2, ratings_per_prompt=1)
    tasks = build_tasks(curated_records(), CANDIDATES, settings, seed=0)
    assert [t.task_id for t in tasks[:3]] == ["p0/pair-0", "p0/pair-1", "p0/rate-0"]
    assert len(tasks) == 4 * 3
    pair = tasks[0]
    assert pair.kind == "pairwise" and set(pair.sources) == {"logged", "candidate-0"}
    assert pair.responses[pair.sources.index("logged")] == LINES[0][1]
    assert tasks[2].responses == [LINES[0][1]] and tasks[2].sources == ["logged"]
    orders = [t.sources[0] for t in build_tasks(curated_records(), CANDIDATES, CurateConfig(annotation_prompts=18))
              if t.kind == "pairwise"]
    assert 0 < orders.count("logged") < len(orders)  # sides shuffled against position bias


def test_agreement_matches_sklearn_on_symmetric_label_pairs():
    def note(task, kind, annotator, value):
        label = Label(preferred=value) if kind == "pairwise" else Label(rating=value)
        return Annotation(task_id=task, kind=kind, messages=[{"role": "user", "content": "hi"}],
                          responses=["a", "b"] if kind == "pairwise" else ["a"], annotator_id=annotator, label=label)

    a = [1, 0, 1, 1, 0, 1]
    b = [1, 0, 0, 1, 0, 1]
    notes = [note(f"t{i}", "pairwise", "x", x) for i, x in enumerate(a)] + [note(f"t{i}", "pairwise", "y", y) for i, y in enumerate(b)]
    notes.append(note("single", "pairwise", "x", 1))  # one annotator: not counted
    ratings_x, ratings_y = [5, 4, 2, 1, 3], [4, 4, 1, 2, 3]
    notes += [note(f"r{i}", "rating", "x", v) for i, v in enumerate(ratings_x)]
    notes += [note(f"r{i}", "rating", "y", v) for i, v in enumerate(ratings_y)]
    report = agreement_report(notes)
    assert report["pairwise_tasks_multi"] == 6 and report["pairwise_label_pairs"] == 6
    assert report["pairwise_percent_agreement"] == pytest.approx(5 / 6)
    assert report["pairwise_kappa"] == pytest.approx(cohen_kappa_score(a + b, b + a))
    assert report["rating_kappa"] == pytest.approx(
        cohen_kappa_score(ratings_x + ratings_y, ratings_y + ratings_x, weights="quadratic"))
    assert 0 < report["rating_kappa"] < 1


def test_filler_must_return_annotations_of_the_tasks():
    tasks = build_tasks(curated_records(), None, CurateConfig(annotation_prompts=1))
    stranger = Annotation(task_id="nope", kind="rating", messages=[{"role": "user", "content": "hi"}],
                          responses=["a"], annotator_id="z", label=Label(rating=3))
    with pytest.raises(ValueError, match="filler: annotation 1: task_id: 'nope' is not one of the tasks"):
        annotate(tasks, lambda _: [stranger])


@pytest.mark.slow
def test_simulated_pool_fills_tasks_round_trip_and_agreement(embedder, tmp_path):
    from characterflywheel.characters import load_characters
    from characterflywheel.simulate.annotators import AnnotatorPool, Guideline, make_annotators
    from characterflywheel.simulate.landscape import Landscape

    pool = AnnotatorPool(Guideline(Landscape(embedder), load_characters()), make_annotators(3))
    write_jsonl(tmp_path / "stratified.jsonl", curated_records())
    settings = CurateConfig(annotation_prompts=18, pairs_per_prompt=1, ratings_per_prompt=2)
    report = run_annotate(tmp_path / "stratified.jsonl", tmp_path / "out", settings, candidates=CANDIDATES,
                          filler=lambda tasks: pool.annotate(tasks, per_task=2))
    tasks = read_task_file(tmp_path / "out" / TASKS_FILENAME)
    assert len(tasks) == report.tasks == 18 * 3 and report.tasks_by_kind == {"pairwise": 18, "rating": 36}
    assert tasks[0].model_dump()["prompt_id"] == "p0"  # extra keys survive the round trip
    annotations = import_annotations(tmp_path / "out" / artifacts.ANNOTATIONS, tasks)
    assert len(annotations) == report.annotations == 2 * len(tasks) and report.annotators == 3
    # the guideline prefers the in-character logged reply over "I'm not sure."
    logged_wins = [a.label.preferred == a.sources.index("logged") for a in annotations if a.kind == "pairwise"]
    assert np.mean(logged_wins) > 0.8
    agreement = json.loads((tmp_path / "out" / AGREEMENT_FILENAME).read_text())["agreement"]
    assert agreement == report.agreement
    assert agreement["pairwise_tasks_multi"] == 18 and agreement["rating_label_pairs"] == 36
    assert agreement["rating_kappa"] > 0.2

    reimported = run_annotate(tmp_path / "stratified.jsonl", tmp_path / "again", settings, candidates=CANDIDATES,
                              annotations_path=tmp_path / "out" / artifacts.ANNOTATIONS)
    assert reimported.agreement == report.agreement
