"""``--set KEY.PATH=VALUE``: any key of a study file, overridden from the command line."""

from __future__ import annotations

import re
from typing import Any

from tunecli.errors import SpecError
from tunecli.spec.yamlio import load_yaml_text

__all__ = ["parse_assignments", "set_dotted"]


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for depth, part in enumerate(parents):
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if child is None else ({"name": child} if part == "dataset" else child)
            if not isinstance(child, dict):
                where = ".".join(parents[:depth + 1])
                raise SpecError(f"cannot set {dotted}: {where} is {child!r}, not a mapping",
                                source="--set", path=dotted,
                                fix=f"Set {where} as a whole, e.g. --set '{where}={{...}}'.")
            node[part] = child
        node = child
    node[last] = value


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """``--set KEY.PATH=VALUE`` options -> overrides; values are YAML (``1e-3``, ``{a: 1}``)."""
    overrides: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not re.match(r"^[A-Za-z_][\w-]*(\.[A-Za-z_0-9][\w-]*)*$", key):
            raise SpecError(f"'{item}' is not KEY=VALUE", source="--set",
                            fix="Write e.g. --set pruner.type=none or --set trainer.epochs=5.")
        overrides[key] = load_yaml_text(text, f"--set {key}")
    return overrides


