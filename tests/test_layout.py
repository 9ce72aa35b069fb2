"""The source layout: imports only point down, files stay small, tests use public names.

Read from the source with `ast` (nothing is imported), so these checks take well under a
second and hold on every backend:
- the import graph of `wae_tf/` and `reproduce/` (every `import` / `from ... import`
  anywhere in a file, inside functions and `if` blocks too) has no cycle;
- no module there is over MAX_LINES lines;
- tests import only public names of the project and read no `module._private` attribute
  of a project module (dunder names such as `__version__` are public).
One check runs Python (a subprocess, ~0.3 s): the light imports load no Keras.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("wae_tf", "reproduce")
MAX_LINES = 600


# --- Reading the source -------------------------------------------------------------------
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """{dotted module name: path} for every .py file of the project's packages."""
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module a `from X import ...` reads from, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(
    tree: ast.AST, importer: str, modules: set[str], is_package: bool = False
) -> list[tuple[str, int]]:
    """(project module, line) for every import in `tree`, wherever it is.

    `from wae_tf import models` imports wae_tf.models; `from wae_tf.models import WAE`
    imports wae_tf.models; `import wae_tf.models` imports wae_tf.models.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.append((alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, importer, is_package)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:
                    found.append((submodule, node.lineno))
                elif source in modules:
                    found.append((source, node.lineno))
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """{module: {imported project module: first line importing it}}, self-imports left out."""
    paths = project_modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges: dict[str, int] = {}
        for target, line in imported_modules(tree, name, set(paths), path.name == "__init__.py"):
            if target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module: each an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graph is a few dozen modules
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One shortest cycle (first module repeated at the end) per import circle."""
    return [_shortest_cycle(graph, component) for component in circles(graph)]


def _shortest_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first search)."""
    start, members = component[0], set(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target not in members or target in parents:
                    continue
                parents[target] = node
                if target == start:
                    path = [start]
                    while path[-1] != start or len(path) == 1:
                        path.append(parents[path[-1]])
                    return path[::-1]
                following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")  # pragma: no cover


def _edge(graph: dict[str, dict[str, int]], a: str, b: str) -> str:
    return f"{a} -> {b} ({a.replace('.', '/')}.py:{graph[a][b]})"


def describe_cycle(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    """The cycle's imports with their lines, then every other import inside its circle."""
    steps = [_edge(graph, a, b) for a, b in zip(cycle, cycle[1:], strict=False)]
    (members,) = [set(c) for c in circles(graph) if cycle[0] in c]
    also = [
        _edge(graph, a, b)
        for a in sorted(members)
        for b in sorted(graph[a])
        if b in members and _edge(graph, a, b) not in steps
    ]
    if also:
        steps.append("(other imports inside this circle: " + "; ".join(also) + ")")
    return "\n    ".join(steps)


# --- Public names in tests ----------------------------------------------------------------
def _module_aliases(tree: ast.AST, modules: set[str]) -> dict[str, str]:
    """{local name: project module} for every name a test binds to a project module."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in modules:
                    aliases[alias.asname] = alias.name
                elif not alias.asname and alias.name.split(".")[0] in PACKAGES:
                    aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _resolve(node: ast.AST, aliases: dict[str, str], modules: set[str]) -> str | None:
    """The project module an expression like `models` or `wae_tf.models` names, if any."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        parent = _resolve(node.value, aliases, modules)
        if parent and f"{parent}.{node.attr}" in modules:
            return f"{parent}.{node.attr}"
    return None


