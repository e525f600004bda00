"""Instruction checkers, text primitives and the following / violation aggregates."""

import copy
import pickle

import pytest

from characterflywheel.characters.instructions import (
    INSTRUCTION_TYPES,
    Instruction,
    InstructionError,
    check_reply,
    count_emoji,
    ends_with_question,
    evaluate_replies,
    follows_all,
    has_list,
    is_shouting,
    sentence_count,
    word_count,
)

# (type, params, reply, user_message, expected): True followed, False violated, None not applicable.
PIZZA = {"triggers": ["pizza"], "mention": ["pineapple"]}
CASES = [
    ("max_words", {"n": 5}, "One two three four five.", None, True),
    ("max_words", {"n": 5}, "One two three four five six.", None, False),
    ("min_words", {"n": 3}, "Don't well-known words.", None, True),
    ("min_words", {"n": 3}, "Hi there! 😀😀😀", None, False),
    ("max_sentences", {"n": 2}, "Dr. Watson is here. Welcome!", None, True),
    ("max_sentences", {"n": 2}, "One. Two! Three?", None, False),
    ("max_sentences", {"n": 1}, "Pi is 3.14 exactly 🙂", None, True),
    ("end_with_question", {}, "Shall we sail? 🏴‍☠️", None, True),
    ("end_with_question", {}, "What say you? *tips hat*", None, True),
    ("end_with_question", {}, "Is it? No. We sail at dawn.", None, False),
    ("never_end_with_question", {}, "We sail at dawn.", None, True),
    ("never_end_with_question", {}, "Ready?!", None, False),
    ("no_emoji", {}, "Plain text :) with © and ™ and an arrow ↔.", None, True),
    ("no_emoji", {}, "Nice ❤", None, False),
    ("use_emoji", {}, "Great job 👍🏽", None, True),
    ("use_emoji", {}, "Great job :)", None, False),
    ("use_emoji", {"n": 2}, "Great 👍🏽 job 🇫🇷", None, True),
    ("use_emoji", {"n": 2}, "Family 👨‍👩‍👧 only", None, False),
    ("no_lists", {}, "*grins* No lists here.\nJust 2024. A good year.", None, True),
    ("no_lists", {}, "Try this:\n- eggs\n- flour", None, False),
    ("no_lists", {}, "Steps:\n1. Preheat\n2) Bake", None, False),
    ("use_catchphrase", {"phrase": "Yo ho ho!"}, "Well, yo, ho ho, matey.", None, True),
    ("use_catchphrase", {"phrase": "Yo ho ho!"}, "Yo ho, matey.", None, False),
    ("second_person", {}, "You’re brave, traveller.", None, True),
    ("second_person", {}, "Thy courage is noted.", None, True),
    ("second_person", {}, "The sea is calm tonight.", None, False),
    ("no_first_person", {}, "Let us see what the cards say for you.", None, True),
    ("no_first_person", {}, "I see a journey.", None, False),
    ("no_first_person", {}, "The cards show my secret.", None, False),
    ("mention_when_asked", PIZZA, "Pineapple? Never.", "Any pizzas tonight?", True),
    ("mention_when_asked", PIZZA, "Use good dough.", "How do I make pizza?", False),
    ("mention_when_asked", PIZZA, "Use good dough.", "How do I make bread?", None),
    ("mention_when_asked", PIZZA, "Use good dough.", None, None),
    ("one_paragraph", {}, "Line one.\nLine two.\n\n", None, True),
    ("one_paragraph", {}, "Para one.\n  \nPara two.", None, False),
    ("formal_register", {}, "The chef's knife is sharp; it is not a toy.", None, True),
    ("formal_register", {}, "It’s not a toy.", None, False),
    ("formal_register", {}, "That is gonna hurt.", None, False),
    ("casual_register", {}, "We'll see!", None, True),
    ("casual_register", {}, "yeah sure", None, True),
    ("casual_register", {}, "We shall see.", None, False),
    ("no_uppercase_shouting", {}, "NASA says OK. I agree.", None, True),
    ("no_uppercase_shouting", {}, "That is AMAZING.", None, False),
    ("no_uppercase_shouting", {}, "LET'S GO team", None, False),
    ("lowercase_only", {}, "all quiet, 42 moths ✨", None, True),
    ("lowercase_only", {}, "all quiet, Moth.", None, False),
    ("forbidden_words", {"words": ["cool", "no way"]}, "Coolant leaks; no, wayward sailor.", None, True),
    ("forbidden_words", {"words": ["cool", "no way"]}, "That is COOL.", None, False),
    ("forbidden_words", {"words": ["cool", "no way"]}, "No-way!", None, False),
    ("must_include_word", {"word": "woof"}, "Woof! Hello.", None, True),
    ("must_include_word", {"word": "woof"}, "Woofers are speakers.", None, False),
    ("no_urls", {}, "Visit Dr. Smith at 3.30 today.", None, True),
    ("no_urls", {}, "See https://example.org/a for more.", None, False),
    ("no_urls", {}, "Try www.recipes today.", None, False),
    ("no_urls", {}, "It's on example.com.", None, False),
    ("start_with", {"prefix": "Ahoy"}, "  ahoy there!", None, True),
    ("start_with", {"prefix": "Ahoy"}, "Well, ahoy there!", None, False),
    ("no_ai_disclaimer", {}, "Arr, I'm a pirate through and through.", None, True),
    ("no_ai_disclaimer", {}, "As an AI, I cannot sail.", None, False),
    ("no_ai_disclaimer", {}, "I’m just a language model.", None, False),
    ("no_ai_disclaimer", {}, "I am not human, sadly.", None, False),
]


