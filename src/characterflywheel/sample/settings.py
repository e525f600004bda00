"""The ``[sample]`` config section (rejection sampling, paper 5.1 / 7.4, and hard prompts by
reward variance, paper 7.3) and its preset values."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from characterflywheel.section import Section


class SampleConfig(Section):
    # Candidate generation.
    k: int = Field(4, ge=1, description="Candidate replies generated per prompt from the chosen model.")
    temperature: float = Field(
        0.8, ge=0.0, description="Sampling temperature of the policy's candidates: the replies annotators label for "
        "the reward models, the probes and the rejection-sampling candidates (one temperature, so the reward "
        "models learn on the replies they later rank). Serving and evaluation use generation.temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus (top-p) mass for candidates and probes.")
    max_new_tokens: int = Field(64, ge=1, description="Token budget per candidate reply.")
    seed: int = Field(0, description="Base seed; probes use seed + pool index + 1, candidates use seed.")
    # Model choice from the candidate pool (current model first, then earlier generations).
    probe_n: int = Field(
        2, ge=1,
        description="Probe replies per prompt and pool model used to pick the best model; the chosen model's "
        "probes are among its k candidates.",
    )
    # Acceptance.
    min_words: int = Field(
        5, ge=1,
        description="A finished reply of fewer words is a non-answer ('Hello!', 'Hail!'): never kept, and a "
        "rejected side of a pair. Once the policy writes such replies the reward models can score them highest, "
        "and each generation turns terser (docs/climb.md).",
    )
    tau: float = Field(0.0, description="Absolute judge-score threshold: a candidate is kept when score >= tau.")
    tau_quantile: float | None = Field(
        0.5, ge=0.0, le=1.0,
        description="If set, tau is this quantile of the scores of the run's finished candidates (overrides `tau`; "
        "scale-free, hence the default). Set to null to use the absolute `tau`.",
    )
    follow_rules: bool = Field(
        True,
        description="A candidate that breaks more of its character card's applicable rules (the deterministic "
        "instruction checks) than another candidate of the prompt is not kept, whatever its score, and is then "
        "the rejected reply of the prompt's preference pair; steerability then rises with each generation "
        "instead of drifting. A rule no candidate keeps faults nobody.",
    )
    keep_best_rule_keeper: bool = Field(
        False,
        description="With follow_rules: a prompt where some candidate keeps its card's rules and some break "
        "them, but every rule keeper scores below tau, keeps its best rule keeper (the SFT reply, chosen "
        "against the lowest-scored rule breaker). Off (default): such a prompt yields nothing. Off by "
        "default because it trades engagement for steerability: in a 600-user run those kept replies "
        "scored 0.37 true P(continue) against 0.48 for the candidates on average, and the child fell "
        "0.049 below its parent without following the rules any better.",
    )
    guided: int = Field(
        0, ge=0,
        description="Extra candidates per prompt whose character card demands an opening (a phrase to start "
        "with, a catchphrase, a word, an emoji): sampled with that opening forced, then judged and rule-checked "
        "like the others (sample/guided.py). Where the model never writes such openings itself, they are the "
        "only rule-keeping candidates rejection sampling can find.",
    )
    trim_cut_offs: bool = Field(
        False,
        description="A candidate the token budget cut off ends at its last whole sentence instead, and is judged "
        "as finished (too short after that: dropped as usual). Off: a cut-off candidate is never kept.",
    )
    guided_sft_weight: int = Field(
        1, ge=1,
        description="How many times a kept guided reply counts in the SFT set (the row's ``weight``; earlier "
        "generations' rows keep theirs when replayed). A card's opening habit is learned from the few prompts "
        "whose card asks for one: unweighted, they were about a sixth of the rows and the habit did not move.",
    )
    min_margin: float = Field(
        0.1, ge=0.0, description="Smallest judge-score margin chosen - rejected for a preference pair."
    )
    replay: bool = Field(
        True, description="Append the rows earlier generations accepted (SFT rows still >= tau, preference pairs "
        "against a failure mode or still preferred), re-scored by this generation's reward models: what one "
        "generation learned, steerability above all, accumulates instead of being diluted.")
    # User-signal re-ranking (paper 7.4).
    user_signal_max_win_rate: float = Field(
        0.65, ge=0.0, le=1.0,
        description="The user-signal model re-ranks kept candidates only while the reward model's win rate "
        "of the current model over its parent is below this.",
    )
    user_signal_weight: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Weight of the predicted P(continue) rank in the re-ranking blend (1 - weight: judge rank).",
    )
    # Hard prompts for online RL (paper 7.3).
    hard_share: float = Field(0.25, gt=0.0, le=1.0, description="Share of prompts selected as hard prompts.")
    hard_count: int | None = Field(None, ge=1, description="Exact number of hard prompts (overrides hard_share).")
    hard_by: Literal["variance", "mean"] = Field(
        "variance", description="Hard = highest variance of reward scores (default) or lowest mean score."
    )
    hard_source: Literal["candidates", "current"] = Field(
        "candidates",
        description="Replies scored for hardness: the rejection-sampling candidates (no extra generation) "
        "or hard_n fresh replies from the current model (pool[0]).",
    )
    hard_n: int = Field(4, ge=2, description="Replies per prompt when hard_source = 'current'.")

    @model_validator(mode="after")
    def _enough_candidates_for_variance(self) -> SampleConfig:
        if self.hard_source == "candidates" and self.k < 2:
            raise ValueError("sample.k must be >= 2 when sample.hard_source = 'candidates' (variance needs 2 replies)")
        return self


# Merged into config.PRESETS["tiny"] / ["demo"] under the "sample" key.
PRESETS: dict[str, dict[str, Any]] = {
    # 32 tokens: at 12 nearly every candidate was cut off mid-sentence, and a cut-off reply is never kept.
    "tiny": {"k": 2, "probe_n": 1, "max_new_tokens": 32, "min_margin": 0.0, "hard_share": 0.5},
    # k 5: even at the 64-token budget many of the base model's replies are cut off, and never kept.
    # tau at the 0.3 quantile of the finished candidates: a prompt often has only one or two finished ones,
    # and the user signal can only re-rank where two are kept.
    # Trimmed cut-offs and guided rows x 4: generation 1 of a 192-user run, from the same curated prompts and
    # reward models, +0.043 [+0.013, +0.073] true P(continue) over generation 0 against +0.013 without them
    # (with DPO at 5e-4 x 16 steps; 64 truth prompts x 8; docs/climb.md).
    "demo": {"k": 5, "probe_n": 1, "max_new_tokens": 64, "min_margin": 0.05, "guided": 1, "tau_quantile": 0.3,
             "trim_cut_offs": True, "guided_sft_weight": 4},
}