def private_uses(tree: ast.AST, modules: set[str]) -> list[tuple[int, str]]:
    """(line, what) for each private project name a test imports or reads."""
    aliases = _module_aliases(tree, modules)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            if any(_is_private(part) for part in node.module.split(".")):
                found.append((node.lineno, f"from {node.module} import ..."))
            for alias in node.names:
                if _is_private(alias.name):
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES and any(
                    _is_private(part) for part in alias.name.split(".")
                ):
                    found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            module = _resolve(node.value, aliases, modules)
            if module:
                found.append((node.lineno, f"{module}.{node.attr}"))
        elif isinstance(node, ast.Call) and len(node.args) >= 2:
            # setattr(module, "_x", ...), monkeypatch.setattr(module, "_x", ...) and
            # getattr(module, "_x"): the same private access, spelled as a string.
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                module = _resolve(node.args[0], aliases, modules)
                if module and _is_private(name.value):
                    found.append((node.lineno, f"{module}.{name.value} (by name)"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # monkeypatch.setattr("wae_tf.train._x", ...): a dotted path to a private name.
            parts = node.value.split(".")
            if len(parts) > 1 and ".".join(parts[:-1]) in modules and _is_private(parts[-1]):
                found.append((node.lineno, f"{node.value} (by name)"))
    return sorted(set(found))


# --- The tests ----------------------------------------------------------------------------
def test_import_graph_helpers_resolve_every_import_form():
    modules = {"wae_tf", "wae_tf.models", "wae_tf.losses", "reproduce", "reproduce.common"}
    tree = ast.parse(
        "import wae_tf.models\n"
        "from wae_tf import losses, __version__\n"
        "def f():\n"
        "    from .common import x\n"
        "    import numpy\n"
    )
    found = imported_modules(tree, "reproduce.figure2", modules)
    assert found == [
        ("wae_tf.models", 1),
        ("wae_tf.losses", 2),
        ("wae_tf", 2),
        ("reproduce.common", 4),
    ]
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"e": 1}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert "b -> c (b.py:2)" in describe_cycle(graph, ["a", "b", "c", "a"])
    assert find_cycles({"a": {"b": 1}, "b": {}}) == []


def test_the_import_graph_has_no_cycle():
    """Counting imports inside functions: dependencies only point down the layers."""
    graph = import_graph()
    assert "wae_tf.models" in graph and "reproduce.figure2" in graph
    cycles = find_cycles(graph)
    report = "\n".join(f"  cycle:\n    {describe_cycle(graph, c)}" for c in cycles)
    assert not cycles, f"{len(cycles)} import cycle(s) in wae_tf/ and reproduce/:\n{report}"


def _lines_printed_by_a_fresh_python(code: str) -> list[str]:
    """What `code` prints in a new interpreter (nothing imported before it), line by line."""
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.splitlines()


def test_light_imports_load_no_keras_and_hook_no_imports():
    """`import wae_tf`, wae_tf.configs and wae_tf.data (configs and data for a notebook or a
    launcher) import neither Keras, TensorFlow nor JAX, and leave the import system alone:
    the model classes are registered by `import wae_tf.models` or `wae_tf.load_model`."""
    code = (
        "import sys; finders = list(sys.meta_path)\n"
        "import wae_tf, wae_tf.configs, wae_tf.data\n"
        "print([m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules])\n"
        "print(sys.meta_path == finders, callable(wae_tf.load_model))"
    )
    assert _lines_printed_by_a_fresh_python(code) == ["[]", "True True"]


def test_reproduce_imports_load_no_keras():
    """`import reproduce` and the modules a script imports before it parses its flags
    (all of reproduce/, the scripts themselves) import neither Keras, TensorFlow nor JAX:
    `--help` and a flag error answer at once, and the script imports Keras itself, through
    `console.quiet_tensorflow_startup`, with TensorFlow's start-up lines once at most."""
    code = (
        "import sys\n"
        "import reproduce, reproduce.cli, reproduce.specs, reproduce.pipeline\n"
        "import reproduce.figure2, reproduce.figure3, reproduce.table1, reproduce.all\n"
        "print([m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules])"
    )
    assert _lines_printed_by_a_fresh_python(code) == ["[]"]


SCRIPTS = ("figure2", "figure3", "table1", "all")


def test_reproduce_scripts_are_a_spec_and_a_call():
    """Each reproduce script is its docstring (its --help), its spec and one call into the
    pipeline: at most 40 lines, importing only the command line, the pipeline and the specs;
    the rest of reproduce/ is one pipeline over data, each module importing only the ones
    below it (specs and cli at the bottom, pipeline at the top)."""
    graph = import_graph()
    allowed = {"reproduce.cli", "reproduce.pipeline", "reproduce.specs", "wae_tf.console"}
    for name in SCRIPTS:
        path = ROOT / "reproduce" / f"{name}.py"
        assert len(path.read_text().splitlines()) <= 40, name
        imported = set(graph[f"reproduce.{name}"]) - {"reproduce"}
        assert imported <= allowed, (name, imported - allowed)
    floors = ["cli", "specs", "evaluation", "report", "render", "bundles", "pipeline"]
    for lower, name in enumerate(floors):
        uses = {m.removeprefix("reproduce.") for m in graph[f"reproduce.{name}"]}
        above = uses & set(floors[lower + 1 :])
        assert not above, f"reproduce.{name} imports {above}, above it"
    modules = {p.stem for p in (ROOT / "reproduce").glob("*.py")} - {"__init__", *SCRIPTS}
    assert modules == set(floors)


def test_no_module_is_over_the_line_limit():
    too_long = {}
    for path in project_modules().values():
        relative = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            too_long[relative] = lines
    assert not too_long, f"modules over {MAX_LINES} lines (split them by concern): {too_long}"


def test_private_name_detector_finds_every_spelling():
    modules = {"wae_tf", "wae_tf.train", "wae_tf.models"}
    tree = ast.parse(
        "from wae_tf.train import _save, load\n"
        "from wae_tf import train as t, models\n"
        "import wae_tf.train\n"
        "t._restore(); models.build_model(); models.__name__\n"
        "wae_tf.train._history\n"
        "monkeypatch.setattr(t, '_lock', None)\n"
        "monkeypatch.setattr('wae_tf.models._images', None)\n"
        "model._step_optimizer  # an object's attribute, not a module's\n"
    )
    assert [line for line, _ in private_uses(tree, modules)] == [1, 4, 5, 6, 7]


def test_tests_use_only_public_names_of_the_project():
    modules = set(project_modules())
    violations = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        violations += [
            f"tests/{path.name}:{line}: {what}" for line, what in private_uses(tree, modules)
        ]
    assert not violations, "tests reach private project names:\n  " + "\n  ".join(violations)
