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
TRAFFIC = "traffic.jsonl"     # seed, simulate, deploy: conversations in the traffic schema (data.schema), ingest's input
EVENTS = "events.jsonl"       # serve: the gateway's append-only event log, folded into TRAFFIC when it stops
CONVERSATIONS = "conversations.parquet"  # ingest: the accepted conversations (data.parquet)
QUARANTINE = "quarantine.jsonl"  # ingest: every rejected record with its file, line, field and reason
CLEAN = "clean.jsonl"         # curate (privacy): kept prompts, PII masked
STRATIFIED = "stratified.jsonl"  # curate (stratify): the curated prompts, what annotate and sample read
ANNOTATION_TASKS = "annotation_tasks.jsonl"  # annotate, evaluate: tasks for people (data.annotation.AnnotationTask)
ANNOTATION_KEY = "annotation_key.jsonl"  # annotate, evaluate: the same tasks with where each response came from
ANNOTATIONS = "annotations.jsonl"  # annotate, evaluate: the filled tasks (data.annotation.Annotation)
METRICS = "metrics.json"      # reward and train: each model's held-out or training metrics; a re-run skips a model with one
REWARD_CONFIG = "reward_config.json"  # reward: what a reward model saw in training, next to its weights
HARD_PROMPTS = "hard_prompts.jsonl"  # sample: the prompts online RL trains on
HEADROOM = "headroom.json"    # headroom (demo): can the hidden landscape be climbed? (simulate.headroom)
AB_PLOT = "ab.png"            # ab, deploy (and `ab`): the A/B read-out drawn
