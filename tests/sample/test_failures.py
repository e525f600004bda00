"""The policy's failure modes: a cut-off reply is never an SFT target or a chosen reply, but it
and loops and generic closers make the rejected side of preference pairs whatever the margin."""

from __future__ import annotations

import numpy as np
from sample_fakes import EmbeddedScoreJudge, ScriptedBackend, parse, prompt_record, reply

from characterflywheel.models.generation import ends_cleanly, reply_cut_off, trim_to_last_sentence
from characterflywheel.sample.failures import (
    broken_reply,
    degenerate_reply,
    earlier_replies,
    echoes,
    emoji_spam,
    find_failures,
    generic_closer,
    loops,
    too_short,
)
from characterflywheel.sample.rejection import accepted, rejection_sample
from characterflywheel.sample.settings import SampleConfig

LONG = "so the thing about old jazz records is that i really like how they sound when"


def test_loops_and_generic_closers_are_recognised():
    assert loops("I love classical. I love classical. I love classical.")
    assert loops("yes yes yes i do i do i do i do i do")
    assert not loops("I love classical music. Do you play an instrument?")
    assert loops("Old our  anyway     anyway    anyway") and not loops("No, no, I said the sea, not the tea.")
    assert loops("enthus hypocr hypocr enthus enthus PhDs hypocr enthus PhDs enthus enthus hypocr delect")
    assert not loops("I think the sea is calm today, and the wind is soft on the water.")
    long_reply = ("I grew up in a small town by the sea, and every morning I walked down to the harbour with my father. "
                  "He would check the nets and talk to the other fishermen, and I would sit on the wall and watch the "
                  "boats. When the weather was bad we stayed at home, and he taught me how to mend the nets and how to "
                  "read the clouds. I think that is why I love the sea so much now: it was the first thing I learned "
                  "to read, before books. What about you, was there a place like that for you when you were a child?")
    salad = " enthus hypocr hypocr enthus PhDs strugg enthus hypocr PhDs enthus hypocr enthus enthus PhDs delect hypocr"
    assert not loops(long_reply) and loops(long_reply + salad)  # a run of 16 words, not the whole reply
    assert loops("😊 😇😃😃😃😇😊😊😊😊😊😊😊😊") and not loops("Great!!! 😊😊")
    assert too_short("Minions.") and too_short("Hello! Good morning!") and not too_short("Minions are great fun, mate.")
    assert not too_short("Minions are great.", min_words=3)
    assert generic_closer("Sure! How can I help you today?")
    assert generic_closer("Let me know if you need anything.")
    assert not generic_closer("Ahoy! What be yer favourite sea shanty?")


def test_emoji_spam_is_more_than_three_emoji_or_three_in_a_row():
    """Replies that became SFT targets in `demo11`'s generation 2, and what a card asking for emoji needs."""
    assert emoji_spam("👉🎉🎌 Hey there! What brings you to LA?")
    assert emoji_spam("Hey there, I'm just a little text in the chat! 🎉👏🔬")
    assert emoji_spam("😄 🔴🔴 The fact that unicorns are real is a veritable roadmap of the sky.")
    assert emoji_spam("👀A Vengeance ☀\n👀Loyalty's the only thing ☀\n👀It's a story 🤝")  # six apart
    assert degenerate_reply("Absolutely, Pixel Pat! 😊😊✨ What a cool game! 🎉🎄🎭🎁")
    assert not emoji_spam("Great job! 💪 Keep going! 🔥 You got this! 🏆")  # three, apart
    assert not emoji_spam("Ahoy matey 🏴‍☠️ and my 👨‍👩‍👧 family")  # a ZWJ sequence is one emoji
    assert not emoji_spam("Plain words only, no emoji at all.") and not degenerate_reply("😊 Hello there, how was your day?")


def test_a_reply_is_cut_off_when_it_fills_the_budget_mid_sentence():
    assert ends_cleanly("That sounds fun!") and ends_cleanly("Sure 😊") and not ends_cleanly("I think that the")
    cut = reply_cut_off(None, [LONG, "Short and done.", LONG + "."], max_new_tokens=10)
    assert cut == [True, False, False]  # a full budget that ends a sentence is a finished reply