@pytest.mark.parametrize(("type_name", "params", "reply", "user_message", "expected"), CASES)
def test_checker(type_name: str, params: dict, reply: str, user_message: str | None, expected: bool | None) -> None:
    assert Instruction(type_name, params).check(reply, user_message) is expected


def test_every_type_has_a_follow_and_a_violation_case() -> None:
    outcomes = {(case[0], case[4]) for case in CASES}
    for name in INSTRUCTION_TYPES:
        assert (name, True) in outcomes and (name, False) in outcomes, name
    assert len(INSTRUCTION_TYPES) >= 15


def test_every_type_describes_itself_as_a_sentence() -> None:
    samples = {"n": 3, "phrase": "Yo ho ho", "triggers": ["pizza", "pasta"], "mention": "pineapple",
               "words": ["okay", "cool"], "word": "woof", "prefix": "Ahoy"}  # fmt: skip
    for name, spec in INSTRUCTION_TYPES.items():
        params = {param.name: samples[param.name] for param in spec.params}
        sentence = Instruction(name, params).describe()
        assert sentence[0].isupper() and sentence.endswith("."), (name, sentence)
        for value in params.values():
            for item in [value] if isinstance(value, (str, int)) else value:
                assert str(item) in sentence, (name, sentence)


def test_descriptions_read_naturally() -> None:
    assert Instruction("max_words", {"n": 40}).describe() == "Keep every reply to 40 words or fewer."
    assert Instruction("max_sentences", {"n": 1}).describe() == "Answer in a single sentence."
    assert Instruction("use_emoji").describe() == "Use at least one emoji in every reply."
    assert Instruction("forbidden_words", {"words": ["okay", "cool", "awesome"]}).describe() == (
        'Never say the words "okay", "cool" or "awesome".'
    )
    assert Instruction("mention_when_asked", {"triggers": ["pizza", "pasta"], "mention": ["a", "b"]}).describe() == (
        'Whenever the user brings up pizza or pasta, mention "a" or "b".'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("plain ascii :) :-( <3", 0),
        ("👨‍👩‍👧‍👦", 1),  # ZWJ family is one emoji
        ("👍🏽👍", 2),  # skin tone modifier stays with its base
        ("🇫🇷🇯🇵", 2),  # regional-indicator pairs
        ("🏴󠁧󠁢󠁳󠁣󠁴󠁿", 1),  # tag-sequence flag
        ("1️⃣#️⃣", 2),  # keycaps
        ("❤ ❤️ ☺", 3),  # text-default pictographs in Misc Symbols / Dingbats still count
        ("© ® ™ ‼ ↔ ▶", 0),  # typography, not emoji
        ("©️", 1),  # ... unless the emoji selector asks for emoji presentation
        ("café naïve 你好 😀", 1),
    ],
)
def test_count_emoji(text: str, expected: int) -> None:
    assert count_emoji(text) == expected


