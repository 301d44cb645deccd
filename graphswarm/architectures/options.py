"""The base of every architecture's Options: one pydantic model per architecture.

Each `architectures/<name>.py` declares `class <Name>Options(SwarmOptions)` with every
option's default, range (`Field(ge=..., le=...)`), type and a one-line description.
Everything else about options is derived from that model:

- the builder validates its keyword arguments with it (`create_debate(agents, rounds=3)`
  or `create_debate(agents, options=DebateOptions(rounds=3))`);
- `SwarmSpec.build` validates `spec.options` with it, coercing the strings of
  `-o KEY=VALUE` (``"3"`` becomes 3, ``"true"`` True);
- the run record keeps the options that were given and are plain data (`recorded`);
- the CLI's `--KEY VALUE` flags and `graphswarm options ARCH` come from its fields;
- `langgraph dev` reads `GRAPHSWARM_OPTION_<KEY>` for each of its fields.

A wrong value or an unknown key is a one-line `ConfigError` naming the option, made in
one place (`option_error`).
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticSerializationError, to_jsonable_python

from graphswarm.errors import ConfigError

__all__ = ["SwarmOptions", "OptionInfo", "option_error", "parse_value", "flag_of"]


class SwarmOptions(BaseModel):
    """An architecture's options: unknown keys are refused, values are checked and
    coerced (``"3"`` -> 3) and the model is frozen once built.

    A field may accept objects a run record cannot hold (an `Embeddings` instance, a
    scoring function, a mapping of graphs): such a value is used but not recorded, and it
    makes the spec unrecordable — derived from the value (`recorded`), not from a list.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, coerce_numbers_to_str=True)

    @classmethod
    def check(cls, options: SwarmOptions | Mapping[str, Any] | None = None, /, **kwargs: Any) -> Self:
        """Validate `options` (a model or a mapping) updated with `kwargs`; a
        `ConfigError` naming the first bad option when they do not fit."""
        if isinstance(options, cls) and not kwargs:
            return options
        if isinstance(options, BaseModel):
            options = options.model_dump(exclude_unset=True)
        data = {**(options or {}), **kwargs}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise option_error(cls, exc, data) from None

    @property
    def needs_embeddings(self) -> bool:
        """Whether the graph built with these options embeds text (checked before a run
        starts; the embeddings themselves are resolved when first used)."""
        return False

    def recorded(self) -> dict[str, Any]:
        """The options given (not defaults), as JSON values; objects are left out."""
        kept: dict[str, Any] = {}
        for name in self.model_fields_set:
            try:
                kept[name] = to_jsonable_python(getattr(self, name))
            except PydanticSerializationError:
                continue
        return dict(sorted(kept.items()))

    @property
    def recordable(self) -> bool:
        """Whether `recorded` keeps every option given (none is an object)."""
        return set(self.recorded()) == self.model_fields_set

    @classmethod
    def describe(cls) -> list[OptionInfo]:
        """Each option's name, type, default, range and description, for help texts."""
        return [
            OptionInfo(
                name=name,
                type=_type_name(field.annotation),
                default=_default_text(field),
                range=_range_text(field),
                description=field.description or "",
                text=not all(_python_only(a) for a in _plain(field.annotation)),
            )
            for name, field in cls.model_fields.items()
        ]

    @classmethod
    def flags(cls) -> list[str]:
        """The CLI flag of each option that can be written as text: `max_rounds` is
        `--max-rounds` (a scoring function has none)."""
        return [flag_of(info.name) for info in cls.describe() if info.text]

    @classmethod
    def is_switch(cls, name: str) -> bool:
        """Whether the option is true or false (a CLI flag that takes no value)."""
        field = cls.model_fields.get(name)
        return field is not None and _plain(field.annotation) == [bool]


