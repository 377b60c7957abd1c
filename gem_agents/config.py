"""Run configuration: YAML validated by pydantic; unknown keys are rejected with their path.

One block per role (`filter`, `extract`, `task`, `user`, `assistant`, `tool_env`, `refine`, the optional `judge`, and the
one-shot `synthesizer`) picks a provider and a model; the rest sets rollouts, refinement, limits
and concurrency. The defaults here are the offline mode; `configs/*.yaml` are the shipped presets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gem_agents.io import (
    MAX_CONFIG_BYTES,
    InputError,
    load_yaml,
    looks_like_credential,
    read_text,
    register_secret_env,
)

ROLE_NAMES = ("filter", "extract", "task", "user", "assistant", "tool_env", "refine", "synthesizer", "judge")
REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoleConfig(_Strict):
    """Which provider and model plays one role, and how to talk to it."""

    provider: Literal["scripted", "openai", "vllm", "local"] = "scripted"
    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="name of the environment variable with the key")
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=1024, gt=0)
    concurrency: int = Field(default=8, gt=0)
    timeout_s: float = Field(default=60, gt=0)
    max_retries: int = Field(default=3, ge=0)
    rate_limit_rps: float | None = Field(default=None, gt=0)
    structured_output: Literal["auto", "json_schema", "tagged"] = "auto"
    draft: Literal["none", "offline"] = Field(default="none", description="extract/task: 'offline' = the model "
                                              "revises the rule-based draft (stages/draft_revise.py; small models)")
    extra_body: dict[str, Any] = Field(default_factory=dict)
    http_client: Literal["langchain", "direct"] = Field(
        default="langchain", description="openai: 'direct' posts to /chat/completions over one pooled client per "
                                         "endpoint (no SDK transform, no LangChain round trip: less CPU per call)")
    # local (llama.cpp) and vllm (in-process) providers
    model_path: str | None = None
    model_package: str | None = None
    n_ctx: int = Field(default=4096, gt=0)
    n_threads: int | None = None
    chat_format: str | None = None
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra arguments for "
                                          "llama_cpp.Llama (local) or vllm.LLM (vllm)")
    batch_window_ms: float = Field(default=5, ge=0, description="vllm: how long a request waits for others "
                                                                 "to share its batch")

    @model_validator(mode="after")
    def _needs_endpoint(self) -> RoleConfig:
        if self.api_key_env is not None and (not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env)
                                             or looks_like_credential(self.api_key_env)):
            # Never echo the value: a key pasted here by mistake must not reach logs.
            raise ValueError("api_key_env must be the NAME of an environment variable (letters, digits, _), "
                             "never the key itself; this value looks like a key or token (not shown)")
        if self.provider in ("local", "vllm") and self.base_url:
            raise ValueError(f"base_url is for provider 'openai'; provider '{self.provider}' runs in-process "
                             "(a `vllm serve` or llama.cpp server is provider 'openai' with base_url)")
        if self.provider in ("openai", "vllm") and not self.model:
            raise ValueError(f"provider '{self.provider}' needs a 'model'")
        if self.provider == "local" and not (self.model_path or self.model_package):
            raise ValueError("provider 'local' needs 'model_path' (a GGUF file) or 'model_package'")
        return self


class RolesConfig(_Strict):
    """The eight roles."""

    filter: RoleConfig = Field(default_factory=RoleConfig)
    extract: RoleConfig = Field(default_factory=RoleConfig)
    task: RoleConfig = Field(default_factory=RoleConfig)
    user: RoleConfig = Field(default_factory=RoleConfig)
    assistant: RoleConfig = Field(default_factory=RoleConfig)
    tool_env: RoleConfig = Field(default_factory=RoleConfig)
    refine: RoleConfig = Field(default_factory=RoleConfig)
    synthesizer: RoleConfig = Field(default_factory=RoleConfig)
    # Optional: scores dialogues with a rubric and decides nl_assertions and unresolved blame
    # (stages/judge.py). Scripted = no judge.
    judge: RoleConfig = Field(default_factory=RoleConfig)


class InputConfig(_Strict):
    """How documents are read."""

    id_field: str = "id"
    text_field: str = "text"
    max_chars: int = Field(default=200_000, gt=0)
    segment_chars: int = Field(default=6000, gt=200)


class Limits(_Strict):
    """Bounds on each document's work."""

    max_user_turns: int = Field(default=24, gt=0)
    max_tool_rounds: int = Field(default=16, gt=0)
    repair_rounds: int = Field(default=2, ge=0)
    reask_rounds: int = Field(default=1, ge=0)
    max_segments: int = Field(default=4, gt=0)
    max_tools: int = Field(default=64, gt=0)
    doc_timeout_s: float | None = Field(default=None, gt=0, description="a document still running after this "
                                                                         "many seconds ends as failed")


class Concurrency(_Strict):
    """How much runs at once."""

    documents: int = Field(default=4, gt=0)
    rollouts: int = Field(default=8, gt=0)


class RunConfig(_Strict):
    """A whole run."""

    pipeline: Literal["full", "synthesizer"] = "full"
    seed: int = 0
    rollouts: int = Field(default=2, ge=1)
    tasks_per_env: int = Field(default=3, ge=1, description="tasks the `task` role writes per environment; "
                                                           "each valid task is simulated `rollouts` times")
    refine_rounds: int = Field(default=1, ge=0)
    refine_ops: list[str] = Field(default_factory=lambda: ["chain_goals", "add_tools", "withhold_info",
                                                           "plan_errors", "change_mind", "state_dependency"])
    prefilter: bool = True
    cache: bool = True
    roles: RolesConfig = Field(default_factory=RolesConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    limits: Limits = Field(default_factory=Limits)
    concurrency: Concurrency = Field(default_factory=Concurrency)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key path."""


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_config(data: Any, source: str = "config") -> RunConfig:
    """Validate a config mapping; errors name `source` and each offending key path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{source}: {_loc(err['loc'])}: {what}")
        raise ConfigError("\n".join(lines)) from None
    except (RecursionError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{source}: unusable value ({type(exc).__name__})") from None
    # From here on, the values of the key variables this config names are redacted from every output.
    register_secret_env(getattr(cfg.roles, r).api_key_env for r in ROLE_NAMES)
    return cfg


def load_config(path: str | Path | None) -> RunConfig:
    """Read and validate a YAML config (None → the built-in offline defaults)."""
    if path is None:
        return RunConfig()
    p = Path(path)
    if not p.exists() and not p.is_absolute() and (REPO_CONFIGS / p.name).exists():
        p = REPO_CONFIGS / p.name
    if not p.exists() and not p.is_symlink():
        raise ConfigError(f"{p}: no such config file")
    try:
        text = read_text(p, "config", max_bytes=MAX_CONFIG_BYTES)
        data = load_yaml(text, str(p))  # safe types only; alias expansion and size bounded
    except InputError as exc:
        raise ConfigError(str(exc)) from None
    return parse_config(data, str(p))