def test_text_primitives() -> None:
    assert word_count("Don't stop — well-known 42 😀!") == 4
    assert word_count("") == 0
    assert sentence_count("Mr. Smith arrived. He sat.\nThen left") == 3
    assert sentence_count("Wow... really?! Yes…") == 3
    assert sentence_count("😀") == 0
    assert ends_with_question("Really?!") and ends_with_question('He said "why?"')
    assert ends_with_question("Ok? 🇫🇷🇩🇪") and not ends_with_question("")
    assert not ends_with_question("Why? Because.")
    assert has_list("  • item") and has_list("(1) first") and not has_list("*waves* hi\n-no space")
    assert is_shouting("STOP IT") and not is_shouting("The USA and UK")


def test_check_reply_and_follows_all() -> None:
    instructions = [
        Instruction("max_words", {"n": 5}),
        Instruction("end_with_question"),
        Instruction("mention_when_asked", {"triggers": ["pizza"], "mention": ["pineapple"]}),
    ]
    results = check_reply("Hungry for anything?", instructions, "hello")
    assert results == {"max_words": True, "end_with_question": True, "mention_when_asked": None}
    assert follows_all(results) is True
    assert follows_all(check_reply("Way too many words in this reply here.", instructions)) is False
    assert follows_all({"mention_when_asked": None}) is None
    assert follows_all({}) is None


def test_check_reply_merges_two_instructions_of_one_type() -> None:
    instructions = [
        Instruction("forbidden_words", {"words": ["cool"]}),
        Instruction("forbidden_words", {"words": ["nice"]}),
    ]
    assert check_reply("nice", instructions) == {"forbidden_words": False}
    assert check_reply("fine", instructions) == {"forbidden_words": True}


def test_evaluate_replies_hand_computed() -> None:
    short = Instruction("max_words", {"n": 3})
    question = Instruction("end_with_question")
    pizza = Instruction("mention_when_asked", {"triggers": ["pizza"], "mention": ["pineapple"]})
    items = [
        ("Hi there?", [short, question, pizza], "hello"),  # 2 checks, both pass; pizza n/a -> followed
        ("Hello there friend, okay.", [short, question], None),  # 2 checks, both fail -> violated
        ("Pineapple, no?", [short, pizza], "pizza?"),  # 2 checks, both pass -> followed
        ("No pizza here.", [pizza], "weather?"),  # nothing applicable
        ("Yes?", [short, question, pizza], "pizza time"),  # 3 checks, pizza fails -> violated
    ]
    report = evaluate_replies(items)
    assert (report.replies, report.applicable, report.followed, report.violated) == (5, 4, 2, 2)
    assert (report.checks, report.failed_checks) == (9, 3)
    assert report.following_rate == pytest.approx(2 / 4)
    assert report.violation_rate == pytest.approx(3 / 9)
    assert report.per_type["max_words"] == {
        "checks": 4, "followed": 3, "violated": 1, "not_applicable": 0, "following_rate": 0.75, "violation_rate": 0.25
    }  # fmt: skip
    assert report.per_type["mention_when_asked"]["not_applicable"] == 2
    assert report.per_type["mention_when_asked"]["violation_rate"] == pytest.approx(1 / 2)
    assert report.to_dict()["following_rate"] == pytest.approx(0.5)


def test_evaluate_replies_empty_is_zero_not_an_error() -> None:
    report = evaluate_replies([])
    assert (report.replies, report.applicable, report.following_rate, report.violation_rate) == (0, 0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("type_name", "params", "field"),
    [
        ("no_such_rule", {}, "type"),
        ("max_words", {}, "params.n"),
        ("max_words", {"n": 0}, "params.n"),
        ("max_words", {"n": True}, "params.n"),
        ("max_words", {"n": 5, "m": 1}, "params.m"),
        ("forbidden_words", {"words": []}, "params.words"),
        ("start_with", {"prefix": "  "}, "params.prefix"),
    ],
)
def test_bad_instruction_names_the_field(type_name: str, params: dict, field: str) -> None:
    with pytest.raises(InstructionError) as raised:
        Instruction(type_name, params)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


def test_instruction_is_immutable_hashable_and_round_trips() -> None:
    instruction = Instruction("forbidden_words", {"words": ["cool", "rad"]})
    assert instruction.params["words"] == ("cool", "rad")
    assert {instruction, Instruction("forbidden_words", {"words": "cool"})} and hash(instruction)
    assert Instruction.from_dict(instruction.to_dict()) == instruction
    assert pickle.loads(pickle.dumps(instruction)) == instruction == copy.deepcopy(instruction)
