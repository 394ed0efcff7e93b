"""The package's layout rules (docs/architecture.md), checked on the source itself.

- only ``jupyterhub_ext/engine/`` imports docker-py;
- no import cycle between the package's modules (imports inside functions
  count too: a cycle hidden in a function is still a cycle);
- handlers never import Docker, the engine layer, or the spawner's lifecycle;
- every package says what it owns in its ``__init__`` docstring;
- the package's longest functions are each under 60 lines, or say in their
  docstring why not ("Long because ...").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "jupyterhub_ext"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module (ours or not) that ``name`` imports, anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:  # never runs
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                # "from pkg import module" depends on the module, not on pkg's __init__
                found.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


def test_graph_is_read():
    # the checks below would pass on an empty graph
    assert len(GRAPH) > 40
    assert "jupyterhub_ext.engine.dockerpool" in GRAPH["jupyterhub_ext.usage.scan"]
    assert "docker.errors" in GRAPH["jupyterhub_ext.engine.errors"]


def test_only_the_engine_layer_imports_docker():
    offenders = sorted(
        name
        for name, deps in GRAPH.items()
        if not name.startswith("jupyterhub_ext.engine") and any(_top(d) == "docker" for d in deps)
    )
    assert offenders == [], f"import docker outside jupyterhub_ext/engine/: {offenders}"


def test_no_import_cycle():
    ours = {n: {d for d in deps if d in GRAPH and d != n} for n, deps in GRAPH.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(ours[n]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d) :] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(ours):
        if n not in state:
            visit(n)


@pytest.mark.parametrize(
    "name", sorted(n for n in GRAPH if n.startswith("jupyterhub_ext.handlers"))
)
def test_handlers_stay_off_docker_and_the_spawner(name):
    bad = sorted(
        d
        for d in GRAPH[name]
        if _top(d) in ("docker", "dockerspawner")
        or d.startswith("jupyterhub_ext.engine")
        or d in ("jupyterhub_ext.spawner", "jupyterhub_ext.spawner.lifecycle")
    )
    assert bad == [], f"{name} imports {bad}"


@pytest.mark.parametrize("path", sorted(PKG.rglob("__init__.py")), ids=lambda p: p.parent.name)
def test_every_package_says_what_it_owns(path):
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and len(doc) > 60, f"{path} needs a docstring saying what the package owns"


def test_the_engine_layer_depends_on_nothing_of_ours():
    # the layer everything else stands on: no feature may leak into it
    bad = sorted(
        (name, d)
        for name, deps in GRAPH.items()
        if name.startswith("jupyterhub_ext.engine")
        for d in deps
        if d.startswith("jupyterhub_ext") and not d.startswith("jupyterhub_ext.engine")
    )
    assert bad == []


PRIVATE_HUB_INTERNALS = (
    "._spawn_future",
    "._stop_pending",
    "._escaped_name",
    "_check_scopes_exist",
    "_check_token_scopes",
    "dict.get(user.spawners",
    "dict.pop(user.spawners",
)


def test_private_hub_internals_only_in_hubcompat():
    found = sorted(
        (str(path.relative_to(PKG)), needle)
        for path in PKG.rglob("*.py")
        if path.name != "hubcompat.py"
        for needle in PRIVATE_HUB_INTERNALS
        if needle in path.read_text()
    )
    assert found == [], "use jupyterhub_ext.hubcompat for these"
    hubcompat = (PKG / "hubcompat.py").read_text()
    assert all(needle.lstrip(".") in hubcompat for needle in PRIVATE_HUB_INTERNALS[:5])


def _function_lengths() -> list[tuple[int, str, str, bool]]:
    """(lines, "path:line", name, says "Long because") per function, nested ones too.

    Longest first. Lines run from ``def`` to the end of the body; decorators are not counted.
    """
    rows = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                where = f"{path.relative_to(PKG.parent)}:{node.lineno}"
                long_because = "Long because" in (ast.get_docstring(node) or "")
                rows.append((node.end_lineno - node.lineno + 1, where, node.name, long_because))
    rows.sort(key=lambda r: (-r[0], r[1]))
    return rows


def test_the_longest_functions_are_short_or_say_why():
    rows = _function_lengths()
    assert len(rows) > 200  # the package was read
    too_long = [
        f"{n} lines: {name} ({where})"
        for n, where, name, long_because in rows[:20]
        if n >= 60 and not long_because
    ]
    assert not too_long, "split these, or say in their docstring why (Long because ...):\n" + (
        "\n".join(too_long)
    )
