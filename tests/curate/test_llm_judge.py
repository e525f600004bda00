"""The LLM judge against a stub OpenAI-compatible server on 127.0.0.1 (FastAPI + uvicorn in a thread):
both orders of a pair must agree, ratings and verdicts are parsed from free text, unreadable answers
are counted, a dead server is one clear error, and the agreement with people is known by hand."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from characterflywheel.curate.annotate import annotate
from characterflywheel.curate.llm_judge import (
    DEFAULT_RUBRIC,
    JudgeEndpointError,
    LLMJudge,
    judge_agreement,
    parse_preference,
    parse_rating,
)
from characterflywheel.data.annotation import Annotation, AnnotationTask
from characterflywheel.deploy.serving import free_port, running_app

HOST = "127.0.0.1"
KEYWORD = "Arr"
CARD = "You are Ann, a pirate. Never mention the sea monster."
HELLO = [{"role": "system", "content": CARD}, {"role": "user", "content": "hey"}]


def _between(text: str, tag: str) -> str:
    found = re.search(rf"<{tag}>\n(.*?)\n</{tag}>", text, re.DOTALL)
    assert found, f"no <{tag}> in the judge's prompt"
    return found.group(1)


def stub_answer(model: str, prompt: str) -> str:
    """What the stub judge says, by the model name asked for."""
    if model == "rambling":
        return "Both replies have their charm; hard to say."
    pairwise = "<reply_a>" in prompt
    if model == "biased":  # always the first position: flips with the order
        return "Reply A reads better.\nAnswer: A" if pairwise else "Rating: 3"
    # "keyword": prefers / rates up the reply with the keyword, whatever its position
    if pairwise:
        winner = "A" if KEYWORD in _between(prompt, "reply_a") else "B"
        return f"Reply {winner} is more in character, and the answer: a clear one.\n\n**Answer:** {winner}"
    return f"<think>Rating: 1?</think>Decent.\nRating: {5 if KEYWORD in _between(prompt, 'reply') else 2}/5"


def stub_app(requests: list[dict]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> JSONResponse:
        body = await request.json()
        requests.append(body)
        if body["model"] == "missing":
            return JSONResponse({"error": {"message": f"model {body['model']!r} not found"}}, status_code=404)
        content = stub_answer(body["model"], body["messages"][-1]["content"])
        return JSONResponse({"id": "stub", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": content}}]})

    return app


@pytest.fixture(scope="module")
def judge_server() -> Iterator[tuple[str, list[dict]]]:
    """(base_url, the request bodies it received) of a stub judge on a free loopback port."""
    requests: list[dict] = []
    with running_app(stub_app(requests), HOST, name="stub judge") as base_url:
        yield base_url, requests


def tasks() -> list[AnnotationTask]:
    base = {"character_id": "pirate-ann", "messages": HELLO, "prompt_id": "p-1"}
    return [AnnotationTask(task_id="p-1/pair-0", kind="pairwise", responses=["Arr, matey!", "Hello."],
                           sources=["logged", "candidate-0"], **base),
            AnnotationTask(task_id="p-1/pair-1", kind="pairwise", responses=["Good day.", "Arr!"],
                           sources=["candidate-0", "logged"], **base),
            AnnotationTask(task_id="p-1/rate-0", kind="rating", responses=["Arr, matey!"], sources=["logged"], **base),
            AnnotationTask(task_id="p-1/rate-1", kind="rating", responses=["Hello."], sources=["candidate-0"], **base)]


def judge(base_url: str, model: str, **options: object) -> LLMJudge:
    return LLMJudge(base_url, model, max_retries=0, timeout_s=10, **options)  # type: ignore[arg-type]


def labels(annotations: list[Annotation]) -> dict[str, int | None]:
    return {a.task_id: a.label.preferred if a.kind == "pairwise" else a.label.rating for a in annotations}


def test_both_orders_agreeing_give_a_label_from_the_judge(judge_server) -> None:
    base_url, requests = judge_server
    requests.clear()
    keyword = judge(base_url, "keyword", rubric="Pirates talk like pirates.", max_tokens=64, concurrency=3)
    annotations, counts = keyword.judge(tasks())

    assert labels(annotations) == {"p-1/pair-0": 0, "p-1/pair-1": 1, "p-1/rate-0": 5, "p-1/rate-1": 2}
    assert counts.to_json() == {"tasks": 4, "asked": 6, "labelled": 4, "position_disagreements": 0,
                                "unparseable": 0, "unparseable_tasks": 0}
    assert {a.annotator_id for a in annotations} == {"llm:keyword"}
    assert annotations[1].model_extra == {"prompt_id": "p-1", "sources": ["candidate-0", "logged"]}
    # Every pair asked in both orders, at temperature 0 with the small max_tokens, the rubric and card shown.
    shown = sorted((_between(r["messages"][-1]["content"], "reply_a"), _between(r["messages"][-1]["content"],
                                                                                 "reply_b"))
                   for r in requests if "<reply_a>" in r["messages"][-1]["content"])
    assert shown == sorted([("Arr, matey!", "Hello."), ("Hello.", "Arr, matey!"), ("Good day.", "Arr!"),
                            ("Arr!", "Good day.")])
    assert {(r["temperature"], r["max_tokens"], r["model"]) for r in requests} == {(0.0, 64, "keyword")}
    assert all("Pirates talk like pirates." in r["messages"][0]["content"] for r in requests)
    assert all(_between(r["messages"][-1]["content"], "card") == CARD for r in requests)
    assert all(_between(r["messages"][-1]["content"], "conversation") == "User: hey" for r in requests)
    # A Filler like any annotator pool: every label belongs to its task, unchanged.
    assert labels(annotate(tasks(), keyword)) == labels(annotations) and keyword.last_counts == counts


def test_a_position_biased_judge_labels_no_pair_and_counts_the_disagreements(judge_server) -> None:
    base_url, _ = judge_server
    annotations, counts = judge(base_url, "biased").judge(tasks())
    assert labels(annotations) == {"p-1/rate-0": 3, "p-1/rate-1": 3}  # it said "A" both times: no pair label
    assert (counts.position_disagreements, counts.labelled, counts.unparseable) == (2, 2, 0)
    assert counts.tasks == counts.labelled + counts.position_disagreements + counts.unparseable_tasks


def test_an_answer_without_a_verdict_labels_nothing_and_is_counted(judge_server) -> None:
    base_url, _ = judge_server
    annotations, counts = judge(base_url, "rambling").judge(tasks())
    assert annotations == []
    assert (counts.asked, counts.unparseable, counts.unparseable_tasks, counts.position_disagreements) == (6, 6, 4, 0)


@pytest.mark.parametrize(("answer", "preferred"), [
    ("Answer: A", 0), ("answer: b", 1), ("B", 1), (" A. ", 0), ("Reasons.\n**Answer:** B", 1),
    ("Final answer: Reply A", 0), ("The answer is (B).", 1), ("Answer: A\nAnswer: B", 1),
    ("<think>Answer: A</think>\nAnswer: B", 1), ("Answer: A\nbecause it is in character", 0),
    ("The answer: a reply that stays in character", None), ("Answer: A because", None),
    ("Both are fine.", None), ("", None), ("Answer: C", None), ("AB", None),
])
def test_the_verdict_is_read_from_free_text(answer: str, preferred: int | None) -> None:
    assert parse_preference(answer) == preferred


@pytest.mark.parametrize(("answer", "rating"), [
    ("Rating: 4", 4), ("Good.\nrating: 5/5", 5), ("**Rating:** 2.", 2), ("3", 3), ("Score: 1 out of 5", 1),
    ("Rating: 4.5", None), ("Rating: 10", None), ("Rating: 0", None), ("Rating: four", None), ("", None),
])
def test_the_rating_is_read_from_free_text(answer: str, rating: int | None) -> None:
    assert parse_rating(answer) == rating


def test_a_server_that_fails_is_one_clear_error_naming_it(judge_server) -> None:
    down = f"http://{HOST}:{free_port(HOST)}/v1"  # nothing listens there
    with pytest.raises(JudgeEndpointError, match=rf"^LLM judge {re.escape(down)} \(model 'keyword'\): ") as error:
        judge(down, "keyword").judge(tasks())
    assert "\n" not in str(error.value)
    with pytest.raises(JudgeEndpointError, match=r"\(model 'missing'\): HTTP 404: .*not found"):
        judge(judge_server[0], "missing").judge(tasks()[:1])
    with pytest.raises(ValueError, match="needs a base_url"):
        LLMJudge("", "keyword")


def test_the_default_rubric_names_what_makes_a_character_reply_good() -> None:
    for quality in ("Engaging", "In character", "system prompt", "Finished", "stock line"):
        assert quality in DEFAULT_RUBRIC


def labelled(task_id: str, kind: str, annotator: str, value: int) -> Annotation:
    responses = ["Arr!", "Hello."] if kind == "pairwise" else ["Arr!"]
    label = {"preferred": value} if kind == "pairwise" else {"rating": value}
    return Annotation(task_id=task_id, kind=kind, messages=HELLO, responses=responses, annotator_id=annotator,
                      label=label)


def test_agreement_with_people_on_a_small_known_case() -> None:
    judge_labels = [labelled(f"t{i}", "pairwise", "llm:j", v) for i, v in enumerate([0, 1, 0, 1], start=1)]
    judge_labels += [labelled("t6", "pairwise", "llm:j", 0)]  # nobody else labelled t6: not compared
    judge_labels += [labelled(f"r{i}", "rating", "llm:j", v) for i, v in enumerate([5, 3, 1], start=1)]
    people = [labelled("t1", "pairwise", "ann", 0), labelled("t1", "pairwise", "bo", 0),
              labelled("t2", "pairwise", "ann", 1), labelled("t3", "pairwise", "ann", 1),
              labelled("t4", "pairwise", "bo", 1), labelled("t5", "pairwise", "bo", 1)]  # t5: no judge label
    people += [labelled(f"r{i}", "rating", "ann", v) for i, v in enumerate([4, 3, 2], start=1)]
    agreement = judge_agreement(judge_labels, people)

    # Pairs (judge, person): (0,0) (0,0) (1,1) (0,1) (1,1): 4 of 5 agree. Kappa pooled over both orders of
    # each pair, as people's own agreement is: half the pooled labels are 0, so chance is 0.5 and kappa
    # (0.8 - 0.5) / 0.5 = 0.6 (an unpooled Cohen's kappa would be 0.615).
    assert agreement["pairwise_tasks"] == 4 and agreement["pairwise_label_pairs"] == 5
    assert agreement["pairwise_agreement"] == pytest.approx(0.8)
    assert agreement["pairwise_kappa"] == pytest.approx(0.6)
    # Ratings (5,4) (3,3) (1,2): one exact match; squared gaps 1+0+1 (twice, pooled) = 4 against 20 by
    # chance (pooled values 1,2,3,3,4,5: 2 * 6 * 10 / 6), so quadratic kappa 1 - 4/20; deviations
    # (2,0,-2) and (1,0,-1) correlate perfectly.
    assert agreement["rating_tasks"] == 3 and agreement["rating_label_pairs"] == 3
    assert agreement["rating_agreement"] == pytest.approx(1 / 3)
    assert agreement["rating_kappa"] == pytest.approx(0.8)
    assert agreement["rating_correlation"] == pytest.approx(1.0)
    assert judge_agreement(judge_labels, []) == {"pairwise_tasks": 0.0, "rating_tasks": 0.0}
