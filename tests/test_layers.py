"""The layers as import contracts, read from the source (imports inside functions included).

    cli -> reports -> engine -> trainer      (and each of them -> spec)
    attrs, errors, lazy: leaves that every layer may import

A layer imports only layers to its right. The edges that still run the wrong way (the spec's
checks and preflight reach into the engine and trainer registries, `tunecli train` into the
engine) are listed in PENDING: the test fails if one is added, and when one is removed (so the
list only shrinks, until the catalogue of names lives in a leaf).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "tunecli"
ORDER = ["cli", "reports", "engine", "trainer", "spec"]   # left may import right
LEAVES = {"attrs": set(), "errors": {"attrs"}, "lazy": set()}
PENDING = {
    ("tunecli.spec.checks", "tunecli.engine.samplers"),
    ("tunecli.spec.checks", "tunecli.trainer.data"),
    ("tunecli.spec.checks", "tunecli.trainer.measures"),
    ("tunecli.spec.checks", "tunecli.trainer.models"),
    ("tunecli.spec.preflight", "tunecli.engine.space"),
    ("tunecli.spec.preflight", "tunecli.trainer.augment"),
    ("tunecli.spec.preflight", "tunecli.trainer.csv_table"),
    ("tunecli.spec.preflight", "tunecli.trainer.data"),
    ("tunecli.spec.preflight", "tunecli.trainer.loop"),
    ("tunecli.spec.preflight", "tunecli.trainer.models"),
    ("tunecli.spec.preflight", "tunecli.trainer.optim"),
    ("tunecli.spec.schema", "tunecli.engine.samplers"),
    ("tunecli.spec.schema", "tunecli.trainer.data"),
    ("tunecli.trainer.final", "tunecli.engine.objectives"),
    ("tunecli.trainer.final", "tunecli.engine.space"),
    ("tunecli.trainer.final", "tunecli.engine.study"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The tunecli modules ``name`` imports, anywhere in its source."""
    def known(dotted: str) -> str:
        while dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {known(a.name) for a in node.names if a.name.startswith("tunecli")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([node.module] if node.module else []))
            if base.startswith("tunecli"):
                found |= {known(f"{base}.{a.name}") if f"{base}.{a.name}" in modules
                          else known(base) for a in node.names}
    return found - {name, "tunecli"}


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_each_layer_imports_only_the_layers_below_it() -> None:
    modules = _modules()
    wrong = set()
    for name, path in modules.items():
        here = _layer(name)
        for imported in _imports(name, path, modules):
            there = _layer(imported)
            if here == there or there in LEAVES or here in ("__main__",):
                continue
            if here in LEAVES or here not in ORDER or there not in ORDER \
                    or ORDER.index(there) < ORDER.index(here):
                wrong.add((name, imported))
    assert wrong - PENDING == set(), "new imports against the layers"
    assert PENDING - wrong == set(), "fixed: remove these from PENDING"


def test_the_leaves_import_only_leaves() -> None:
    modules = _modules()
    for leaf, allowed in LEAVES.items():
        name = f"tunecli.{leaf}"
        assert {_layer(m) for m in _imports(name, modules[name], modules)} <= allowed, leaf
