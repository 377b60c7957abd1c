"""The registry and its entry points: a third-party package adds a provider and an export format.

The demo plugin (tests/plugins/gem_plugin_demo) is installed offline into a temporary folder, and
`gem` runs in a subprocess whose PYTHONPATH holds it, so importlib.metadata finds its dist-info and
its `gem_agents.plugins` entry point, exactly as for a package installed with pip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gem_agents import registry
from gem_agents.config import ConfigError, RoleConfig, parse_config
from gem_agents.registry import Provider, RegistryError

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "tests" / "plugins" / "gem_plugin_demo"
SAMPLE = REPO / "gem_agents" / "samples" / "share_a_printer.md"
GEM = [sys.executable, "-c", "from gem_agents.cli import main; main()"]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo plugin installed (offline, no dependencies) into a folder of its own."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    shutil.copytree(PLUGIN, src)  # a build writes egg-info beside its sources: not in the repository
    target = root / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "--target", str(target), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(target.glob("gem_plugin_demo-*.dist-info/entry_points.txt"))
    return target


def gem(args: list[str], plugin: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `gem` with the plugin importable (and no network or key needed)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(REPO)])}
    return subprocess.run([*GEM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def config(path: Path, **roles: dict) -> Path:
    """An offline config whose named roles are overridden."""
    data = {"rollouts": 1, "refine_rounds": 0, "roles": {r: {"provider": "scripted"} for r in
                                                         ("filter", "extract", "task", "user", "assistant",
                                                          "tool_env", "refine")}}
    data["roles"].update(roles)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_plugin_provider_plays_the_filter_role(plugin_path: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path / "c.yaml", filter={"provider": "demo_fixed", "model": "fixed",
                                               "structured_output": "json_schema", "text": "from the plugin"})
    out = tmp_path / "rel.jsonl"
    proc = gem(["filter", str(SAMPLE), "--config", str(cfg), "--out", str(out)], plugin_path, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows and all(r["decided_by"] == "model" for r in rows), rows
    assert rows[0]["summary"] == "from the plugin" and rows[0]["multi_step"] is True


def test_plugin_settings_are_validated_by_the_plugin(plugin_path: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path / "c.yaml", filter={"provider": "demo_fixed", "model": "fixed", "n_ctx": 4096})
    proc = gem(["filter", str(SAMPLE), "--config", str(cfg), "--out", str(tmp_path / "o.jsonl")], plugin_path,
               tmp_path)
    assert proc.returncode == 2
    assert "roles.filter.n_ctx: unknown key for provider 'demo_fixed'" in proc.stdout + proc.stderr


def test_run_then_export_in_the_plugin_format(plugin_path: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path / "c.yaml", filter={"provider": "demo_fixed", "model": "fixed",
                                               "structured_output": "json_schema"})
    run = tmp_path / "run"
    proc = gem(["run", str(cfg), "--input", str(SAMPLE), "--out", str(run), "--no-report", "-q"], plugin_path,
               tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "demo.jsonl"
    proc = gem(["export", str(run), "--format", "demo_lines", "--out", str(out), "--include-offline"], plugin_path,
               tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows and all(r["kind"] in ("original", "refined") and r["messages"] > 2 for r in rows)
    # Without the plugin on the path the format is unknown, and the message lists the built-in ones.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bare = subprocess.run([*GEM, "export", str(run), "--format", "demo_lines", "--out", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert bare.returncode == 2 and "openai" in bare.stdout + bare.stderr


def test_two_registrations_of_one_name_fail_naming_both() -> None:
    spec = Provider(name="twice_demo", factory=None)
    registry.register("provider", "twice_demo", spec)
    try:
        registry.register("provider", "twice_demo", spec)  # the same object again is harmless
        with pytest.raises(RegistryError, match=r"provider 'twice_demo' is registered twice: by .*test_plugins"):
            registry.register("provider", "twice_demo", Provider(name="twice_demo", factory=None))
        with pytest.raises(RegistryError, match="registered twice"):
            @registry.register("export_format", "openai")
            def export(run_dir: Path, out: Path, *, include_offline: bool = False) -> dict:
                return {}
    finally:
        registry.unregister("provider", "twice_demo")
    assert "twice_demo" not in registry.names("provider")


def test_unknown_names_list_the_registered_ones() -> None:
    with pytest.raises(RegistryError, match=r"unknown provider 'nope'; available: local, openai, scripted, vllm"):
        registry.get("provider", "nope")
    with pytest.raises(RegistryError, match=r"unknown export format 'nope'; available: .*openai, sharegpt"):
        registry.get("export_format", "nope")
    with pytest.raises(RegistryError, match="unknown extension kind"):
        registry.names("nope")
    with pytest.raises(ConfigError, match=r"roles.user: unknown provider 'nope'; available: local, openai, scripted"):
        parse_config({"roles": {"user": {"provider": "nope"}}})


def test_every_kind_has_its_builtins_registered() -> None:
    assert {"chain_goals", "multi_goal"} <= set(registry.names("refine_operator"))
    assert {"scripted", "chat"} <= set(registry.names("role"))
    assert registry.provider("openai").capabilities >= {"tools", "json_schema"}
    assert registry.provider("scripted").factory is None


def test_registering_a_provider_adds_its_settings_to_the_config() -> None:
    from pydantic import BaseModel, ConfigDict

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        depth: int = 3

    registry.register("provider", "inline_demo", Provider(name="inline_demo", factory=None, settings=Settings))
    try:
        assert RoleConfig(provider="inline_demo").depth == 3
        assert RoleConfig(provider="inline_demo", depth=5).setting("depth") == 5
        with pytest.raises(ConfigError, match=r"roles.user.depth: Input should be a valid integer"):
            parse_config({"roles": {"user": {"provider": "inline_demo", "depth": "deep"}}})
    finally:
        registry.unregister("provider", "inline_demo")


def test_registering_the_providers_imports_no_sdk() -> None:
    # Config validation looks every provider up; that must not cost an SDK import (seconds each).
    code = ("import sys; from gem_agents import registry; from gem_agents.config import parse_config; "
            "parse_config({'roles': {'user': {'provider': 'openai', 'model': 'm', 'http_client': 'direct'}}}); "
            "print(registry.names('provider')); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'langchain_openai', 'openai', 'aiohttp', "
            "'vllm', 'llama_cpp', 'llama_cpp_py_sync', 'torch'}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    names, heavy = proc.stdout.strip().splitlines()
    assert "openai" in names and heavy == "[]", proc.stdout


def test_every_builtin_module_imports_first_in_a_fresh_interpreter() -> None:
    """Registering a built-in loads its kind's other built-ins, so any of them imported first must not meet a
    half-initialised sibling (`import gem_agents.stages.extract` once failed through stages/grouping.py)."""
    script = (
        "import importlib, sys\n"
        "from gem_agents.registry import BUILTIN_MODULES\n"
        "mods = sorted({m for ms in BUILTIN_MODULES.values() for m in ms})\n"
        "bad = []\n"
        "for m in mods:\n"
        "    for k in [k for k in sys.modules if k.split('.')[0] in ('gem_agents', 'graphs', 'tools_runtime')]:\n"
        "        del sys.modules[k]\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{m}: {exc!r}')\n"
        "print(len(mods)); print('\\n'.join(bad))\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stderr
    count, *bad = res.stdout.strip().splitlines()
    assert int(count) >= 10 and bad == [], bad
