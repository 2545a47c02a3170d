"""Loading Python tool packs: ``demo``, entry points (group ``foreman.tools``), module paths."""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import ConfigError
from tools.catalog import BUILTIN_TOOLS
from tools.pack import PackEnv, ToolPack, pack_from
from tools.registry import DuplicateTool, ToolRegistry

if TYPE_CHECKING:
    from app.config.settings_schema import Settings

ENTRY_POINT_GROUP = "foreman.tools"


def load_pack(name: str, project_dir: Path) -> ToolPack:
    """The pack called ``name``; ``ValueError`` naming what went wrong."""
    if name == "demo":
        from tools.demo import PACK

        return PACK
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                return pack_from(name, ep.load())
            except Exception as e:  # a broken third-party pack is a config problem
                raise ValueError(f"entry point {ep.value} failed to load ({e})") from e
    module_name, _, attr = name.partition(":")
    folder = str(project_dir)
    if folder not in sys.path:  # a project's own modules import by name
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"no entry point {name!r} in group {ENTRY_POINT_GROUP} and no module "
                         f"{module_name!r} ({e})") from e
    target = getattr(module, attr, None) if attr else module
    if target is None:
        raise ValueError(f"module {module_name} has no attribute {attr!r}")
    return pack_from(name, target)


def static_registry(settings: Settings, *, prepare: bool = True) -> ToolRegistry:
    """Bundled tools and packs (no MCP). ``prepare`` runs each pack's setup."""
    reg = ToolRegistry()
    reg.add_all(BUILTIN_TOOLS, "builtin")
    for i, pc in enumerate(settings.tools.pack_configs()):
        where = f"{settings.source}: tools.packs.{i}"
        try:
            pack = load_pack(pc.name, settings.project_dir)
        except ValueError as e:
            raise ConfigError(f"{where}: cannot load pack {pc.name!r}: {e}") from e
        source = f"pack:{pc.name}"
        try:
            env = PackEnv(pc.settings, settings.data_dir, settings.project_dir,
                          settings.database_url)
            reg.add_all(pack.tools, source, pack.prepare(env) if prepare else pc.settings)
        except DuplicateTool as e:
            raise ConfigError(f"{where}: {e}") from e
        except (OSError, ValueError) as e:
            raise ConfigError(f"{where}: pack {pc.name!r} setup failed: {e}") from e
    return reg
