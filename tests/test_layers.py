"""The layers as import contracts, read from the source (imports inside functions included).

    cli -> api -> reports -> engine -> trainer -> spec
    catalogue, attrs, errors, lazy: leaves that every layer may import

The CLI's one door is ``api``: it never reaches the engine or the trainer (it may read the
user's file through ``spec`` and print through ``reports``). Inside the engine:

    search (the driver, runners, budget, studies) -> strategy (space, samplers, pruners,
    objectives, grid) -> store (storages, the proxy, Optuna's fenced private names)
    cluster (workers, launch files) and tracking (TensorBoard, W&B) stand apart

A layer imports only layers to its right; `catalogue` (the names users write and the
hyperparameter table) is a leaf too, so the spec needs neither Optuna nor torch. PENDING names
an edge that may run the wrong way for now (none today): the test fails if one is added, and
when one is removed, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "tunecli"
ORDER = ["cli", "api", "reports", "engine", "trainer", "spec"]   # left may import right
LEAVES = {"attrs": set(), "errors": {"attrs"}, "lazy": set(), "catalogue": set()}
PENDING: set[tuple[str, str]] = set()
CLI_MAY_IMPORT = {"api", "spec", "reports"}
ENGINE = {"search": {"strategy", "store", "tracking"}, "strategy": {"store"}, "store": set(),
          "cluster": {"store"}, "tracking": set()}


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
    for name, path in modules.items():
        leaf = _layer(name)
        if leaf in LEAVES:
            imported = {_layer(m) for m in _imports(name, path, modules)} - {leaf}
            assert imported <= LEAVES[leaf], (name, imported)


def test_the_spec_and_the_catalogue_load_neither_optuna_nor_torch() -> None:
    """Checking a study file stays instant: `validate --no-data`, the schema, editors."""
    import subprocess
    import sys

    code = ("import sys, tunecli.spec, tunecli.catalogue; "
            "print(sorted(m for m in ('optuna', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"


def test_no_module_imports_itself_round_a_circle() -> None:
    """No import cycle between modules, imports inside functions included: a cycle is a
    boundary nobody drew (each one found was a shared type or helper wanting a module)."""
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:  # e.g. a -> b -> a
            raise AssertionError(" -> ".join([*path[path.index(name):], name]))
        if name in done:
            return
        for imported in sorted(graph.get(name, ())):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_cli_acts_through_the_api_only() -> None:
    modules = _modules()
    wrong = {(name, imported) for name, path in modules.items() if _layer(name) == "cli"
             for imported in _imports(name, path, modules)
             if _layer(imported) not in CLI_MAY_IMPORT | {"cli"} | set(LEAVES)}
    assert wrong == set()


def test_the_engine_holds_its_rooms_and_each_imports_only_those_below_it() -> None:
    modules = _modules()
    rooms = {name.split(".")[2] for name in modules if name.startswith("tunecli.engine.")}
    assert rooms == set(ENGINE)
    wrong = set()
    for name, path in modules.items():
        if not name.startswith("tunecli.engine."):
            continue
        room = name.split(".")[2]
        for imported in _imports(name, path, modules):
            there = imported.split(".")[2] if imported.startswith("tunecli.engine.") else None
            if there is not None and there != room and there not in ENGINE[room]:
                wrong.add((name, imported))
    assert wrong == set()
