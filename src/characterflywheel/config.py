"""One TOML file configures a flywheel run; pydantic validates it.

Layering, lowest first: the built-in defaults, a named preset (``tiny`` for tests, ``demo`` for a laptop
run), the user's TOML file, then ``--set section.key=value`` overrides from the command line. Every
value in the file can be overridden that way, so there is no second set of per-command flags to keep
in sync.

A bad value is reported as one line naming the file and the dotted key, e.g.
``flywheel.toml: generation.temperature: Input should be greater than or equal to 0 (got -1)``.

``characterflywheel init`` writes a commented default generated from the field descriptions below,
so the template can never drift from what the validator accepts.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, Field, ValidationError, field_validator

from characterflywheel.curate import settings as curate_settings
from characterflywheel.curate.llm_judge import DEFAULT_RUBRIC
from characterflywheel.evaluate import settings as evaluate_settings
from characterflywheel.reward import settings as reward_settings
from characterflywheel.sample import settings as sample_settings
from characterflywheel.section import Section
from characterflywheel.train import settings as train_settings

EMBEDDED_POLICY = "embedded:smollm2-135m-instruct"
EMBEDDED_EMBEDDER = "embedded:all-minilm-l6-v2"


class ConfigError(ValueError):
    """A config problem, rendered as one line that names the file and the key."""


class ModelConfig(Section):
    policy: str = Field(
        EMBEDDED_POLICY,
        description="Policy to improve: a local Hugging Face folder, or the embedded SmolLM2-135M-Instruct.",
    )
    embedder: str = Field(
        EMBEDDED_EMBEDDER,
        description="Sentence embedder: a local sentence-transformers folder, or the embedded all-MiniLM-L6-v2.",
    )


class GenerationConfig(Section):
    backend: Literal["fast", "transformers", "openai"] = Field(
        "fast",
        description="fast (batched CPU path), transformers (HF generate) or openai (any OpenAI-compatible server, e.g. vLLM).",
    )
    max_new_tokens: int = Field(64, ge=1, le=4096, description="Tokens generated per reply at most.")
    temperature: float = Field(0.8, ge=0.0, le=5.0, description="Sampling temperature; 0 means greedy.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    batch_size: int = Field(32, ge=1, le=1024, description="Conversations decoded together by local backends.")
    dtype: Literal["auto", "float32", "bfloat16", "int8"] = Field(
        "auto", description="fast backend precision: auto is bfloat16 on a CPU with native bf16 (AVX512-BF16, "
        "AMX; ~1.7x faster there), else int8 projections where the CPU has VNNI (fp32 elsewhere in the model; "
        "models/int8.py), else float32.")
    base_url: str = Field("", description="openai backend: server URL, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai backend: environment variable holding the API key.")
    served_model: str = Field("", description="openai backend: model name on the server (defaults to model.policy).")
    forward_seed: bool = Field(True, description="openai backend: send each request's seed (false for vLLM's CPU build "
                               "0.32, whose engine fails seeded requests prefilled in chunks).")


class DataConfig(Section):
    seed_conversations: int = Field(
        200, ge=0, description="Real chit-chat conversations (PyPI chitchat-dataset) turned into seed traffic; 0 = all."
    )
    traffic: list[str] = Field(
        default_factory=list, description="Extra traffic files (JSONL or Parquet, the traffic schema) to ingest."
    )


class CharactersConfig(Section):
    cards: str = Field(
        "", description="The team's own character cards: a JSON file in the shipped cards.json format, added to the "
        "shipped cards (a card with a shipped id replaces it) wherever cards are read: the gateway, rule checks, "
        "evaluation, A/B guardrail. Empty: the shipped cards only. Characters that arrive only as a system "
        "message need no card.")

    @field_validator("cards")
    @classmethod
    def _cards_load(cls, cards: str) -> str:
        # Checked when the config loads, so a bad card stops a run before its first stage, not hours in.
        if cards:
            from characterflywheel.characters import load_characters

            load_characters(extra=cards)  # CharacterCardError (a ValueError): file, card and field
        return cards


class DemoConfig(Section):
    prompts: int = Field(4, ge=1, description="Prompts the demo answers with the policy.")


class ArmConfig(Section):
    name: str = Field(min_length=1, description="Arm name, e.g. control or challenger.")
    model: str = Field("", description="Model folder for this arm (empty: model.policy).")
    model_version: str = Field("", description="Version logged with its traffic (empty: the arm name).")
    weight: float = Field(1.0, gt=0, description="Share of users routed to this arm, relative to the others.")
    temperature: float | None = Field(None, ge=0, le=5, description="Sampling temperature of this arm (empty: generation.temperature).")
    base_url: str = Field("", description="An OpenAI-compatible server (vLLM, TGI, ...) that serves this arm, e.g. "
                          "http://127.0.0.1:8001/v1 (empty: the [generation] backend).")
    served_model: str = Field("", description="With base_url: the model name on that server (empty: generation.served_model, "
                              "else the arm's model).")


class ServeConfig(Section):
    host: str = Field("127.0.0.1", description="Gateway address (loopback by default).")
    port: int = Field(8000, ge=0, le=65535, description="Gateway port; 0 picks a free one.")
    batch_size: int = Field(32, ge=1, description="Concurrent requests decoded together.")
    max_wait_ms: float = Field(20.0, ge=0, description="How long a request waits for others to batch with.")
    continuous_batching: bool = Field(
        True, description="Requests join an open batch as slots free up (backends that stream: `fast`); "
        "false: one `chat` call per micro-batch, as for the other backends.")
    arms: list[ArmConfig] = Field(
        default_factory=lambda: [ArmConfig(name="control")],
        description="A/B arms; users are split by a sticky hash of their id.",
    )


class WorldConfig(Section):
    users: int = Field(40, ge=1, description="Simulated users (personas from real chit-chat).")
    days: int = Field(2, ge=1, description="Simulated days of traffic.")
    max_turns: int = Field(6, ge=1, description="User turns per session at most.")
    concurrency: int = Field(32, ge=1, description="Sessions driven at once over HTTP.")
    headroom_prompts: int = Field(24, ge=1, description="Prompts in the headroom check.")
    headroom_k: int = Field(8, ge=2, description="Candidates per prompt in the headroom check.")
    annotators: int = Field(6, ge=1, description="Simulated annotators in the pool.")
    annotators_per_task: int = Field(2, ge=1, description="Simulated annotators labelling each task.")
    own_process: bool = Field(
        True,
        description="Each flywheel window (its gateway, arms and simulated users) runs in a fresh process of its "
        "own, so its peak memory goes back to the OS when it ends instead of landing on what the run process kept "
        "from earlier stages (docs/benchmarks.md); it costs a few seconds of start-up a window.")


class EnvironmentConfig(Section):
    kind: Literal["simulated", "production"] = Field(
        "simulated", description="Where `run` gets annotations and traffic: simulated (the demo's world) or production "
        "(the team's annotators fill exported tasks and its users' A/B windows are logged into the people folder; "
        "`run` exits with code 3 while it waits for them, and re-running the same command resumes). `demo` is "
        "always simulated.")
    people_dir: str = Field(
        "", description="production: the folder where the flywheel leaves work for people and picks up what they "
        "return, gen-<N>/<stage>/ for each generation (empty: <run directory>/people).")
    generation0_window: Literal["data_traffic", "serve"] = Field(
        "data_traffic", description="production: generation 0's window. data_traffic: the team's logged traffic "
        "(data.traffic), when set, stands for it (it serves the base model alone, the model the team serves "
        "today); serve: wait for a window served like any other.")
    annotators: Literal["people", "llm_judge", "both"] = Field(
        "people", description="production: who fills annotation tasks. people: the team's annotators, through the "
        "people folder; llm_judge: the LLM judge of [llm_judge] labels them at once, nothing waits; both: the "
        "judge labels them at once (llm_judge.annotations.jsonl beside the tasks), the run still waits for "
        "people, and then takes both their labels and reports the judge's agreement with people in "
        "annotations.report.json.")


class LLMJudgeConfig(Section):
    base_url: str = Field(
        "", description="environment.annotators = llm_judge or both: the judge's OpenAI-compatible server URL, "
        "e.g. http://127.0.0.1:8000/v1.")
    model: str = Field("", description="The judge's model name on that server.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the judge server's API key (unset: none sent).")
    rubric: str = Field(
        DEFAULT_RUBRIC, min_length=1, description="What makes a character reply good: the judge's system prompt, "
        "with the conversation (the character's system prompt included) and the reply or replies.")
    max_tokens: int = Field(
        256, ge=8, le=4096, description="Tokens the judge answers with at most (a sentence or two of reasons and "
        "the verdict line).")
    concurrency: int = Field(8, ge=1, le=256, description="Judge requests in flight at once.")


class ABConfig(Section):
    control_arm: str = Field("control", description="The arm challengers are compared with.")
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples over users for the CIs.")


class FlywheelConfig(Section):
    generations: int = Field(2, ge=0, description="Generations after generation 0 that `run` and `demo` go through.")
    pool_size: int = Field(2, ge=1, description="Models rejection sampling may choose from per prompt: the champion and the latest earlier ones.")
    reference: str = Field("", description="Fixed reference model for win rates (empty: the generation-0 model).")
    data_source: Literal["deployed", "generation0"] = Field(
        "deployed", description="Traffic each generation curates: deployed (the last window, near-policy) or generation0 (the base model's traffic every time, off-policy; for experiments).")
    rl_reward: Literal["judge", "user_signal_thumbs"] = Field(
        "judge", description="Online RL reward: judge (pointwise + pairwise reward models). user_signal_thumbs is for the reward-hacking experiment only.")
    promote_rule: Literal["point", "ci", "guardrail"] = Field(
        "point", description="A/B promotion: point (breadth and depth not down, one up), ci (a lift's CI above zero) or guardrail (the offline gates decide; the A/B only blocks a significant drop or a breached guardrail, for windows too small to see a child's gain).")
    holdout_weight: float = Field(
        0.0, ge=0, description="Users kept on the generation-0 model in every window, relative to the champion's 1.0: the long-term holdout that lifts over generation 0 are read against (0 = none).")
    final_promote_rule: Literal["point", "ci", "guardrail"] | None = Field(
        None, description="A/B promotion in the run's last window, which no later generation corrects (empty: promote_rule). point there kept a worse child out in one five-generation run and a better one in another (docs/climb.md, sixteenth round).")
    final_window_scale: float = Field(
        1.0, ge=1.0, description="Traffic in the run's last window relative to the others, so that the lift the generations added up resolves against the generation-0 holdout: the simulation serves that many times world.users (the extra users are newcomers); a team serving real users runs that window that many times as long.")


class TrackingConfig(Section):
    mlflow: bool = Field(True, description="Log every stage's params and metrics to MLflow (local store in the run directory).")
    experiment: str = Field("characterflywheel", description="MLflow experiment name.")
    registry_copies_models: bool = Field(
        True, description="The model registry stores a copy of each registered model (MLflow artifacts). false: it "
        "points at the run directory's model folder instead (saves a model's size of disk per generation; the "
        "version breaks if that folder is deleted).")


class Config(Section):
    name: str = Field("demo", min_length=1, description="Run name: artifacts go to <runs_dir>/<name>/.")
    runs_dir: str = Field("runs", description="Folder holding run directories.")
    seed: int = Field(0, description="Seed for every random choice in the run.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    characters: CharactersConfig = Field(default_factory=CharactersConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    world: WorldConfig = Field(default_factory=WorldConfig)
    environment: EnvironmentConfig = Field(default_factory=EnvironmentConfig)
    llm_judge: LLMJudgeConfig = Field(default_factory=LLMJudgeConfig)
    ab: ABConfig = Field(default_factory=ABConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    flywheel: FlywheelConfig = Field(default_factory=FlywheelConfig)
    curate: curate_settings.CurateConfig = Field(default_factory=curate_settings.CurateConfig)
    reward: reward_settings.RewardConfig = Field(default_factory=reward_settings.RewardConfig)
    sample: sample_settings.SampleConfig = Field(default_factory=sample_settings.SampleConfig)
    train: train_settings.TrainConfig = Field(default_factory=train_settings.TrainConfig)
    evaluate: evaluate_settings.EvaluateConfig = Field(default_factory=evaluate_settings.EvaluateConfig)

    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def section_hash(self, *sections: str) -> str:
        """Content hash of the named sections (all of them when none), for stage manifests."""
        data = self.model_dump(mode="json")
        chosen = {key: data[key] for key in sections} if sections else data
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds per stage: what the test suite runs.
    "tiny": {
        "name": "tiny",
        "generation": {"max_new_tokens": 16, "batch_size": 8},
        "data": {"seed_conversations": 40},
        "demo": {"prompts": 2},
        "serve": {"port": 0, "batch_size": 8, "arms": [{"name": "control"}, {"name": "cool", "temperature": 0.3}]},
        # In the run process: the suite serves dozens of windows, each fresh process would start for seconds.
        "world": {"users": 8, "days": 2, "max_turns": 3, "concurrency": 8, "headroom_prompts": 4, "headroom_k": 2,
                  "own_process": False},
        "ab": {"bootstrap": 200},
        "tracking": {"mlflow": False},
    },
    # Minutes on a 2-core laptop.
    "demo": {
        "name": "demo",
        # 64 tokens (~48 words): at 40, 70 % of replies were cut off mid-sentence, the finished ones were the
        # short ones, and a policy trained on them turned terse (true P(continue) -0.067, 64 prompts x 4).
        # 64 slots: 14 % more tokens/s than 32 on the curated prompts and 15-20 % on the evaluation prompts.
        "generation": {"max_new_tokens": 64, "batch_size": 64},
        "data": {"seed_conversations": 500},
        "demo": {"prompts": 4},
        "serve": {"port": 0, "arms": [{"name": "control"}, {"name": "cool", "temperature": 0.3}]},
        # 96 users: a 48-user window logged ~110 turns, too few for the user-signal model to learn which
        # habits keep users talking (asking back came out negative on one window, positive on two).
        # 24 sessions at a time: the window is CPU-bound, so 48 took as long (121 s) and held 1.2 GB more
        # (peak 6.6 GB against 5.4; docs/benchmarks.md).
        "world": {"users": 96, "days": 2, "max_turns": 5, "concurrency": 24},
        # ~48 users an arm cannot see one generation's gain (a depth MDE of ~44 %): a child that passed its
        # offline gates is promoted unless the A/B finds harm.
        "flywheel": {"promote_rule": "guardrail"},
        "tracking": {"registry_copies_models": False},
    },
}


_STAGE_SETTINGS = {"curate": curate_settings, "reward": reward_settings, "sample": sample_settings,
                   "train": train_settings, "evaluate": evaluate_settings}


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


for _preset in PRESETS:
    for _section, _module in _STAGE_SETTINGS.items():
        PRESETS[_preset][_section] = _deep_merge(PRESETS[_preset].get(_section, {}), _module.PRESETS.get(_preset, {}))


def parse_override(text: str) -> dict[str, Any]:
    """``generation.temperature=0.5`` -> ``{"generation": {"temperature": 0.5}}``.

    The value is read as a TOML literal (numbers, booleans, quoted strings, arrays); anything that
    is not valid TOML is taken as a bare string, so ``--set name=my-run`` works without quotes.
    """
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. generation.temperature=0.5")
    dotted, raw = text.split("=", 1)
    keys = [part.strip() for part in dotted.split(".")]
    if not all(keys):
        raise ConfigError(f"--set {text}: empty key in '{dotted}'")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    nested: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        nested = {key: nested}
    return nested


def _first_error_line(source: str, error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "<root>"
    if first["type"] == "extra_forbidden":
        return f"{source}: {key}: unknown key"
    got = first.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    more = f" [+{error.error_count() - 1} more]" if error.error_count() > 1 else ""
    return f"{source}: {key}: {first['msg']}{shown}{more}"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


def load_config(
    path: Path | str | None = None, preset: str | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Defaults <- preset <- TOML file <- ``--set`` overrides, validated as one."""
    data: dict[str, Any] = {}
    source = "defaults"
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"preset '{preset}': unknown, choose one of {', '.join(PRESETS)}")
        data = _deep_merge(data, PRESETS[preset])
        source = f"preset {preset}"
    if path is not None:
        data = _deep_merge(data, _read_toml(Path(path)))
        source = str(path)
    if overrides:
        for override in overrides:
            data = _deep_merge(data, parse_override(override))
        source = f"{source} + --set"
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_first_error_line(source, error)) from None


