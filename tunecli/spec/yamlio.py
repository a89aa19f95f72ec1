"""Reading study files safely: YAML 1.2 numbers and booleans, no duplicate keys, no Python tags.

PyYAML follows YAML 1.1, which surprises people tuning models: ``1e-5`` is read as a string,
``on``/``off``/``yes``/``no`` become booleans, and a key written twice silently keeps the last
value. This loader fixes all three and never constructs Python objects.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tunecli.errors import SpecError

__all__ = ["dump_yaml", "load_yaml_file"]

_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
# YAML 1.2 core schema integers: no 1.1 octal (010 is ten), sexagesimal (1:30) or underscores.
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")


class _StudyLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars and duplicate-key detection."""


# Drop YAML 1.1's implicit bool (yes/no/on/off), int and float resolvers; add YAML 1.2's.
_StudyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float",
                           "tag:yaml.org,2002:int")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StudyLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL_RE, list("tTfF"))
_StudyLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT_RE, list("-+0123456789"))
_StudyLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def _construct_int(loader: _StudyLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


_StudyLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _construct_mapping(loader: _StudyLoader, node: yaml.MappingNode,
                       deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is written twice (the second would silently win)",
                key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_StudyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_file(path: Path) -> Any:
    """Parse a YAML file, turning every problem into a one-line ``SpecError`` naming the file."""
    source = str(path)
    if not path.exists():
        raise SpecError("file not found", source=source,
                        fix="Check the path, or start from one of the files in studies/.")
    if path.is_dir():
        raise SpecError("is a folder, not a study file", source=source,
                        fix="Give the path of a .yaml file.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot be read ({exc})", source=source,
                        fix="Save it as UTF-8 text.") from None
    return load_yaml_text(text, source)


def load_yaml_text(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StudyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or "invalid YAML"
        if "found character '\\t'" in problem or ("\t" in text and "tab" in problem.lower()):
            fix = "Indent with spaces; YAML does not allow tabs."
        elif exc.problem and "could not determine a constructor" in exc.problem:
            problem = f"the YAML tag {problem.split('tag ')[-1].strip()} is not allowed"
            fix = "Study files hold plain values only; remove the tag."
        else:
            fix = "Fix the YAML syntax at that line."
        raise SpecError(problem, source=where, fix=fix) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML ({exc})", source=source,
                        fix="Fix the YAML syntax.") from None


def dump_yaml(data: Any) -> str:
    """Plain block-style YAML, keys in the order given."""
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True))
