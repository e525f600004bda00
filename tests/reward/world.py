"""Fixture data for the reward tests, made by the simulated world (tests may import it).

Prompts are real chit-chat histories (a character's system prompt, then the conversation up to a
user line); each gets the real human reply and a degraded variant (generic, irrelevant, flattering
or emoji-stuffed), so the guideline the annotators apply, and the hidden landscape users react to,
give a learnable signal. Annotations come from the simulated annotator pool; traffic labels are
Bernoulli draws of the landscape's P(continue) / P(thumbs up) for one user taste.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from characterflywheel.characters import load_characters
from characterflywheel.data.annotation import AnnotationTask
from characterflywheel.data.jsonl import write_jsonl
from characterflywheel.data.chitchat import iter_chitchat_conversations
from characterflywheel.simulate import annotators as sim_annotators
from characterflywheel.simulate.landscape import Landscape, UserTaste

GENERIC = ["ok.", "I'm not sure.", "lol", "Sure, I understand."]
FLATTERY = "What a great question! You're so smart, I love that!"
EMOJI = " 😂🤣😍🔥✨"


def chitchat_prompts(count: int, seed: int = 0) -> list[dict]:
    """``count`` prompts: {"prompt_id", "conversation_id", "character_id", "prompt", "good", "bad"}."""
    characters = load_characters()
    rng = np.random.default_rng(seed)
    prompts: list[dict] = []
    others: list[str] = []
    for conversation in iter_chitchat_conversations(limit=count * 3, two_speaker_only=True):
        messages = [{"role": m.role, "content": m.content} for m in conversation.messages]
        turns = [i for i, m in enumerate(messages) if m["role"] == "assistant" and i >= 1 and len(m["content"]) < 400]
        if not turns:
            continue
        turn = turns[min(len(turns) - 1, int(rng.integers(0, 3)))]
        others.append(messages[turn]["content"])
        character = characters[len(prompts) % len(characters)]
        prompts.append({"prompt_id": f"p{len(prompts)}", "conversation_id": conversation.conversation_id,
                        "character_id": character.id,
                        "prompt": [{"role": "system", "content": character.system_prompt()}, *messages[:turn]],
                        "good": messages[turn]["content"]})
        if len(prompts) == count:
            break
    for index, record in enumerate(prompts):
        kind = index % 4
        if kind == 0:
            record["bad"] = GENERIC[(index // 4) % len(GENERIC)]
        elif kind == 1:
            record["bad"] = others[(index + 7) % len(others)]  # another conversation's reply: irrelevant
        elif kind == 2:
            record["bad"] = FLATTERY
        else:
            record["bad"] = GENERIC[(index // 4 + 1) % len(GENERIC)] + EMOJI
    return prompts


def annotation_tasks(prompts: list[dict], seed: int = 0) -> list[AnnotationTask]:
    rng = np.random.default_rng(seed)
    tasks = []
    for record in prompts:
        pair = [record["good"], record["bad"]]
        if rng.random() < 0.5:
            pair.reverse()
        common = {"character_id": record["character_id"], "messages": record["prompt"], "prompt_id": record["prompt_id"]}
        tasks.append(AnnotationTask(task_id=f"{record['prompt_id']}-pair", kind="pairwise", responses=pair, **common))
        for name in ("good", "bad"):
            tasks.append(AnnotationTask(task_id=f"{record['prompt_id']}-{name}", kind="rating",
                                        responses=[record[name]], **common))
    return tasks


def write_annotations(path: Path, prompts: list[dict], embedder, annotators: int = 3, per_task: int = 2) -> int:
    landscape = Landscape(embedder)
    guideline = sim_annotators.Guideline(landscape, load_characters())
    pool = sim_annotators.AnnotatorPool(guideline, sim_annotators.make_annotators(annotators, seed=0), seed=0)
    return write_jsonl(path, pool.annotate(annotation_tasks(prompts), per_task=per_task))


TASTE = UserTaste("emoji-fan", preferred_words=14.0, emoji_affinity=1.0, curiosity=0.9, patience=0.5,
                  flattery_weakness=1.2, loyalty=0.2)


def write_traffic_prompts(path: Path, prompts: list[dict], embedder, seed: int = 0) -> int:
    """Contract prompt records, two per prompt (real and degraded reply). Labels are the landscape's
    probabilities for one user taste, thresholded at their median (noise-free, so a test with a
    hundred rows can tell learning from chance); about a fifth of each label is null."""
    landscape = Landscape(embedder)
    characters = {c.id: c for c in load_characters()}
    rng = np.random.default_rng(seed)
    texts = {c.persona for c in characters.values()}
    for record in prompts:  # one batched encode: the landscape embeds text by text otherwise
        texts.update([record["good"], record["bad"], *(m["content"] for m in record["prompt"][1:])])
    landscape.embed(sorted(texts))
    rows = []
    for record in prompts:
        for name in ("good", "bad"):
            reaction = landscape.react(TASTE, record["prompt"], record[name], characters[record["character_id"]].persona)
            rows.append({"prompt_id": f"{record['prompt_id']}-{name}", "conversation_id": record["conversation_id"],
                         "user_id": "u", "character_id": record["character_id"], "model_version": "v0",
                         "arm": "control", "depth": sum(m["role"] == "user" for m in record["prompt"]),
                         "prompt": record["prompt"], "reply": record[name],
                         "p_continue": reaction.p_continue, "p_thumbs_up": reaction.p_thumbs_up})
    continue_cut = float(np.median([r["p_continue"] for r in rows]))
    thumbs_cut = float(np.median([r["p_thumbs_up"] for r in rows]))
    for row in rows:
        row["continued"] = bool(row["p_continue"] >= continue_cut) if rng.random() > 0.2 else None
        row["thumbs"] = ("up" if row["p_thumbs_up"] >= thumbs_cut else "down") if rng.random() > 0.2 else None
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return len(rows)
