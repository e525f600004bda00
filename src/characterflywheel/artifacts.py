"""The file names of the artifacts stages hand each other, defined once.

A generation's folder holds one folder per stage (``runs/<name>/gen-<n>/<stage>/``); these are the
files in them that another stage, the summary, the report or the command line reads back.
"""

from __future__ import annotations

OFFLINE = "offline.json"      # evaluate: win rates, steerability, monitors (evaluate.offline.OfflineReport)
TRUTH = "truth.json"          # evaluate: the hidden truth, simulated runs only (report only)
GATES = "gates.json"          # gate: evaluate.gates.GateDecision
REGISTRY = "registry.json"    # gate: the child's model-registry version
DECISION = "decision.json"    # deploy: arms served, promotion and why
AB = "ab.json"                # deploy (and `ab`): the A/B read-out (evaluate.ab.ABResult)
VS_GENERATION0 = "vs-generation0"  # deploy: folder of every served model's A/B against the holdout arm
SUMMARY = "summary.json"      # per generation: what the report reads
SFT = "sft.jsonl"             # sample: data.records.SFTRow, what SFT trains on
PREFERENCES = "prefs.jsonl"   # sample: data.records.PreferencePair, what DPO trains on
REPLIES = "replies.jsonl"     # evaluate: every model's replies to the held-out prompts (and `generate`'s)
