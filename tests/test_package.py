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
    (the data CLI is experiments/inspect_data.py: an entry point may read the config, a folder may not)."""
    graph = module_imports()
    back = []
    for folder in {m.rsplit(".", 1)[0] for m in graph if m.count(".") >= 2}:
        inside = {m for m in graph if m == folder or m.startswith(folder + ".")}
        for module in sorted(inside):
            back += [f"{module} → {dep} → {sorted(graph[dep] & inside)}" for dep in sorted(graph[module] - inside)
                     if graph.get(dep, set()) & inside]
    assert not back, back


# The package's floors, lowest first: a module may import its own floor and the ones below, never one above (nanochat
# has 5). A new module takes its place here.
FLOORS = [
    # names and pure functions: no harness state
    {"chrono_membench", "errors", "metric_keys", "mfu", "distributed", "net", "chrono", "chrono.*", "data", "data.rdata"},
    {"run_dir", "saes", "attention_rows", "registry", "hook_names"},  # paths, architectures, metrics, hook names
    {"data.sources", "data.stream", "data.plants", "data.prefetch", "hooks"},  # text and hook points
    {"config", "config_docs"},
    {"model", "optim", "probes", "batches", "safety", "checkpoint", "sae", "crosscoder"},  # what a run is made of
    {"probe_eval", "evaluation", "latent_records", "artifacts", "panels", "logging", "restore"},  # instruments
    {"train"},  # the loop
]


def floor_of(module: str) -> int:
    name = module.removeprefix("chrono_membench.") if module != "chrono_membench" else module
    found = [i for i, floor in enumerate(FLOORS)
             if name in floor or any(f.endswith(".*") and name.startswith(f[:-1]) for f in floor)]
    assert found, f"{module} has no floor: give it one in tests/test_package.py's FLOORS"
    return found[0]


def test_no_module_imports_one_on_a_floor_above_it():
    graph = module_imports()
    up = [f"{m} (floor {floor_of(m)}) → {d} (floor {floor_of(d)})" for m, deps in sorted(graph.items())
          for d in sorted(deps) if floor_of(d) > floor_of(m)]
    assert not up, up


def test_studies_live_outside_the_trainers_package():
    """The planted-signal validation, the planner, the arm comparison and the closing summary are studies/; the data
    CLI is experiments/inspect_data.py; nothing in the package imports a study."""
    for gone in ("validation.py", "plan.py", "comparison.py", "summary.py", "data/__main__.py"):
        assert not (PACKAGE / gone).exists(), gone
    for study in ("planted.py", "plan.py", "comparison.py", "summary.py"):
        assert (ROOT / "studies" / study).exists(), study
    assert not [p for p in PACKAGE.rglob("*.py") if re.search(r"^\s*(from|import) studies", p.read_text(), re.M)]


def test_no_function_takes_more_than_8_parameters_unless_a_library_sets_its_signature():
    forced = {"chrono_membench/attention_rows.py:attention"}  # transformers' attention-function interface
    wide = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs] + [x.arg for x in (a.vararg, a.kwarg) if x]
                if len([n for n in names if n not in ("self", "cls")]) > 8:
                    wide.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert sorted(wide) == sorted(forced), wide


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
