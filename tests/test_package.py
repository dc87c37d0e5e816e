"""The package's shape: no import cycle, one temp-then-rename, no sys.path edits in entry points."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "chrono_membench"


def module_imports() -> dict[str, set[str]]:
    """module → the package modules it imports (anywhere in the file, lazy imports included)."""
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        deps, tree = set(), ast.parse(path.read_text())
        for guard in [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]:
            guard.body = []  # annotations only: not an import at run time
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("chrono_membench"):
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in files}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("chrono_membench")}
        graph[name] = deps - {name}
    return graph


def test_the_package_has_no_import_cycle():
    graph = module_imports()
    graph["chrono_membench.data"] = set()  # its __init__ re-exports lazily (by name, at attribute access)
    seen, cycles = set(), []

    def visit(node, stack):
        for dep in graph.get(node, ()):
            if dep in stack:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in seen:
                visit(dep, stack + [dep])
        seen.add(node)

    for module in graph:
        visit(module, [module])
    assert not cycles, [" → ".join(c) for c in cycles]


def test_no_arrow_runs_back_into_a_folder():
    """No module inside a folder (data/, chrono/, saes/) imports a module outside it that imports the folder back
    (its CLI, __main__, excepted: an entry point may read the config)."""
    graph = module_imports()
    back = []
    for folder in {m.rsplit(".", 1)[0] for m in graph if m.count(".") >= 2}:
        inside = {m for m in graph if m == folder or m.startswith(folder + ".")}
        for module in sorted(inside - {folder + ".__main__"}):
            back += [f"{module} → {dep} → {sorted(graph[dep] & inside)}" for dep in sorted(graph[module] - inside)
                     if graph.get(dep, set()) & inside]
    assert not back, back


def test_temp_then_rename_is_written_once():
    renames = [p.relative_to(ROOT) for p in PACKAGE.rglob("*.py")
               if re.search(r"os\.replace\(|os\.rename\(|\.rename\(", p.read_text())]
    assert renames == [Path("chrono_membench/run_dir.py")]


def test_entry_points_do_not_edit_sys_path():
    scripts = [p for d in ("experiments", "analysis", "benchmarks", "data", "tests") for p in (ROOT / d).rglob("*.py")]
    assert scripts and not [p for p in scripts if "sys.path.insert" in p.read_text() and p.name != "test_package.py"]


def test_train_py_stays_readable():
    """One loop read top to bottom: the metrics live in evaluation.py / probe_eval.py, the bookkeeping elsewhere."""
    assert len((PACKAGE / "train.py").read_text().splitlines()) <= 330


def test_no_function_is_longer_than_80_lines_but_the_training_loop():
    """A function a newcomer can hold in mind; the loop stays whole (it reads top to bottom, like nanochat's)."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert long == ["chrono_membench/train.py:_train"], long