def test_a_cut_off_candidate_is_never_kept_even_with_the_best_score():
    replies = ["That sounds lovely, tell me more.", "And then we went down to the", "Sure, why not then, friend."]
    failures = find_failures(replies, [False, True, False], np.zeros(3, dtype=bool))
    kept = accepted(np.array([0.5, 0.9, 0.2]), failures, tau=0.4, keep_best_rule_keeper=False)
    assert kept.tolist() == [True, False, False]
    # a loop is never kept either
    looping = find_failures(["Oh. Oh. Oh, nice one there.", "Fine, thanks a lot, mate."], [False, False], np.zeros(2, dtype=bool))
    assert looping.degenerate.tolist() == [False, False]  # one-word sentences are not a loop
    looping = find_failures(["I love it so. I love it so.", "fine, thanks a lot, mate."], [False, False],
                            np.zeros(2, dtype=bool))
    assert accepted(np.array([0.9, 0.5]), looping, 0.4, False).tolist() == [False, True]


def test_rejection_sampling_trains_on_finished_replies_and_rejects_the_failure_modes():
    script = {
        "hi": [reply(LONG, 0.9), reply("a", 0.6), reply("b", 0.55), reply("How can I help you today?", 0.5)],
        "yo": [reply(LONG, 0.8), reply(LONG + " and", 0.7), reply(LONG + " or", 0.6), reply(LONG + " so", 0.5)],
    }
    backend = ScriptedBackend("scripted", lambda line: script[line])
    settings = SampleConfig(k=4, tau=0.4, tau_quantile=None, min_margin=0.5, max_new_tokens=10)
    prompts = [prompt_record("p0", "hi"), prompt_record("p1", "yo")]
    result = rejection_sample(prompts, ["current"], EmbeddedScoreJudge(), lambda spec: backend, settings)
    assert [row["prompt_id"] for row in result.sft] == ["p0"]  # every reply of p1 was cut off: no SFT row
    assert parse(result.sft[0]["messages"][-1]["content"], "s") == 0.6  # the best finished, not the cut 0.9
    (pair,) = result.prefs
    assert pair["rejected_reason"] == "generic_closer"  # a failure mode, below the 0.5 margin all the same
    assert pair["rejected"][0]["content"].startswith("How can I help")
    report = result.report
    assert report["cut_off_candidates"] == 5 and report["filtered_cut_off"] == 5
    assert report["pairs_against_failures"] == 1 and report["rejected_reasons"] == {"generic_closer": 1}
    assert not any(row["kept"] for row in result.candidates if row["cut_off"])


def test_a_plain_rule_breaker_mask_keeps_the_rule_keepers_above_tau():
    kept = accepted(np.array([0.9, 0.5, 0.1]), np.array([True, False, False]), tau=0.4, keep_best_rule_keeper=False)
    assert kept.tolist() == [False, True, False]


def test_the_rejected_side_is_a_broken_rule_then_a_degenerate_reply_then_a_cut_off():
    replies = ["Nice, tell me more about it?", "And then we went down to the", "How can I help you today?",
               "Ok then, see you later friend."]
    nothing_broken = np.zeros(4, dtype=bool)
    failures = find_failures(replies, [False, True, False, False], nothing_broken)
    assert failures.rejectable(0).tolist() == [2]  # the generic closer, though the cut-off may score lower
    only_cut = find_failures([replies[0], replies[1]], [False, True], np.zeros(2, dtype=bool))
    assert only_cut.rejectable(0).tolist() == [1]
    broken = find_failures(replies, [False, True, False, False], np.array([False, False, False, True]))
    assert broken.rejectable(0).tolist() == [3]  # a broken card rule comes first
    assert broken.rejectable(1).tolist() == [3] and broken.rejectable(3).tolist() == []  # a failing chosen: none
    assert find_failures(replies[:1] + replies[3:], [False, False], np.zeros(2, dtype=bool)).rejectable(0).tolist() == []