def _comment_lines(text: str) -> list[str]:
    return [f"# {line}" for line in text.splitlines()]


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _dotted_lines(prefix: str, value: Any) -> list[str]:
    """A (nested) table as dotted keys, so it stays inside its section's header."""
    if isinstance(value, dict) and value:
        return [line for key, inner in value.items() for line in _dotted_lines(f"{prefix}.{_toml_key(str(key))}", inner)]
    if isinstance(value, dict):
        return [f"{prefix} = {{}}"]
    return [f"{prefix} = " + tomli_w.dumps({"v": value}).strip()[len("v = "):]]


def _render_section(model: BaseModel, header: str | None) -> list[str]:
    lines: list[str] = [] if header is None else ["", f"[{header}]"]
    data = model.model_dump(mode="json", exclude_none=True)
    tables: list[str] = []
    for name, field in type(model).model_fields.items():
        if isinstance(getattr(model, name), BaseModel):
            continue
        comment = _comment_lines(field.description) if field.description else []
        value = data.get(name)
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            # arrays of tables must follow the section's plain keys
            key = f"{header}.{name}" if header else name
            tables += ["", *comment]
            for item in value:
                tables += [f"[[{key}]]", tomli_w.dumps(item).strip()]
        elif isinstance(value, dict):
            lines += [*comment, *_dotted_lines(name, value)]
        elif value is not None:
            lines += [*comment, tomli_w.dumps({name: value}).strip()]
    return lines + tables


def render_commented(config: Config) -> str:
    """The config as TOML with each key preceded by its description."""
    lines = [
        "# characterflywheel configuration. Every key can be overridden on the command line:",
        "#   characterflywheel <command> --config flywheel.toml --set generation.temperature=0.5",
    ]
    lines += _render_section(config, None)
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            lines += _render_section(value, name)
    return "\n".join(lines) + "\n"
