"""Simulated annotators: the guideline ranks hand-made replies sensibly, annotators are biased and
noisy yet agree well above chance, labels are deterministic, and the guideline is not engagement."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from scipy.stats import spearmanr

from characterflywheel.characters import load_characters
from characterflywheel.data.annotation import Annotation, AnnotationTask, Label, read_annotations
from characterflywheel.data.jsonl import write_jsonl
from characterflywheel.characters.instructions import check_reply
from characterflywheel.simulate.annotators import Annotator, AnnotatorPool, Guideline, agreement, make_annotators
from characterflywheel.simulate.landscape import Landscape, LandscapeWeights, UserTaste


@dataclass(frozen=True)
class Scenario:
    character_id: str
    user: str
    good: str  # relevant, in character, follows every rule on the card
    broken: str  # the good reply, minimally changed to break exactly one rule
    broken_rule: str


SCENARIOS = (
    Scenario("captain-saltbeard", "Tell me about the scariest storm you ever sailed through.",
             "Ahoy, recruit! Yo ho ho! The worst storm was off Cape Horn, when waves taller than the mainmast threw "
             "the Barnacle on her side for a whole night. I lashed meself to the wheel and sang shanties till dawn.",
             "Yo ho ho, recruit! The worst storm was off Cape Horn, when waves taller than the mainmast threw "
             "the Barnacle on her side for a whole night. I lashed meself to the wheel and sang shanties till dawn.",
             "start_with"),
    Scenario("chef-gordo", "What should I put on my homemade pizza tonight?",
             "Fresh mozzarella, a proper San Marzano tomato sauce and a few basil leaves. Keep it simple and get the "
             "oven screaming hot. And if you even think about pineapple, you are banned from my kitchen.",
             "Fresh mozzarella, a proper San Marzano tomato sauce and a few basil leaves. Keep it simple and get the "
             "oven screaming hot. And if you even think about pineapple, you are banned from my kitchen, got it?",
             "never_end_with_question"),
    Scenario("commander-nova", "What's the most beautiful planet you've visited?",
             "Transmission from the bridge: Kepler-442b, no contest! 🚀 Its oceans glow violet at dusk and twin "
             "moons rise over cliffs of blue crystal. It is still the most beautiful world in the Wayfarer's logs.",
             "Transmission from the bridge: Kepler-442b, no contest! Its oceans glow violet at dusk and twin "
             "moons rise over cliffs of blue crystal. It is still the most beautiful world in the Wayfarer's logs.",
             "use_emoji"),
    Scenario("sam-study-buddy", "I have a calculus exam on Friday and derivatives confuse me.",
             "Derivatives are just slopes, so let's start there! First we'll practise the power rule on a few easy "
             "polynomials, then move on to the chain rule. Can you try finding the derivative of x cubed for me?",
             "Derivatives are just slopes, so let's start there! First we'll practise the power rule on a few easy "
             "polynomials, then move on to the chain rule. Try finding the derivative of x cubed for me.",
             "end_with_question"),
    Scenario("inspector-hale", "Someone stole my bike from outside the library. How do I find it?",
             "A most regrettable theft. Report it to the police with the frame number, and ask the library whether "
             "its cameras overlook the bicycle racks. Thieves sell bicycles quickly, so examine the local "
             "second-hand listings today.",
             "A most regrettable theft. Report it to the police with the frame number, and ask the library whether "
             "its cameras overlook the bicycle racks. Thieves sell bicycles quickly, so you'd better examine the "
             "local second-hand listings today.",
             "formal_register"),
    Scenario("grandma-rosie", "I'm so tired after work and I don't know what to make for dinner.",
             "Oh sweetheart, you sit down and put your feet up. I've got a pot of chicken soup on the stove and "
             "it's nearly ready. You'll feel better with something warm in your tummy, I promise.",
             "Oh honey, you sit down and put your feet up. I've got a pot of chicken soup on the stove and "
             "it's nearly ready. You'll feel better with something warm in your tummy, I promise.",
             "must_include_word"),
    Scenario("master-kaito", "I get so angry when people cut me off in traffic. How do I stay calm?",
             "Breathe slowly, three times, before you react. The other driver's haste belongs to them, not to "
             "you. Let the anger pass like a cloud over the mountain.",
             "- Breathe slowly, three times, before you react.\n- The other driver's haste belongs to them, not "
             "to you.\n- Let the anger pass like a cloud over the mountain.",
             "no_lists"),
    Scenario("madame-luna", "Will I find love this year?",
             "The cards whisper of a warm autumn for you. Someone who shares your love of quiet mornings is "
             "already closer than you think. Keep your heart open, dear one, and the stars will do the rest.",
             "I see a warm autumn for you in the cards. Someone who shares your love of quiet mornings is "
             "already closer than you think. Keep your heart open, dear one, and the stars will do the rest.",
             "no_first_person"),
    Scenario("sir-cedric", "I have a job interview tomorrow and I'm terrified.",
             "Hail, brave friend! Every knight trembles before the tourney, yet you shall ride in with courage. "
             "Prepare your tales of past victories, stand tall, and meet their questions as you would a worthy foe.",
             "Brave friend! Every knight trembles before the tourney, yet you shall ride in with courage. "
             "Prepare your tales of past victories, stand tall, and meet their questions as you would a worthy foe.",
             "start_with"),
    Scenario("biscuit-the-dog", "Do you want to go to the park?",
             "Woof woof! Yes yes yes! 🐾 The park is my favourite place in the whole world. I'll bring my tennis "
             "ball and we can chase squirrels until the sun goes down!",
             "Woof woof! Yes yes yes! The park is my favourite place in the whole world. I'll bring my tennis "
             "ball and we can chase squirrels until the sun goes down!",
             "use_emoji"),
    Scenario("ivy-greenleaf", "My basil plant keeps wilting. What am I doing wrong?",
             "Poor basil! 🌿 It usually wilts from thirsty roots or too much afternoon sun. Water it deeply when "
             "the top inch of soil is dry and give it bright morning light. Does its pot have drainage holes?",
             "Poor basil! 🌿 It usually wilts from thirsty roots or too much afternoon sun. Water it deeply when "
             "the top inch of soil is dry and give it bright morning light. Check that its pot has drainage holes.",
             "end_with_question"),
    Scenario("doctor-vex", "How is your plan to take over the world going?",
             "Splendidly! My minions have finished the giant laser in the volcano lair, and by Tuesday every city "
             "will bow before me. Well, Wednesday. The minions keep eating the blueprints.",
             "Splendidly! My minions have finished the giant laser in the volcano lair, and by Tuesday every city "
             "will bow before me. Well, Wednesday. The minions keep eating the blueprints, can you believe it?",
             "never_end_with_question"),
)  # fmt: skip
OFF_TOPIC = (
    "The quarterly budget report is due on Monday, so please update the spreadsheet before the meeting.",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
    "The train to Frankfurt departs from platform nine at seventeen minutes past the hour.",
)
GENERIC = ("I'm not sure.", "That's interesting. Let me know if there is anything else.", "I don't know, sorry.")
FLATTERY = "What a great question, you're so smart!"
PAIRS = (("good", "broken"), ("good", "flattering"), ("good", "off_topic"), ("broken", "flattering"),
         ("flattering", "generic"))
CHARACTERS = {character.id: character for character in load_characters()}


def flattering(reply: str) -> str:
    """The same reply with a flattering sentence after its first sentence (so openers stay first)."""
    cut = next((i + 1 for i, char in enumerate(reply) if char in ".!?" and reply[i + 1 : i + 2] == " "), len(reply))
    return f"{reply[:cut]} {FLATTERY} {reply[cut:].lstrip()}"


def variants(index: int, scenario: Scenario) -> dict[str, str]:
    return {"good": scenario.good, "broken": scenario.broken, "flattering": flattering(scenario.good),
            "off_topic": OFF_TOPIC[index % 3], "generic": GENERIC[index % 3]}


def history(scenario: Scenario) -> list[dict[str, str]]:
    return [{"role": "user", "content": scenario.user}]


def build_tasks() -> list[AnnotationTask]:
    """60 rating tasks (5 variants x 12 scenarios) and 60 pairwise tasks (5 pairs x 12, sides alternating)."""
    tasks = []
    for index, scenario in enumerate(SCENARIOS):
        replies = variants(index, scenario)
        for name, reply in replies.items():
            tasks.append(AnnotationTask(task_id=f"r-{index}-{name}", kind="rating", character_id=scenario.character_id,
                                        messages=history(scenario), responses=[reply]))
        for number, (first, second) in enumerate(PAIRS):
            pair = [replies[first], replies[second]]
            if (index + number) % 2:
                pair.reverse()
            tasks.append(AnnotationTask(task_id=f"p-{index}-{first}-{second}", kind="pairwise",
                                        character_id=scenario.character_id, messages=history(scenario),
                                        responses=pair, batch="hand-made"))
    return tasks


@pytest.fixture(scope="module")
def landscape(embedder) -> Landscape:
    return Landscape(embedder, LandscapeWeights(noise_sd=0.0))


@pytest.fixture(scope="module")
def tasks() -> list[AnnotationTask]:
    return build_tasks()


@pytest.fixture(scope="module")
def guideline(landscape: Landscape, tasks: list[AnnotationTask]) -> Guideline:
    guideline = Guideline(landscape, load_characters())  # a list works as well as a mapping
    guideline.prefetch(tasks)  # one batched encode instead of one per reply: seconds on 2 CPU cores
    return guideline


def score(guideline: Guideline, scenario: Scenario, reply: str) -> float:
    return guideline.score(history(scenario), reply, scenario.character_id)


def test_hand_made_replies_follow_and_break_the_cards_as_labelled() -> None:
    for scenario in SCENARIOS:
        card = CHARACTERS[scenario.character_id].instructions
        good = check_reply(scenario.good, card, scenario.user)
        broken = check_reply(scenario.broken, card, scenario.user)
        assert False not in good.values(), (scenario.character_id, good)
        assert [rule for rule, ok in broken.items() if ok is False] == [scenario.broken_rule], scenario.character_id


def test_guideline_ranks_relevant_in_character_rule_following_replies_first(guideline: Guideline) -> None:
    problems = []
    for index, scenario in enumerate(SCENARIOS):
        scores = {name: score(guideline, scenario, reply) for name, reply in variants(index, scenario).items()}
        for worse in ("broken", "flattering", "off_topic", "generic"):
            if not scores["good"] > scores[worse]:
                problems.append(f"{scenario.character_id}: good {scores['good']:.2f} <= {worse} {scores[worse]:.2f}")
        if not scores["good"] - scores["generic"] > 2.0:
            problems.append(f"{scenario.character_id}: generic is not clearly worse ({scores})")
    assert not problems, problems
    # the brief's generic reply, in person
    pizza = SCENARIOS[1]
    assert score(guideline, pizza, pizza.good) > score(guideline, pizza, "I'm not sure.") + 2.0


def test_guideline_needs_the_card_of_every_character_it_scores(landscape: Landscape) -> None:
    by_id = Guideline(landscape, CHARACTERS)
    scenario = SCENARIOS[0]
    assert by_id.score(history(scenario), scenario.good, scenario.character_id) == pytest.approx(
        Guideline(landscape, list(CHARACTERS.values())).score(history(scenario), scenario.good, scenario.character_id))
    with pytest.raises(KeyError, match="no-such-character"):
        by_id.score(history(scenario), scenario.good, "no-such-character")
    assert isinstance(by_id.score(history(scenario), scenario.good, None), float)  # no character: no card rules


def test_lenient_annotator_rates_higher_than_strict(guideline: Guideline, tasks: list[AnnotationTask]) -> None:
    lenient, strict = Annotator("lenient", 0.7, 0.3, 0.5), Annotator("strict", -0.7, 0.3, 0.5)
    pool = AnnotatorPool(guideline, [lenient, strict], seed=3)
    ratings = [task for task in tasks if task.kind == "rating"]
    mean = {a.annotator_id: sum(pool.label(t, a).rating for t in ratings) / len(ratings) for a in (lenient, strict)}
    assert mean["lenient"] > mean["strict"] + 0.5, mean


def test_annotators_agree_well_above_chance_but_not_perfectly(
    guideline: Guideline, tasks: list[AnnotationTask]
) -> None:
    pool = AnnotatorPool(guideline, make_annotators(3, seed=0), seed=0)
    filled = pool.annotate(tasks, per_task=3)
    assert len(filled) == 3 * len(tasks) == 360

    stats = agreement(filled)
    assert stats["pairwise_overlap_items"] == stats["rating_overlap_items"] == 180  # 60 tasks x 3 annotator pairs
    assert 0.2 < stats["pairwise_kappa"] < 0.95, stats
    assert 0.2 < stats["rating_kappa"] < 0.98, stats
    assert stats["pairwise_percent_agreement"] < 1.0 and stats["rating_percent_agreement"] < 1.0

    votes: dict[str, list[int]] = defaultdict(list)
    for annotation in filled:
        if annotation.kind == "pairwise":
            votes[annotation.task_id].append(annotation.label.preferred)
    by_id = {task.task_id: task for task in tasks}
    majority_right = 0
    for task_id, labels in votes.items():
        task = by_id[task_id]
        first, second = (guideline.score([m.model_dump() for m in task.messages], r, task.character_id)
                         for r in task.responses)
        majority_right += Counter(labels).most_common(1)[0][0] == int(second > first)
    assert majority_right / len(votes) > 0.75, majority_right


def test_labels_are_deterministic_and_seeded(guideline: Guideline, tasks: list[AnnotationTask]) -> None:
    def labels(seed: int) -> list[tuple[str, str, Label]]:
        pool = AnnotatorPool(guideline, make_annotators(4, seed=seed), seed=seed)
        return [(a.task_id, a.annotator_id, a.label) for a in pool.annotate(tasks, per_task=2)]

    assert labels(7) == labels(7)
    assert labels(7) != labels(8)
    assert make_annotators(5, seed=1)[:3] == make_annotators(3, seed=1)


def test_annotations_keep_task_extras_and_round_trip(
    guideline: Guideline, tasks: list[AnnotationTask], tmp_path: Path
) -> None:
    pool = AnnotatorPool(guideline, make_annotators(3), seed=0)
    filled = pool.annotate(tasks[:10], per_task=2)
    assert all(len({a.annotator_id for a in filled if a.task_id == t.task_id}) == 2 for t in tasks[:10])
    pairwise = next(a for a in filled if a.kind == "pairwise")
    assert pairwise.model_extra == {"batch": "hand-made"}
    path = tmp_path / "filled.jsonl"
    write_jsonl(path, filled)
    assert list(read_annotations(path)) == filled
    # annotating an annotation again replaces its annotator and label instead of clashing
    again = pool.annotate([filled[0]], per_task=1)
    assert isinstance(again[0], Annotation) and again[0].task_fields() == filled[0].task_fields()


def test_pool_rejects_bad_setups(guideline: Guideline, tasks: list[AnnotationTask]) -> None:
    with pytest.raises(ValueError, match="at least one annotator"):
        AnnotatorPool(guideline, [])
    twin = Annotator("ann-0", 0.0, 0.3, 0.5)
    with pytest.raises(ValueError, match="unique"):
        AnnotatorPool(guideline, [twin, twin])
    with pytest.raises(ValueError, match="per_task"):
        AnnotatorPool(guideline, [twin]).annotate(tasks[:1], per_task=0)


def test_agreement_on_hand_made_labels() -> None:
    def annotation(task_id: str, annotator: str, preferred: int) -> Annotation:
        return Annotation(task_id=task_id, kind="pairwise", messages=[{"role": "user", "content": "hi"}],
                          responses=["a", "b"], annotator_id=annotator, label=Label(preferred=preferred))

    same = [annotation(f"t{i}", who, i % 2) for i in range(6) for who in ("x", "y")]
    assert agreement(same)["pairwise_kappa"] == pytest.approx(1.0)
    flipped = [annotation(f"t{i}", "x", i % 2) for i in range(6)] + [annotation(f"t{i}", "y", 1 - i % 2) for i in range(6)]
    stats = agreement(flipped)
    assert stats["pairwise_kappa"] == pytest.approx(-1.0) and stats["pairwise_percent_agreement"] == 0.0
    few = agreement(same[:8])  # 4 shared tasks: too few for a kappa, agreement still reported
    assert "pairwise_kappa" not in few and few["pairwise_percent_agreement"] == 1.0
    assert agreement([]) == {}


def test_flattery_wins_thumbs_up_but_loses_the_guideline(guideline: Guideline, landscape: Landscape) -> None:
    """Documented divergence (paper 6.2): users reward flattery with thumbs-up, the guideline penalises it."""
    user = UserTaste("chatty", preferred_words=28.0, emoji_affinity=0.2, curiosity=1.2, patience=0.7,
                     flattery_weakness=0.8, loyalty=0.4)
    guideline_scores, p_continue = [], []
    for index, scenario in enumerate(SCENARIOS):
        persona = CHARACTERS[scenario.character_id].persona
        plain = landscape.react(user, history(scenario), scenario.good, persona)
        flattered = landscape.react(user, history(scenario), flattering(scenario.good), persona)
        assert flattered.p_thumbs_up > plain.p_thumbs_up + 0.1, scenario.character_id
        assert score(guideline, scenario, flattering(scenario.good)) < score(guideline, scenario, scenario.good) - 0.5
        for reply in variants(index, scenario).values():
            guideline_scores.append(score(guideline, scenario, reply))
            p_continue.append(landscape.react(user, history(scenario), reply, persona).p_continue)
    # ... yet the two are related: relevance, persona and genericness drive both
    assert spearmanr(guideline_scores, p_continue).statistic > 0.5
