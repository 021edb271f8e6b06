"""House rules of the layout, checked on the source text of cmcd_theory/ and experiments/.

The files are parsed with ``ast``; nothing is imported or executed. Four rules:

* (a) no import circle between modules. Every ``import``/``from ... import`` counts, at module
  level and inside functions (a lazy import still ties the two modules together), and inside
  ``if TYPE_CHECKING:`` too;
* (b) imports point down the layers, bottom to top::

      cmcd_theory.validation < cmcd_theory.worlds < cmcd_theory.learn < cmcd_theory.bounds
      < cmcd_theory.certify < cmcd_theory.sweeps < cmcd_theory.arena
      < cmcd_theory (its __init__, the top face)
      < experiments (with benchmarks, examples)

  A module may import its own layer (its package) and any lower layer, except that
  ``cmcd_theory.bounds`` (pure functions of numbers) may import only itself and
  ``cmcd_theory.validation``. A module of cmcd_theory outside every layer is a violation too;
* (c) no module over ``MAX_MODULE_LINES`` lines;
* (d) no function (``def``/``async def``, methods and nested functions included) over
  ``MAX_FUNCTION_LINES`` lines, counted from the ``def`` line to its last line (decorators
  excluded, docstring included): ``end_lineno - lineno + 1``.

Each rule is a small pure function of source text (or of an import graph given as a dict
``module -> imported modules``) that returns its violations as readable strings. The tests
run them on the real tree, and on small synthetic trees that break each rule, so that every
checker is shown to be able to fail.

An import resolves to the module it loads: ``from P import x`` is the module ``P.x`` when that
is a module of the tree (a submodule), else ``P``; ``import a.b.c`` is ``a.b.c``; relative
imports resolve against the importing module's package; a name not in the tree resolves to its
longest prefix that is. Imports of anything outside the first-party roots (numpy, jax, ...)
are ignored. Implicit imports of parent packages are not edges (a submodule importing its
siblings by full path is not a circle through the package).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("cmcd_theory", "experiments")
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80

# bottom to top; benchmarks/ and examples/ sit with experiments/ on the top layer
LAYERS = (
    "cmcd_theory.validation",
    "cmcd_theory.worlds",
    "cmcd_theory.learn",
    "cmcd_theory.bounds",
    "cmcd_theory.certify",
    "cmcd_theory.sweeps",
    "cmcd_theory.arena",
    "cmcd_theory",
    "experiments",
)
TOP_ROOTS = ("experiments", "benchmarks", "examples")
FIRST_PARTY = ("cmcd_theory", *TOP_ROOTS)
# layers that may import fewer than all lower layers (besides their own)
RESTRICTED = {"cmcd_theory.bounds": ("cmcd_theory.validation",)}


# ---- reading the tree -----------------------------------------------------------------------


def read_sources(root: Path, dirs: Iterable[str] = SCANNED) -> dict[str, str]:
    """Source text of every ``.py`` file under ``root/dir`` for each dir, keyed by the POSIX path
    relative to ``root`` (``"cmcd_theory/worlds/mfeat.py"``)."""
    out = {}
    for d in dirs:
        for path in sorted((root / d).rglob("*.py")):
            if "__pycache__" not in path.parts:
                out[path.relative_to(root).as_posix()] = path.read_text(encoding="utf-8")
    return out


def module_name(path: str) -> tuple[str, bool]:
    """``(dotted module name, is_package)`` of a relative path: ``a/b/__init__.py`` is the
    package ``a.b``, ``a/b/c.py`` the module ``a.b.c``."""
    parts = PurePosixPath(path).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


# ---- (a), (b): the import graph --------------------------------------------------------------


def _resolve(name: str, modules: Mapping[str, bool]) -> str | None:
    """The module of the tree that importing ``name`` loads: its longest prefix in ``modules``;
    ``name`` itself for a first-party name outside the tree; None for third-party names."""
    if name.split(".")[0] not in FIRST_PARTY:
        return None
    probe = name
    while probe not in modules and "." in probe:
        probe = probe.rsplit(".", 1)[0]
    return probe if probe in modules else name


def _base_of_from(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    """The absolute name of ``node.module`` (relative imports resolved); None above the root."""
    if node.level == 0:
        return node.module
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if node.level - 1 > len(parts) - 1:
        return None
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imported_modules(module: str, source: str, modules: Mapping[str, bool]) -> dict[str, int]:
    """First-party modules that ``module`` imports anywhere in ``source``, with the line of the
    first such import. ``modules`` maps every module of the tree to whether it is a package."""
    found: dict[str, int] = {}

    def add(name: str | None, line: int) -> None:
        target = _resolve(name, modules) if name else None
        if target is not None and target != module:
            found.setdefault(target, line)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _base_of_from(node, module, modules.get(module, False))
            if base is None:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else base, node.lineno)
    return dict(sorted(found.items(), key=lambda kv: kv[1]))


def import_graph(sources: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """``module -> {imported module: line}`` for a tree given as ``{relative path: source}``."""
    names = {path: module_name(path) for path in sources}
    modules = dict(names.values())
    return {
        names[path][0]: imported_modules(names[path][0], src, modules)
        for path, src in sources.items()
    }


def _strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` (nodes without an entry are sinks)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _shortest_cycle(graph: Mapping[str, Iterable[str]], comp: list[str]) -> list[str]:
    """A shortest cycle through ``comp[0]`` inside the component ``comp`` (breadth first)."""
    start, inside = comp[0], set(comp)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w in inside and w not in parent and w != start:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def import_circles(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """One line per import circle: the modules of a strongly connected component of two or
    more, and a shortest circle through its first module (``a -> b -> a``)."""
    out = []
    for comp in _strongly_connected(graph):
        if len(comp) > 1:
            cycle = " -> ".join(_shortest_cycle(graph, comp))
            out.append(f"circle of {len(comp)} modules {comp}: {cycle}")
    return out


def layer_of(module: str) -> str | None:
    """The layer (an entry of ``LAYERS``) of a module; None for a cmcd_theory module that no
    layer names."""
    parts = module.split(".")
    if parts[0] in TOP_ROOTS:
        return "experiments"
    if parts[0] != "cmcd_theory":
        return None
    if len(parts) == 1:
        return "cmcd_theory"
    layer = f"cmcd_theory.{parts[1]}"
    return layer if layer in LAYERS else None


def may_import(src: str, dst: str) -> bool:
    """Whether a module of layer ``src`` may import a module of layer ``dst``."""
    if src == dst:
        return True
    if src in RESTRICTED:
        return dst in RESTRICTED[src]
    return LAYERS.index(dst) < LAYERS.index(src)


def layer_violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """One line per import that points up (or, from a restricted layer, sideways), and per
    module outside every layer. Values of ``graph`` may be sets or ``{module: line}`` dicts."""
    out = []
    for module in sorted(graph):
        src = layer_of(module)
        if src is None:
            out.append(f"{module}: not in any layer of {LAYERS}")
            continue
        deps = graph[module]
        lines = deps if isinstance(deps, Mapping) else {}
        for dep in sorted(deps):
            dst = layer_of(dep)
            if dst is not None and not may_import(src, dst):
                at = f" (line {lines[dep]})" if dep in lines else ""
                out.append(f"{module} [{src}] imports {dep} [{dst}]{at}")
    return out


# ---- (c), (d): lengths -----------------------------------------------------------------------


def module_length_violations(
    sources: Mapping[str, str], limit: int = MAX_MODULE_LINES
) -> list[str]:
    """One line per file of ``{path: source}`` with more than ``limit`` lines."""
    out = []
    for path, src in sorted(sources.items()):
        n = len(src.splitlines())
        if n > limit:
            out.append(f"{path}: {n} lines > {limit}")
    return out


def function_lengths(source: str) -> list[tuple[str, int, int]]:
    """``(qualified name, def line, lines)`` of every function and method of ``source``,
    nested ones included (``Class.method``, ``outer.inner``)."""
    out: list[tuple[str, int, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                end = child.end_lineno if child.end_lineno is not None else child.lineno
                out.append((name, child.lineno, end - child.lineno + 1))
                walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(ast.parse(source), "")
    return out


def function_length_violations(
    sources: Mapping[str, str], limit: int = MAX_FUNCTION_LINES
) -> list[str]:
    """One line per function of ``{path: source}`` longer than ``limit`` lines, longest first."""
    rows = [
        (n, path, line, name)
        for path, src in sources.items()
        for name, line, n in function_lengths(src)
        if n > limit
    ]
    rows.sort(key=lambda r: (-r[0], r[1], r[2]))
    return [f"{path}:{line} {name}: {n} lines > {limit}" for n, path, line, name in rows]


# ---- the real tree ---------------------------------------------------------------------------


def _tree() -> dict[str, str]:
    return read_sources(ROOT)


def test_the_tree_is_found():
    sources = _tree()
    assert "cmcd_theory/__init__.py" in sources and "cmcd_theory/validation.py" in sources
    assert any(p.startswith("experiments/") for p in sources)


def _none(violations: list[str]) -> None:
    """Fail with every violation on its own line (pytest would elide a long list)."""
    assert not violations, f"{len(violations)} violation(s):\n" + "\n".join(violations)


def test_no_import_circles():
    _none(import_circles(import_graph(_tree())))


def test_imports_point_down_the_layers():
    _none(layer_violations(import_graph(_tree())))


def test_no_module_over_the_line_limit():
    _none(module_length_violations(_tree()))


def test_no_function_over_the_line_limit():
    _none(function_length_violations(_tree()))


# ---- each checker can fail: synthetic trees ---------------------------------------------------


def test_import_resolution():
    sources = {
        "cmcd_theory/__init__.py": "from cmcd_theory import worlds\nfrom . import learn\n",
        "cmcd_theory/worlds/__init__.py": "from .configs import WorldConfig\nimport numpy\n",
        "cmcd_theory/worlds/configs.py": "from .. import validation\nfrom . import WorldConfig\n",
        "cmcd_theory/validation.py": "import os\n",
        "cmcd_theory/learn/__init__.py": "",
        "cmcd_theory/learn/pipeline.py": (
            "def f():\n"
            "    from cmcd_theory.worlds import configs, WorldConfig\n"
            "    import cmcd_theory.learn.nowhere\n"
            "    from ..worlds.configs import WorldConfig\n"
        ),
        "experiments/run.py": "from cmcd_theory import learn\nfrom cmcd_theory.learn import x\n",
    }
    assert import_graph(sources) == {
        "cmcd_theory": {"cmcd_theory.worlds": 1, "cmcd_theory.learn": 2},
        "cmcd_theory.worlds": {"cmcd_theory.worlds.configs": 1},
        "cmcd_theory.worlds.configs": {"cmcd_theory.validation": 1, "cmcd_theory.worlds": 2},
        "cmcd_theory.validation": {},
        "cmcd_theory.learn": {},
        "cmcd_theory.learn.pipeline": {
            "cmcd_theory.worlds.configs": 2,
            "cmcd_theory.worlds": 2,
            "cmcd_theory.learn": 3,
        },
        "experiments.run": {"cmcd_theory.learn": 1},
    }


def test_a_two_module_circle_fails():
    sources = {
        "cmcd_theory/learn/a.py": "from cmcd_theory.learn import b\n",
        "cmcd_theory/learn/b.py": "def f():\n    from .a import g  # lazy, still a circle\n",
    }
    circles = import_circles(import_graph(sources))
    assert circles == [
        "circle of 2 modules ['cmcd_theory.learn.a', 'cmcd_theory.learn.b']: "
        "cmcd_theory.learn.a -> cmcd_theory.learn.b -> cmcd_theory.learn.a"
    ]
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert len(import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})) == 1


def test_an_upward_import_fails():
    sources = {
        "cmcd_theory/worlds/__init__.py": "from cmcd_theory.learn.pipeline import run\n",
        "cmcd_theory/learn/pipeline.py": "from cmcd_theory.worlds import x\n",
        "cmcd_theory/bounds/kl.py": "def f():\n    from cmcd_theory.worlds import y\n",
        "cmcd_theory/bounds/b4.py": "from cmcd_theory import validation\nfrom . import kl\n",
        "cmcd_theory/validation.py": "",
        "cmcd_theory/helpers.py": "",
        "experiments/run.py": "import cmcd_theory.certify\nfrom cmcd_theory import x\n",
    }
    assert layer_violations(import_graph(sources)) == [
        "cmcd_theory.bounds.kl [cmcd_theory.bounds] imports cmcd_theory.worlds "
        "[cmcd_theory.worlds] (line 2)",
        f"cmcd_theory.helpers: not in any layer of {LAYERS}",
        "cmcd_theory.worlds [cmcd_theory.worlds] imports cmcd_theory.learn.pipeline "
        "[cmcd_theory.learn] (line 1)",
    ]
    # the top face may import anything of the package; nothing of the package may import it
    assert layer_violations({"cmcd_theory": {"cmcd_theory.sweeps.sweep"}}) == []
    assert layer_violations({"cmcd_theory.sweeps.sweep": {"cmcd_theory"}}) == [
        "cmcd_theory.sweeps.sweep [cmcd_theory.sweeps] imports cmcd_theory [cmcd_theory]"
    ]
    assert layer_violations({"cmcd_theory.validation": {"benchmarks.speed"}}) != []


def test_an_801_line_module_fails(tmp_path):
    pkg = tmp_path / "cmcd_theory"
    pkg.mkdir()
    (pkg / "long.py").write_text("x = 1\n" * 801)
    (pkg / "ok.py").write_text("x = 1\n" * 800)
    sources = read_sources(tmp_path, dirs=("cmcd_theory",))
    assert module_length_violations(sources) == ["cmcd_theory/long.py: 801 lines > 800"]


def _function(name: str, lines: int, indent: str = "") -> str:
    """Source of a function of exactly ``lines`` lines (def line, docstring, body)."""
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(lines - 3))
    return f'{indent}def {name}():\n{indent}    """Doc."""\n{body}{indent}    return 0\n'


def test_an_81_line_function_fails():
    assert function_lengths(_function("f", 81)) == [("f", 1, 81)]
    source = (
        _function("short", 80)
        + "@decorator\n"  # decorators are not counted
        + _function("long", 81)
        + "class C:\n"
        + _function("method", 81, "    ")
        + "async def outer():\n"
        + _function("inner", 81, "    ")
    )
    assert function_length_violations({"m.py": source}) == [
        "m.py:245 outer: 82 lines > 80",
        "m.py:82 long: 81 lines > 80",
        "m.py:164 C.method: 81 lines > 80",
        "m.py:246 outer.inner: 81 lines > 80",
    ]
