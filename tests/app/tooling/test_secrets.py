"""Secret references for tools and ${VAR} interpolation for MCP servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.tooling.secrets import EnvFileSecrets, interpolate
from tools.spec import ToolContext, ToolError


def test_secrets_env_and_file_refs_resolve_per_tenant(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TOKEN_acme", "tok-acme")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "globex.txt").write_text("tok-globex\n")
    secrets = EnvFileSecrets(tmp_path)
    acme = ToolContext(idempotency_key="k", tenant="acme", secrets=secrets)
    globex = ToolContext(idempotency_key="k", tenant="globex", secrets=secrets)
    assert acme.secret("env:CRM_TOKEN_{tenant}") == "tok-acme"
    assert globex.secret("file:keys/{tenant}.txt") == "tok-globex"


def test_secrets_errors_name_the_reference_never_a_value(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TOKEN_acme", "tok-acme")
    secrets = EnvFileSecrets(tmp_path)
    with pytest.raises(ToolError, match="env:CRM_TOKEN_globex is not set") as e:
        secrets.resolve("env:CRM_TOKEN_{tenant}", tenant="globex")
    assert "tok-acme" not in str(e.value)
    with pytest.raises(ToolError, match="cannot be read"):
        secrets.resolve("file:nope.txt", tenant="acme")
    with pytest.raises(ToolError, match="unknown secret reference kind"):
        secrets.resolve("vault:x", tenant="acme")
    with pytest.raises(ToolError, match="no secrets are configured"):
        ToolContext(idempotency_key="k").secret("env:X")


def test_secrets_interpolate_env_vars_or_name_the_missing_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETS_TOKEN", "abc")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    assert interpolate("Bearer ${TICKETS_TOKEN}") == "Bearer abc"
    with pytest.raises(ValueError, match="NOT_SET_ANYWHERE is not set"):
        interpolate("${NOT_SET_ANYWHERE}")
