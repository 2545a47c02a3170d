"""Python tool packs: a decorator that turns a typed function into a ``ToolSpec``.

A pack is a module (or an entry point in group ``foreman.tools``) holding a ``PACK``
(:class:`ToolPack`), a ``TOOLS`` sequence, or module-level tools made with :func:`tool`::

    @tool(side_effect="write", risk="medium")
    async def add_note(ctx: ToolContext, ticket_id: str, text: str) -> dict[str, Any]:
        "Add a note to a ticket."
        ...
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from pydantic import BaseModel, ConfigDict, create_model

from tools.spec import Reconciler, Risk, SideEffect, ToolContext, ToolSpec


@dataclass(frozen=True)
class PackEnv:
    """What a pack's ``setup`` sees: its settings from config, where the project lives and
    Foreman's own database (None in embedded mode on SQLite)."""

    settings: Mapping[str, Any]
    data_dir: Path
    project_dir: Path
    database_url: str | None = None


PackSetup = Callable[[PackEnv], Mapping[str, Any]]


@dataclass(frozen=True)
class ToolPack:
    """Tools shipped together. ``setup`` turns the pack's configured settings into the
    settings its tools receive in ``ToolContext.settings`` (defaults, files it prepares)."""

    name: str
    tools: tuple[ToolSpec, ...]
    setup: PackSetup | None = None
    description: str = ""

    def prepare(self, env: PackEnv) -> Mapping[str, Any]:
        """The settings handed to this pack's tools."""
        return dict(self.setup(env)) if self.setup else dict(env.settings)


def pack_from(name: str, obj: Any) -> ToolPack:
    """A ``ToolPack`` from a module, a pack object or a sequence of tools."""
    if isinstance(obj, ToolPack):
        return obj
    if isinstance(obj, ToolSpec):
        return ToolPack(name, (obj,))
    if isinstance(obj, Sequence) and all(isinstance(t, ToolSpec) for t in obj):
        return ToolPack(name, tuple(obj))
    for attr in ("PACK", "pack"):
        found = getattr(obj, attr, None)
        if isinstance(found, ToolPack):
            return found
    listed = getattr(obj, "TOOLS", None)
    if listed is not None:
        return pack_from(name, tuple(listed))
    specs = tuple(v for v in vars(obj).values() if isinstance(v, ToolSpec)) \
        if inspect.ismodule(obj) else ()
    if not specs:
        raise ValueError(f"{name} defines no tools (PACK, TOOLS, or functions made with @tool)")
    return ToolPack(name, specs)


@overload
def tool(func: Callable[..., Any], /) -> ToolSpec: ...


@overload
def tool(*, name: str | None = None, description: str | None = None,
         side_effect: SideEffect | str = SideEffect.READ, risk: Risk | str = Risk.LOW,
         reconcile: Reconciler | None = None, untrusted_output: bool = False,
         idempotent: bool | None = None) -> Callable[[Callable[..., Any]], ToolSpec]: ...


def tool(func: Callable[..., Any] | None = None, /, *, name: str | None = None,
         description: str | None = None, side_effect: SideEffect | str = SideEffect.READ,
         risk: Risk | str = Risk.LOW, reconcile: Reconciler | None = None,
         untrusted_output: bool = False,
         idempotent: bool | None = None) -> ToolSpec | Callable[[Callable[..., Any]], ToolSpec]:
    """Make a tool from a typed function (sync or async). Its parameters become the
    arguments (``Annotated[..., Field(...)]`` carries descriptions and limits); a first
    parameter typed ``ToolContext`` receives the call's context; the docstring is the
    description the model reads. A result that is not a mapping arrives as ``{"result": …}``.
    """
    def build(fn: Callable[..., Any]) -> ToolSpec:
        tool_name = name or fn.__name__
        doc = description or inspect.getdoc(fn) or ""
        if not doc:
            raise ValueError(f"tool {tool_name}: give a docstring or description= (models read it)")
        args_model, wants_ctx = _args_model(tool_name, fn)
        return ToolSpec(name=tool_name, description=doc, args_model=args_model,
                        side_effect=SideEffect(side_effect), risk=Risk(risk),
                        func=_caller(fn, wants_ctx), reconcile=reconcile,
                        untrusted_output=untrusted_output, source="pack",
                        idempotent=idempotent)

    return build(func) if func is not None else build


def _args_model(tool_name: str, fn: Callable[..., Any]) -> tuple[type[BaseModel], bool]:
    hints = typing.get_type_hints(fn, include_extras=True)
    params = list(inspect.signature(fn).parameters.values())
    wants_ctx = bool(params) and (hints.get(params[0].name) is ToolContext
                                  or params[0].name in {"ctx", "context"})
    fields: dict[str, Any] = {}
    for p in params[1:] if wants_ctx else params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ValueError(f"tool {tool_name}: *args/**kwargs cannot be described to a model")
        if p.name not in hints:
            raise ValueError(f"tool {tool_name}: parameter {p.name!r} needs a type annotation")
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints[p.name], default)
    safe = "".join(c if c.isalnum() else "_" for c in tool_name)
    model = create_model(f"{safe}_args", __config__=ConfigDict(extra="forbid"), **fields)
    return model, wants_ctx


def _kwargs(args: BaseModel) -> dict[str, Any]:
    return {k: getattr(args, k) for k in type(args).model_fields}


def _wrap(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {"result": value}


def _caller(fn: Callable[..., Any], wants_ctx: bool) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):
        async def acall(ctx: ToolContext, args: BaseModel) -> Mapping[str, Any]:
            out = await (fn(ctx, **_kwargs(args)) if wants_ctx else fn(**_kwargs(args)))
            return _wrap(out)
        return acall

    def call(ctx: ToolContext, args: BaseModel) -> Mapping[str, Any]:
        return _wrap(fn(ctx, **_kwargs(args)) if wants_ctx else fn(**_kwargs(args)))
    return call