def test_trimmed_cut_offs_end_at_their_last_whole_sentence_and_can_be_kept():
    assert trim_to_last_sentence("Sure! I love the sea. And the ships of the") == "Sure! I love the sea."
    assert trim_to_last_sentence('Ahoy! 😊 We sailed to "Rome." Then we') == 'Ahoy! 😊 We sailed to "Rome."'
    assert trim_to_last_sentence("Well, I think that the") is None

    class WordJudge:  # longer replies score higher
        def score_groups(self, prompts, groups):
            return [np.array([len(r.split()) / 10 for r in group]) for group in groups]

    cut_twice = "I love old jazz records so much. They crackle and hiss in a way that i really like when"
    never_ends = LONG
    backend = ScriptedBackend("scripted", lambda line: [cut_twice, never_ends])
    prompts = [prompt_record("p0", "hi")]
    off = SampleConfig(k=2, tau=0.0, tau_quantile=None, max_new_tokens=10)
    assert rejection_sample(prompts, ["current"], WordJudge(), lambda spec: backend, off).sft == []
    on = off.model_copy(update={"trim_cut_offs": True})
    result = rejection_sample(prompts, ["current"], WordJudge(), lambda spec: backend, on)
    assert result.sft[0]["messages"][-1]["content"] == "I love old jazz records so much."
    assert result.report["trimmed_cut_offs"] == 1 and result.report["cut_off_candidates"] == 1
    assert result.prefs[0]["rejected"][0]["content"] == never_ends  # the one still cut off
    # beside a reply that finished on its own, a trimmed one is not kept, whatever its score
    finished = "Jazz, then! What do you play?"  # 6 words: scores below the trimmed 7
    backend = ScriptedBackend("scripted", lambda line: [cut_twice, finished])
    result = rejection_sample(prompts, ["current"], WordJudge(), lambda spec: backend, on)
    assert result.sft[0]["messages"][-1]["content"] == finished
    assert result.report["kept_trimmed"] == 0 and result.report["filtered_trimmed"] == 1


FIRST = "Ahoy! I be Captain Jack, the terror of the seven seas. What brings ye aboard me ship today?"


def test_an_echo_repeats_an_earlier_reply_of_the_conversation():
    """What `five13`'s children wrote on the second turn: the first reply again, verbatim or nearly."""
    assert echoes(FIRST, [FIRST])
    assert echoes("Ahoy! I be Captain Jack, the terror of the seven seas. What brings ye here, matey?", [FIRST])
    assert not echoes("Arr, a storm be coming from the west. Have ye ever sailed through one, matey?", [FIRST])
    assert not echoes("Ahoy! A fine day for sailing, and the wind be kind to us. Where shall we go?", [FIRST])
    assert not echoes(FIRST, []) and not echoes("Ahoy!", [FIRST])  # nothing before; no trigrams of its own
    assert echoes(FIRST, ["Something else entirely, friend.", FIRST])  # any earlier reply, not only the last
    conversation = [{"role": "system", "content": FIRST}, {"role": "user", "content": FIRST},
                    {"role": "assistant", "content": "Hello there."}]
    assert earlier_replies(conversation) == ["Hello there."]  # the character's own turns only
    assert broken_reply(FIRST, earlier=[FIRST]) and not broken_reply(FIRST)


def test_an_echo_is_never_kept_and_makes_the_rejected_reply_whatever_the_margin():
    fresh = "Arr, a storm be coming from the west. Have ye ever sailed through one, matey?"
    failures = find_failures([FIRST, fresh], [False, False], np.zeros(2, dtype=bool), earlier=[FIRST])
    assert failures.echo.tolist() == [True, False] and failures.degenerate.tolist() == [True, False]
    assert accepted(np.array([0.9, 0.5]), failures, 0.4, False).tolist() == [False, True]
    assert failures.rejectable(1).tolist() == [0] and failures.reason(0, [FIRST, fresh]) == "echo"

    script = {"and then?": [reply(FIRST, 0.9), reply(fresh, 0.6), reply(fresh + " Arr!", 0.55)]}
    backend = ScriptedBackend("scripted", lambda line: script[line])
    record = prompt_record("p0", "and then?")
    record["prompt"][1:1] = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": FIRST}]
    settings = SampleConfig(k=3, tau=0.4, tau_quantile=None, min_margin=0.5, max_new_tokens=100)
    result = rejection_sample([record], ["current"], EmbeddedScoreJudge(), lambda spec: backend, settings)
    assert parse(result.sft[0]["messages"][-1]["content"], "s") == 0.6  # the best reply that does not echo
    (pair,) = result.prefs
    assert pair["rejected_reason"] == "echo" and parse(pair["rejected"][0]["content"], "s") == 0.9
    assert result.report["echo_candidates"] == 1
    assert [row["echo"] for row in result.candidates] == [True, False, False]
    first_turn = rejection_sample([prompt_record("p1", "and then?")], ["current"], EmbeddedScoreJudge(),
                                  lambda spec: backend, settings)
    assert parse(first_turn.sft[0]["messages"][-1]["content"], "s") == 0.9  # nothing earlier to echo