@dataclass(frozen=True)
class OptionInfo:
    name: str
    type: str
    default: str
    range: str
    description: str
    text: bool = True
    """Whether it can be given as text (CLI, environment), not only as a Python object."""


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_value(raw: str) -> Any:
    """An option value written as text (`-o KEY=VALUE`, `--key VALUE`, an environment
    variable): JSON when it parses (`3`, `true`, `["debate"]`), else the text itself;
    the Options model then checks and coerces it."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def option_error(model: type[SwarmOptions], exc: ValidationError, given: Mapping[str, Any]) -> ConfigError:
    """The first problem of a validation error as one line naming the option."""
    label = model.model_config.get("title") or model.__name__
    error = exc.errors()[0]
    loc, kind = error["loc"], error["type"]
    if not loc:  # a check across options (a model validator)
        return ConfigError(_validator_message(error))
    name = str(loc[0])
    if kind == "extra_forbidden":
        return ConfigError(f"{label} has no option {name!r} (its options: {', '.join(model.model_fields) or 'none'})")
    if kind in ("value_error", "assertion_error"):
        return ConfigError(f"option {name}: {_validator_message(error)}")
    field = model.model_fields[name]
    expected = _expected(field.annotation)
    if kind.startswith(("greater_than", "less_than")):  # the right type, out of range
        expected += " " + _range_text(field)
    value = given.get(name, error.get("input"))
    return ConfigError(f"option {name} must be {expected}, got {value!r}")


def _validator_message(error: Mapping[str, Any]) -> str:
    ctx_error = (error.get("ctx") or {}).get("error")
    return str(ctx_error) if ctx_error is not None else str(error["msg"])


# -- describing a field's type and range in words ---------------------------------


def _plain(annotation: Any) -> list[Any]:
    """The types a field accepts, None left out."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        annotation
    )


def _one(annotation: Any, *, words: bool) -> str:
    origin = typing.get_origin(annotation) or annotation
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = [str(m.value) for m in annotation]
        return ("one of " + ", ".join(values)) if words else " | ".join(values)
    if annotation is bool:
        return "true or false" if words else "bool"
    if annotation is int:
        return "a whole number" if words else "int"
    if annotation is float:
        return "a number" if words else "float"
    if annotation is str:
        return "a name" if words else "str"
    if annotation is Path:
        return "a path" if words else "path"
    if origin in (list, tuple, set, frozenset):
        return "a list of names" if words else "list[str]"
    if origin in (dict, Mapping):
        args = typing.get_args(annotation)
        if args and args[-1] is float:
            return "a mapping of names to numbers" if words else "dict[str, float]"
        return "a mapping" if words else "dict (Python)"
    if origin is Callable:
        return "a function" if words else "function (Python)"
    name = getattr(annotation, "__name__", str(annotation))
    return f"an instance of {name}" if words else f"{name} (Python)"


def _python_only(annotation: Any) -> bool:
    """Whether values of this type exist only in Python (a function, an object)."""
    return _one(annotation, words=False).endswith("(Python)")


def _type_name(annotation: Any) -> str:
    names = [_one(a, words=False) for a in _plain(annotation)]
    return " | ".join(names) + (" | none" if _optional(annotation) else "")


def _expected(annotation: Any) -> str:
    kinds = [_one(a, words=True) for a in _plain(annotation)]
    text = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " or " + kinds[-1]
    return text


def _range_text(field: FieldInfo) -> str:
    bounds: dict[str, Any] = {}
    for item in field.metadata:
        for key in ("ge", "gt", "le", "lt"):
            if isinstance(item, getattr(annotated_types, key.capitalize())):
                bounds[key] = getattr(item, key)
    low_key = "ge" if "ge" in bounds else "gt" if "gt" in bounds else None
    high_key = "le" if "le" in bounds else "lt" if "lt" in bounds else None
    if low_key == "ge" and high_key == "le":
        return f"from {bounds['ge']:g} to {bounds['le']:g}"
    if low_key and high_key:
        return f"in {'[' if low_key == 'ge' else '('}{bounds[low_key]:g}, {bounds[high_key]:g}{']' if high_key == 'le' else ')'}"
    if low_key:
        return f"{'at least' if low_key == 'ge' else 'above'} {bounds[low_key]:g}"
    if high_key:
        return f"{'at most' if high_key == 'le' else 'below'} {bounds[high_key]:g}"
    return ""


def _default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is None:
        return "-"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "(none)"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return f"{value:g}" if isinstance(value, float) else str(value)
