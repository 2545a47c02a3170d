"""Secret references for tools: ``env:NAME`` or ``file:PATH``, optionally per tenant.

``{tenant}`` in a reference is replaced by the calling tenant (``env:CRM_TOKEN_{tenant}``).
Values are returned to the tool only; errors name the reference, never a value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from tools.spec import ToolError

_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class EnvFileSecrets:
    """Resolves ``env:`` and ``file:`` references; relative files against the project."""

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir

    def resolve(self, ref: str, *, tenant: str) -> str:
        """The secret's value; ``ToolError`` when the reference cannot be resolved."""
        if not _TENANT.match(tenant):
            raise ToolError("invalid tenant for a secret lookup")
        kind, _, target = ref.partition(":")
        target = target.replace("{tenant}", tenant)
        if kind == "env":
            value = os.environ.get(target)
            if value is None:
                raise ToolError(f"secret env:{target} is not set")
            return value
        if kind == "file":
            path = Path(target).expanduser()
            path = path if path.is_absolute() else self.project_dir / path
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as e:
                raise ToolError(f"secret file:{target} cannot be read ({type(e).__name__})") from e
        raise ToolError(f"unknown secret reference kind {kind!r} (use env: or file:)")


def interpolate(text: str, own: Mapping[str, str] | None = None) -> str:
    """``${VAR}`` from ``own`` (Foreman's own values, e.g. ``FOREMAN_DATA_DIR``), else the
    environment; an unset variable is an error naming it."""
    def sub(m: re.Match[str]) -> str:
        value = (own or {}).get(m.group(1)) or os.environ.get(m.group(1))
        if value is None:
            raise ValueError(f"environment variable {m.group(1)} is not set")
        return value
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, text)
