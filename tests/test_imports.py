"""The package's import structure: no cycles, plain stages stay plain, the CLI starts fast.

Two checks on cycles. Statically, every import in the package — at module level, in a
function body or under ``TYPE_CHECKING`` — is an edge, and the graph must have no
cycle: so no function-local import exists only to dodge one (those that remain are lazy
for start-up time). Dynamically, every module is imported first, with the package
forgotten between modules, as a user's ``import hpcbench.x`` would.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "hpcbench"
# Plain stages: usable in a notebook and testable without a cluster (DESIGN.md).
PLAIN = [
    "hpcbench.defects",
    "hpcbench.optics",
    "hpcbench.seeding",
    "hpcbench.study",
    "hpcbench.plan",
    "hpcbench.structures",
    "hpcbench.simulate",
    "hpcbench.models",
    "hpcbench.metrics",
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    # __main__ runs the CLI when imported.
    paths = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")
    return {_module_name(path): path for path in paths}


def _submodules(prefix: str) -> list[str]:
    return [name for name in _modules() if name == prefix or name.startswith(f"{prefix}.")]


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports anywhere in its body."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        own_ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    package = name if is_package else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}".rstrip(".")
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                if not target.startswith("hpcbench"):
                    continue
                # Importing a.b.c runs a/__init__ and a/b/__init__ first, except those
                # already running as this module's own parents.
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    module = ".".join(parts[:i])
                    if module in modules and module not in own_ancestors and module != name:
                        graph[name].add(module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_even_counting_function_local_imports() -> None:
    graph = import_graph()
    assert "hpcbench.plan" in graph["hpcbench.train.sweep"]  # the graph is real
    assert cycles(graph) == []


def test_every_module_imports_first() -> None:
    # Import order hides cycles; importing each module first (the package forgotten in
    # between) exposes a partially initialised module.
    code = (
        "import importlib, sys\n"
        f"for name in {sorted(_modules())!r}:\n"
        "    for loaded in [m for m in sys.modules if m.startswith('hpcbench')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n"
    )
    assert _run(code).strip() == "ok"


def test_plain_stages_do_not_import_ray_or_mlflow() -> None:
    modules = [m for prefix in PLAIN for m in _submodules(prefix)]
    assert "hpcbench.plan.trials" in modules and "hpcbench.simulate.stem" in modules
    code = "; ".join(f"import {m}" for m in modules)
    loaded = _run(f"import sys; {code}; print(sorted(sys.modules))")
    for heavy in ("'ray'", "'mlflow'"):
        assert heavy not in loaded


def test_the_schema_loads_nothing_heavy() -> None:
    code = "; ".join(f"import {m}" for m in _submodules("hpcbench.study"))
    heavy = ("ase", "scipy", "torch", "ray", "mlflow", "abtem", "pyarrow")
    loaded = _run(f"import sys; {code}; print([m for m in {heavy!r} if m in sys.modules])")
    assert loaded.strip() == "[]"


def test_reports_do_not_import_ray() -> None:
    code = "; ".join(f"import {m}" for m in _submodules("hpcbench.report"))
    assert _run(f"import sys; {code}; print('ray' in sys.modules)").strip() == "False"


def test_cli_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from hpcbench.cli import main\n"
        "main(['--help'])\n"
        "print([m for m in ('ray', 'abtem', 'torch', 'mlflow') if m in sys.modules])"
    )
    assert _run(code).strip().splitlines()[-1] == "[]"


def test_rejecting_a_bad_study_loads_nothing_heavy() -> None:
    # validate reads the schema first; the plan (pyarrow, the simulation stack) only
    # for a study that is valid, so a bad file is refused at interpreter start-up cost.
    bad = PACKAGE.parent / "tests" / "data" / "bad_studies" / "dose_nan.yaml"
    code = (
        "import sys\n"
        "from hpcbench.cli import main\n"
        f"assert main(['validate', {str(bad)!r}]) == 2\n"
        "heavy = ('pyarrow', 'scipy', 'torch', 'ray', 'mlflow', 'hpcbench.plan')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    assert _run(code).strip().splitlines()[-1] == "[]"
