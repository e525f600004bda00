"""The ``[curate]`` config section (data consolidation: prompts, privacy, diversity, strata,
annotation) and its preset values."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from characterflywheel.section import Section

STRATA_DIMENSIONS = ("character_id", "depth_bucket", "cluster", "outcome")
"""Dimensions Phase III can balance; ``depth_bucket`` and ``outcome`` are derived from a prompt."""


class CurateConfig(Section):
    # ---- prompts (explode traffic into one prompt per assistant turn)
    max_history_turns: int = Field(
        8, ge=1, description="Prompt history kept: the last N messages before the reply (the system turn is always kept)."
    )
    # ---- Phase I: privacy and safety
    privacy: bool = Field(True, description="Run Phase I (PII masking, unsafe conversation dropping); off copies prompts through.")
    phone_region: str = Field("US", min_length=2, max_length=2, description="Default region for phone numbers without a country code.")
    unsafe_scope: Literal["from_message", "conversation"] = Field(
        "from_message",
        description="What an unsafe message drops: its conversation's records from that message on (earlier turns "
        "never saw it), or the whole conversation.",
    )
    unsafe_threshold: float | None = Field(
        None, gt=0, lt=1,
        description="P(unsafe) above which a sentence is unsafe on the classifier alone; empty: calibrated to flag unsafe_strict_false_positive_rate of real chit-chat.",
    )
    unsafe_cue_threshold: float | None = Field(
        None, gt=0, lt=1,
        description="P(unsafe) above which a sentence holding cue words of a category is unsafe; empty: calibrated to unsafe_cue_false_positive_rate.",
    )
    unsafe_strict_false_positive_rate: float = Field(
        0.001, gt=0, lt=0.5, description="Share of safe chit-chat sentences the calibrated strict threshold may flag (cross-validated)."
    )
    unsafe_cue_false_positive_rate: float = Field(
        0.1, gt=0, lt=0.5, description="Share of safe chit-chat sentences with cue words the calibrated cue threshold may flag."
    )
    safety_negatives: int = Field(1500, ge=0, description="Real chit-chat lines used as safe examples when fitting the classifier.")
    # ---- Phase II: diversity
    keep_share: float = Field(0.5, gt=0, le=1, description="Share of prompts kept by diversity sampling.")
    diversity_method: Literal["k_center", "cluster"] = Field(
        "k_center", description="k_center: greedy farthest-point cover; cluster: KMeans, then sample each cluster by its share."
    )
    diversity_within_character: bool = Field(
        True, description="Select within each character's prompts, a quota per character in proportion to its "
        "prompts: the same line said to two characters is two prompts (the reply that keeps a user talking depends "
        "on who answers). Across characters, 44 of 49 greetings ('Hello?') to 23 characters were dropped as one."
    )
    clusters: int = Field(16, ge=1, description="KMeans topic clusters assigned to every kept prompt (Phase III can balance them).")
    context_messages: int = Field(1, ge=0, description="Messages before the last user line embedded with it as context.")
    embed_batch_size: int = Field(64, ge=1, description="Texts per embedder batch.")
    embed_max_chars: int = Field(600, ge=32, description="Characters of the embedded text at most (MiniLM reads 256 word pieces).")
    # ---- Phase III: stratified sampling
    max_prompts: int = Field(2000, ge=1, description="Prompts in the stratified set at most.")
    strata: list[str] = Field(
        default_factory=lambda: list(STRATA_DIMENSIONS),
        description="Dimensions balanced at once: character_id, depth_bucket, cluster, outcome.",
    )
    strata_targets: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Target weights per dimension, e.g. {outcome = {continued = 2, left = 1}}; a dimension left out is uniform over its observed values.",
    )
    depth_buckets: list[int] = Field(
        default_factory=lambda: [1, 2, 4, 8],
        description="Lower edges of the depth buckets (user turns so far), e.g. [1, 2, 4, 8] -> 1, 2-3, 4-7, 8+.",
    )
    stratify_method: Literal["greedy", "raking"] = Field(
        "greedy", description="greedy: deficit filling over all dimensions; raking: IPF weights, then weighted sampling."
    )
    # ---- annotation
    annotation_prompts: int = Field(200, ge=0, description="Curated prompts turned into annotation tasks (0: none).")
    policy_candidates: int = Field(2, ge=0, description="Policy replies sampled per annotated prompt besides the logged reply.")
    pairs_per_prompt: int = Field(1, ge=0, description="Pairwise tasks per annotated prompt.")
    ratings_per_prompt: int = Field(1, ge=0, description="Rating tasks per annotated prompt.")
    annotators_per_task: int = Field(2, ge=1, description="Annotators labelling each task (agreement needs 2+).")
    annotators: int = Field(5, ge=1, description="Size of the annotator pool (the simulated one in the demo).")

    @field_validator("strata")
    @classmethod
    def _known_strata(cls, strata: list[str]) -> list[str]:
        unknown = [d for d in strata if d not in STRATA_DIMENSIONS]
        if unknown:
            raise ValueError(f"unknown dimension {unknown[0]!r}, choose from {', '.join(STRATA_DIMENSIONS)}")
        return strata

    @field_validator("strata_targets")
    @classmethod
    def _known_targets(cls, targets: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for dimension, weights in targets.items():
            if dimension not in STRATA_DIMENSIONS:
                raise ValueError(f"unknown dimension {dimension!r}, choose from {', '.join(STRATA_DIMENSIONS)}")
            if any(weight < 0 for weight in weights.values()) or (weights and sum(weights.values()) <= 0):
                raise ValueError(f"{dimension}: weights must be >= 0 with a positive sum")
        return targets

    @field_validator("depth_buckets")
    @classmethod
    def _increasing_buckets(cls, edges: list[int]) -> list[int]:
        if not edges or edges[0] < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError("must be increasing lower edges starting at 1 or more, e.g. [1, 2, 4, 8]")
        return edges


# Merged into config.PRESETS["tiny"] / ["demo"] under the "curate" key.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"max_history_turns": 4, "safety_negatives": 600, "keep_share": 0.6, "clusters": 4, "max_prompts": 60, "annotation_prompts": 8,
             "policy_candidates": 1, "annotators": 3},
    # Sized so that two generations of `make demo` fit in ~20 minutes on a 2-core CPU.
    # Every pair of the logged reply and 2 policy samples, each rated: 12 labels per prompt (2 annotators);
    # at one pair and one rating per prompt the reward models stayed near chance on the landscape.
    "demo": {"keep_share": 0.7, "clusters": 8, "max_prompts": 96, "annotation_prompts": 48, "policy_candidates": 2,
             "pairs_per_prompt": 3, "ratings_per_prompt": 3, "safety_negatives": 600},
}
