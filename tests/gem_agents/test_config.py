"""Run configs: the shipped presets load, and bad configs fail with the file, line or key path."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.cli.cmd_demo import SAMPLES
from gem_agents.config import ConfigError, RunConfig, load_config

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.mark.parametrize("name", ["default", "offline", "openai", "vllm"])
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.pipeline == "full"


def test_offline_preset_has_no_model_and_default_is_the_embedded_model():
    cfg = load_config(REPO / "configs" / "offline.yaml")
    assert all(getattr(cfg.roles, r).provider == "scripted" for r in type(cfg.roles).model_fields)
    default = load_config(REPO / "configs" / "default.yaml")
    played = {r for r in type(default.roles).model_fields if getattr(default.roles, r).provider == "local"}
    # the roles on the model are chosen by measurement (configs/default.yaml, docs/providers.md)
    assert {"filter", "extract", "task", "user"} <= played
    assert default.roles.extract.draft == default.roles.task.draft == "offline"  # draft and revise
    # every model role shares one model file (one engine), with grammar-constrained structured output
    assert len({getattr(default.roles, r).model_package for r in played}) == 1
    assert all(getattr(default.roles, r).structured_output == "json_schema" for r in played)


def test_vllm_preset_documents_the_server_flags():
    text = (REPO / "configs" / "vllm.yaml").read_text()
    assert "--enable-auto-tool-choice" in text and "--tool-call-parser hermes" in text
    cfg = load_config(REPO / "configs" / "vllm.yaml")
    assert cfg.roles.assistant.base_url.endswith("/v1")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_unknown_key_is_named_with_its_path(tmp_path):
    p = write(tmp_path, "roles:\n  user:\n    provider: openai\n    model: m\n    temprature: 0.2\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert f"{p}: roles.user.temprature: unknown key" in str(exc.value)


def test_bad_value_names_the_field(tmp_path):
    p = write(tmp_path, "rollouts: 0\nconcurrency: {documents: many}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert "rollouts:" in msg and "concurrency.documents:" in msg


def test_invalid_yaml_points_at_the_line(tmp_path):
    p = write(tmp_path, "rollouts: 2\nroles: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert f"{p}:3:" in str(exc.value) or f"{p}:2:" in str(exc.value)


def test_model_provider_needs_a_model(tmp_path):
    p = write(tmp_path, "roles:\n  assistant: {provider: openai}\n")
    with pytest.raises(ConfigError, match="roles.assistant: .*needs a 'model'"):
        load_config(p)


def test_doc_timeout_must_be_positive():
    with pytest.raises(ValueError):
        RunConfig.model_validate({"limits": {"doc_timeout_s": 0}})


def test_gem_run_exits_2_on_a_bad_config(tmp_path):
    p = write(tmp_path, "pipline: full\n")
    res = runner.invoke(app, ["run", str(p), "--input", str(SAMPLES), "--out", str(tmp_path / "r"), "-q"])
    assert res.exit_code == 2
    assert "pipline: unknown key" in " ".join(res.output.split())
    assert not (tmp_path / "r").exists()


def test_gem_run_refuses_to_resume_with_another_config(tmp_path):
    a = write(tmp_path, "rollouts: 1\nrefine_rounds: 0\n")
    out = tmp_path / "r"
    ok = runner.invoke(app, ["run", str(a), "--input", str(SAMPLES / "share_a_printer.md"), "--out", str(out),
                             "-q", "--no-report"])
    assert ok.exit_code == 0, ok.output
    b = tmp_path / "other.yaml"
    b.write_text("rollouts: 3\nrefine_rounds: 0\n")
    res = runner.invoke(app, ["run", str(b), "--input", str(SAMPLES / "share_a_printer.md"), "--out", str(out),
                              "-q"])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "different config" in text and "rollouts" in text


def test_gem_run_missing_input_is_a_clear_error(tmp_path):
    p = write(tmp_path, "rollouts: 1\n")
    res = runner.invoke(app, ["run", str(p), "--input", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "no such file" in " ".join(res.output.split())
