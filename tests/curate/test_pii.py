"""PII masking: typed placeholders, other text untouched, >= 99 % recall on the shipped check set."""

from __future__ import annotations

import pytest

from characterflywheel.curate.checkset import build_checkset, checkset_path, evaluate_checkset, read_checkset
from characterflywheel.curate.pii import find_pii, mask_pii


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at Jane.Doe+x@mail.example.co.uk please", "mail me at [EMAIL] please"),
        ("or jane dot doe at gmail dot com", "or [EMAIL]"),
        ("call me at (415) 555-2671 tonight", "call me at [PHONE] tonight"),
        ("ring +44 20 7946 0958 ok", "ring [PHONE] ok"),
        ("card 4111 1111 1111 1111 exp 01/29", "card [CARD] exp 01/29"),
        ("iban: GB82 WEST 1234 5698 7654 32 thanks", "iban: [IBAN] thanks"),
        ("account number 12345678901 at chase", "account number [ACCOUNT] at chase"),
        ("ssn 123-45-6789", "ssn [SSN]"),
        ("I live at 1600 Pennsylvania Avenue NW, Washington, DC 20500 lol", "I live at [ADDRESS] lol"),
        ("reset: https://example.com/reset?token=ab12cd34ef", "reset: [URL]"),
        ("hi my name is jane doe and i like cats", "hi my name is [NAME] and i like cats"),
        ("Hello, I am Maria Garcia-Lopez from Spain", "Hello, I am [NAME] from Spain"),
    ],
)
def test_each_type_is_masked_with_its_placeholder_and_the_rest_kept(text, expected):
    assert mask_pii(text)[0] == expected


@pytest.mark.parametrize(
    "text",
    [
        "I am Very Tired today", "call me maybe", "I ran 5 miles down the road", "i have 2 dogs way more than you",
        "I was born in 1995 and have 3 kids", "watch https://www.youtube.com/watch?v=dQw4w9WgXcQ", "namesake",
        "i signed up for 16.5 credits", "we scored 1000000 points", "look at it. It was fun",
    ],
)
def test_ordinary_chat_is_left_alone(text):
    assert find_pii(text) == []
    assert mask_pii(text)[0] == text


def test_masking_keeps_every_non_pii_character():
    text = "ok so 😀 my email is a.b@c.org and my number is 415-555-2671, see you at 5!"
    masked, spans = mask_pii(text)
    assert [s.kind for s in spans] == ["EMAIL", "PHONE"]
    rebuilt = masked.replace("[EMAIL]", text[spans[0].start: spans[0].end]).replace(
        "[PHONE]", text[spans[1].start: spans[1].end])
    assert rebuilt == text


def test_shipped_check_set_is_the_deterministic_generator_output():
    assert read_checkset() == build_checkset(seed=0), f"regenerate {checkset_path()} with python -m characterflywheel.curate.checkset"


def test_check_set_pii_recall_is_at_least_99_percent():
    records = read_checkset()
    planted = [span for record in records for span in record["pii"]]
    assert len(planted) >= 450 and len({span["type"] for span in planted}) == 9
    report = evaluate_checkset(records)
    assert report.pii_recall >= 0.99, report.to_json()
    assert report.pii_precision >= 0.9, report.false_positive_texts[:10]
    assert min(report.pii_recall_by_type.values()) >= 0.95, report.pii_recall_by_type


def test_check_set_varies_formats_per_type():
    records = read_checkset()
    values = {}
    for record in records:
        for span in record["pii"]:
            values.setdefault(span["type"], []).append(record["text"][span["start"]: span["end"]])
    shapes = {kind: {"".join("9" if c.isdigit() else "a" if c.isalpha() else c for c in v) for v in vs}
              for kind, vs in values.items()}
    for kind, least in {"PHONE": 10, "CARD": 5, "IBAN": 8, "ADDRESS": 10, "EMAIL": 10, "URL": 8}.items():
        assert len(shapes[kind]) >= least, (kind, sorted(shapes[kind])[:5])
