"""Quiet mode keeps libraries' own tqdm bars off, even those made by code that imported tqdm first."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
from tqdm.auto import tqdm  # imported before the switch, as transformers does
from characterflywheel.models.progress import silence_libraries
for _ in tqdm(range(3), desc="before"): pass
silence_libraries()
silence_libraries()  # idempotent
for _ in tqdm(range(3), desc="library bar"): pass
for _ in tqdm(range(3), desc="asked for", disable=False): pass
"""


def test_silence_libraries_turns_off_bars_of_an_already_imported_tqdm() -> None:
    stderr = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True,
                            timeout=120).stderr
    assert "before" in stderr  # bars are on until the switch ...
    assert "library bar" not in stderr  # ... off after it ...
    assert "asked for" in stderr  # ... unless a caller asks for one explicitly
