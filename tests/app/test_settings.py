"""Configuration: typed, validated at start, env overrides, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config.settings import load_settings
from app.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, mutate: object) -> Path:
    data = yaml.safe_load((ROOT / "foreman.yaml").read_text())
    mutate(data)  # type: ignore[operator]
    path = tmp_path / "foreman.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_settings_bundled_config_loads_both_teams() -> None:
    s = load_settings(ROOT / "foreman.yaml")
    assert set(s.teams) == {"support", "incident"}
    assert [a.name for a in s.teams["support"].agents] == [
        "researcher", "billing", "communications", "ticketing"]
    assert [a.name for a in s.teams["incident"].agents] == [
        "monitor", "triage", "remediation", "communications"]


def test_settings_env_overrides_nested_scalars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOREMAN_SERVER__PORT", "8123")
    monkeypatch.setenv("FOREMAN_DATA_DIR", "/tmp/elsewhere")
    monkeypatch.setenv("FOREMAN_OFFLINE", "1")
    s = load_settings(ROOT / "foreman.yaml")
    assert s.server.port == 8123
    assert s.data_dir == Path("/tmp/elsewhere")
    assert s.offline is True


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["teams"]["support"]["agents"][0]["tools"].append("drop_tables"),
     "teams.support.agents.0.tools: unknown tool 'drop_tables'"),
    (lambda d: d["routing"]["roles"].update({"manager.plan": "gpt-9"}),
     "routing.roles.manager.plan: unknown model 'gpt-9'"),
    (lambda d: d["server"].update({"port": "eighty"}), "server.port"),
    (lambda d: d["teams"]["incident"]["agents"][0].update({"prompt": "../../etc/passwd"}),
     "teams.incident.agents.0.prompt"),
    (lambda d: d["models"][0].pop("input_cost_per_mtok"), "models.0"),
    (lambda d: d.update({"colour": "blue"}), "colour"),
    (lambda d: d["policy"]["rules"][0].update({"when": "args.amount_usd >"}),
     "policy.rules.0 (refunds-over-1000-denied): condition does not compile"),
    (lambda d: d["policy"]["rules"][1].update({"tools": ["refund_everything"]}),
     "policy.rules.1 (refunds-over-500).tools: unknown tool 'refund_everything'"),
])
def test_settings_bad_config_names_file_key_and_reason(tmp_path: Path, mutate: object,
                                                        expected: str) -> None:
    path = write_config(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_settings_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_settings_project_paths_resolve_against_the_config_folder(tmp_path: Path,
                                                                  monkeypatch: Any) -> None:
    from app.project.init import init_project
    from app.runs.teams import read_prompt

    init_project(tmp_path / "desk", "blank")
    monkeypatch.chdir(tmp_path)  # somewhere else than the project
    monkeypatch.delenv("FOREMAN_DATA_DIR", raising=False)
    monkeypatch.delenv("FOREMAN_OFFLINE", raising=False)
    s = load_settings(Path("desk") / "foreman.yaml")
    assert s.data_dir.resolve() == (tmp_path / "desk" / ".foreman").resolve()
    assert s.offline is False and s.offline_world.playbooks == ["playbooks/"]
    assert s.project_path("playbooks/").resolve() == (tmp_path / "desk" / "playbooks").resolve()
    assert read_prompt(s, "prompts/agent.md").startswith("You are the help desk agent")
    assert read_prompt(s, "agents/support/billing.md")  # bundled prompts stay available
