"""Pydantic's validation errors in the user's words: one line per problem, with the dotted key
path and a fix (a did-you-mean for a mistyped key)."""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from tunecli.errors import SpecError, SpecErrors, did_you_mean
from tunecli.spec.models import StudySpec

__all__ = ["raise_validation"]


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the key at ``loc`` (for 'did you mean' suggestions)."""
    annotation: Any = StudySpec
    for part in loc:
        model = _unwrap_model(annotation)
        if model is not None and isinstance(part, str):
            field = next((f for n, f in model.model_fields.items()
                          if n == part or f.alias == part), None)
            if field is None:
                return None
            annotation = field.annotation
        else:  # dict or list element
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[-1] if args else None
    return _unwrap_model(annotation)


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic adds union-member and tuple tags such as 'float' or 'function-after[...]'.
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in
                                                                ("str", "int", "float", "bool",
                                                                 "list[...]", "none"))))


def _error_line(err: typing.Mapping[str, Any]) -> tuple[str, str, str]:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = _model_at(loc[:-1])
        allowed = [f.alias or n for n, f in parent.model_fields.items()
                   if not (f.exclude)] if parent else []
        hint = did_you_mean(key, allowed)
        fix = hint or (f"Allowed keys: {', '.join(allowed)}." if allowed else "Remove it.")
        return _dotted(loc), f"unknown key '{key}'", fix
    raw_loc, loc = loc, _clean_loc(loc)
    if kind in ("tuple_type", "list_type", "too_short", "too_long") and len(raw_loc) > 2 \
            and raw_loc[0] == "space" and raw_loc[2] in ("float", "int"):
        received = err.get("input")
        key = raw_loc[2]
        return (_dotted((*raw_loc[:2], key)), f"must be a list [low, high], not {received!r}",
                f"Write {key}: [low, high], or value: {received!r} for a fixed value.")
    if kind == "missing":
        return _dotted(loc), "is required but missing", "Add it."
    received = err.get("input")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return (_dotted(loc), f"must be a mapping of keys, not {received!r}",
                f"Write it as {loc[-1] if loc else 'key'}: {{key: value, ...}}.")
    message = str(err["msg"]).removeprefix("Value error, ")
    message = re.sub(r"\bmust be a (?=[aeiou])", "must be an ",
                     message.replace("Input should be a valid ", "must be a "))
    message = message.replace("Input should be ", "must be ")
    if kind.endswith("_type") or kind.endswith("_parsing") or kind == "literal_error":
        message = f"{message}, not {received!r}"
    if kind == "bool_type" and isinstance(received, str):  # yes, no, on, off: YAML 1.2 words
        return _dotted(loc), message, "Write true or false (YAML 1.2 reads yes and no as text)."
    return _dotted(loc), message, ""


def raise_validation(exc: ValidationError, source: str) -> typing.NoReturn:
    # One problem per key path; union branches repeat themselves.
    seen: dict[str, tuple[str, str]] = {}
    for err in exc.errors():
        path, message, fix = _error_line(err)
        seen.setdefault(path, (message, fix))
    # `spaces:` is one slip, not two: drop "space is missing" when a typo points at it.
    suggested = {path.rpartition(".")[0] + ("." if "." in path else "") + fix.split("'")[1]
                 for path, (message, fix) in seen.items()
                 if message.startswith("unknown key") and fix.startswith("Did you mean")}
    errors = [SpecError(message, source=source, path=path or None, fix=fix)
              for path, (message, fix) in seen.items()
              if not (message == "is required but missing" and path in suggested)]
    if len(errors) == 1:
        raise errors[0] from None
    raise SpecErrors(errors) from None


