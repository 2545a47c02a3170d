"""Argument models for tools described by a JSON Schema (MCP tools) rather than pydantic.

The model validates against the tool's own schema before anything is sent, and reports
the same schema to the model, so the rest of Foreman treats it like any pydantic model.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import RootModel, model_validator

MAX_MESSAGE = 200


class SchemaArgs(RootModel[dict[str, Any]]):
    """Arguments checked against ``schema``; dumps to the plain argument object."""

    schema_: ClassVar[dict[str, Any]] = {"type": "object"}
    validator_: ClassVar[Draft202012Validator] = Draft202012Validator({"type": "object"})

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        errors = sorted(cls.validator_.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            parts = []
            for err in errors[:5]:
                where = ".".join(str(p) for p in err.absolute_path) or "(root)"
                parts.append(f"{where}: {err.message[:MAX_MESSAGE]}")
            raise ValueError("; ".join(parts))
        return data

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The tool's own input schema (a copy)."""
        return copy.deepcopy(cls.schema_)


def schema_args(name: str, schema: dict[str, Any]) -> type[SchemaArgs]:
    """A model class validating against ``schema``; ``ValueError`` if the schema is invalid."""
    schema = dict(schema or {})
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        raise ValueError(f"{name}: invalid input schema ({e.message[:MAX_MESSAGE]})") from e
    safe = "".join(c if c.isalnum() else "_" for c in name)
    return type(f"{safe}_args", (SchemaArgs,), {
        "schema_": schema, "validator_": Draft202012Validator(schema), "__module__": __name__})
