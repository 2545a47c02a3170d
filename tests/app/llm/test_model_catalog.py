"""The model catalog: prices from litellm's map or config, unknown prices refused, lazy import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from app.cli.main import app
from app.config.settings import ModelEntry, load_settings
from app.errors import ConfigError
from app.llm.catalog import Catalog
from tests.conftest import ROOT


def _config_with(tmp_path: Path, model: dict[str, object]) -> Path:
    data = yaml.safe_load((ROOT / "foreman.yaml").read_text())
    data["models"].append(model)
    path = tmp_path / "foreman.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_catalog_unknown_price_is_a_config_error_naming_the_model(tmp_path: Path) -> None:
    path = _config_with(
        tmp_path, {"name": "mystery", "litellm_model": "acme/mystery-9000", "tier": "small"}
    )

    with pytest.raises(ConfigError, match=r"mystery.*acme/mystery-9000"):
        load_settings(path)
    result = CliRunner().invoke(app, ["run", "--config", str(path), "hello"])
    assert result.exit_code == 2
    assert "no price known for model 'mystery'" in result.output


def test_catalog_local_model_with_explicit_zero_price_loads(tmp_path: Path) -> None:
    path = _config_with(
        tmp_path,
        {
            "name": "local",
            "litellm_model": "hosted_vllm/my-llama",
            "api_base": "http://localhost:8001/v1",
            "tier": "small",
            "input_cost_per_mtok": 0,
            "output_cost_per_mtok": 0,
            "context_window": 8192,
        },
    )

    model = Catalog(load_settings(path).models).get("local")

    assert model.cost(1000, 1000) == 0.0
    assert model.context_window == 8192


def test_catalog_prices_come_from_litellm_map_unless_overridden() -> None:
    mapped = ModelEntry(name="mini", litellm_model="openai/gpt-4o-mini")
    priced = ModelEntry(
        name="cheap",
        litellm_model="openai/gpt-4o-mini",
        input_cost_per_mtok=1.0,
        output_cost_per_mtok=2.0,
    )

    catalog = Catalog([mapped, priced])

    mini = catalog.get("mini")
    assert (mini.input_per_token, mini.output_per_token) == (1.5e-7, 6e-7)
    assert mini.context_window == 128_000 and mini.tools
    assert catalog.get("cheap").cost(1_000_000, 1_000_000) == pytest.approx(3.0)
    assert mini.worst_case(1000, 500) == pytest.approx(1000 * 1.5e-7 + 500 * 6e-7)


def test_catalog_loading_config_and_help_never_import_litellm() -> None:
    code = (
        "import sys; from app.config.settings import load_settings; import app.cli.main; "
        "load_settings('foreman.yaml'); "
        "assert 'litellm' not in sys.modules, 'litellm imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
