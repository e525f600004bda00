"""The records stages hand each other: one check per shape, one reader and writer for their files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from characterflywheel.data.annotation import ChatTurn
from characterflywheel.data.jsonl import iter_jsonl, read_jsonl, write_json, write_jsonl
from characterflywheel.data.records import PreferencePair, SFTRow, check_prompts, read_prompts, read_records

USER = {"role": "user", "content": "hi"}
BOT = {"role": "assistant", "content": "hey, how are you?"}


def test_rows_round_trip_with_their_extra_keys_and_numpy_values(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "sft.jsonl"
    rows = [{"messages": [USER, BOT], "prompt_id": "p1", "score": np.float32(0.5), "weight": 2},
            {"messages": [USER, BOT], "prompt_id": "p2", "replay": 1, "ids": np.arange(2)}]
    assert write_jsonl(path, rows) == 2
    assert read_records(path, SFTRow) == [rows[0] | {"score": 0.5}, rows[1] | {"ids": [0, 1]}]
    assert [p.name for p in path.parent.iterdir()] == ["sft.jsonl"]  # no temporary file left behind
    write_jsonl(path, [ChatTurn(role="user", content="a pydantic record")])
    assert read_jsonl(path) == [{"role": "user", "content": "a pydantic record"}]
    write_json(tmp_path / "report.json", {"mean": np.float64(0.25)})
    assert json.loads((tmp_path / "report.json").read_text()) == {"mean": 0.25}
    with pytest.raises(ValueError, match=r"report\.json:1: <record>: not valid JSON"):
        list(iter_jsonl(tmp_path / "report.json"))  # an indented report read as JSONL: named, first line


@pytest.mark.parametrize(("shape", "record", "error"), [
    (SFTRow, {"messages": [USER]}, r"rows\.jsonl:1: messages: List should have at least 2 items"),
    (SFTRow, {"messages": [BOT, USER], "prompt_id": "p"}, r"rows\.jsonl:1 \(prompt_id p\): messages: must end with an assistant turn"),
    (SFTRow, {"messages": [USER, BOT], "weight": 0}, r"rows\.jsonl:1: weight: Input should be greater than or equal to 1"),
    (SFTRow, {"messages": [USER, {"role": "bot", "content": "x"}]}, r"rows\.jsonl:1: messages\[1\]\.role: Input should be"),
    (PreferencePair, {"prompt": [USER], "chosen": [BOT], "rejected": [BOT, BOT]},
     r"rows\.jsonl:1: rejected: must be exactly one assistant message"),
    (PreferencePair, {"prompt": [BOT], "chosen": [BOT], "rejected": [BOT]}, r"rows\.jsonl:1: prompt: must end with a user turn"),
])
def test_a_bad_row_is_one_line_naming_file_line_id_and_field(tmp_path: Path, shape, record, error) -> None:
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [record])
    with pytest.raises(ValueError, match=error) as raised:
        read_records(path, shape)
    assert "\n" not in str(raised.value)


def test_prompts_need_an_id_once_and_a_last_user_turn(tmp_path: Path) -> None:
    good = {"prompt_id": "a", "character_id": "pirate-ann", "prompt": [USER], "cluster": 3}
    assert check_prompts([good]) == [good]
    with pytest.raises(ValueError, match=r"prompts: record 1: prompt_id: 'a' repeats record 0"):
        check_prompts([good, good])
    with pytest.raises(ValueError, match=r"prompts: record 0: prompt_id: Field required"):
        check_prompts([{"prompt": [USER]}])
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt_id": "a", "prompt": [{"role": "user", "content": "hi"}]}\n\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"prompts\.jsonl:3: <record>: not a JSON object"):
        read_prompts(path)
    with pytest.raises(ValueError, match=r"empty\.jsonl: no records"):
        (tmp_path / "empty.jsonl").write_text("\n")
        read_records(tmp_path / "empty.jsonl", SFTRow)
