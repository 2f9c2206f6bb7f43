"""The architecture, read off the code: who may import whom (the import graph, from the ast of
every module, imports inside functions included), the one process netsim starts by name, and
the size of modules. allreduce_train's own rooms are held in tests/allreduce_train/test_rooms.py."""

import ast
import re
import sys
import tomllib

import pytest

from importgraph import GRAPH, PACKAGES, ROOT, importers, is_module, modules, within

# What each netsim package may import of ours, besides itself (its __init__.py says why).
NETSIM_MAY_IMPORT = {
    "netsim.algorithms": {"netsim.errors"},
    "netsim.cluster": {"netsim.errors"},
    "netsim.record": {"netsim.errors"},
    "netsim.report": {"netsim.errors", "netsim.algorithms", "netsim.record"},
    "netsim.workload": {"netsim.errors", "netsim.record"},
    "netsim.sim": {
        "netsim.errors",
        "netsim.algorithms",
        "netsim.cluster",
        "netsim.report",
        "netsim.workload",
    },
    "netsim.calibration": {
        "netsim.errors",
        "netsim.algorithms",
        "netsim.cluster",
        "netsim.record",
        "netsim.report",
        "netsim.sim",
        "netsim.workload",
        "launch",
    },
}
# What each module of launch may import of ours (launch/__init__.py says why): the emulator
# reads topologies through netsim's loader; the rest, which netsim's calibration imports,
# nothing, so that there is no cycle.
LAUNCH_MAY_IMPORT = {"launch.emulate": {"netsim.cluster"}}
# The processes a module starts by module name (python -m NAME): links the imports miss.
STARTS = {"netsim.calibration.measure": {"allreduce_train.probe"}}


def test_the_graph_sees_every_module_and_its_imports():
    assert {
        "allreduce_train.comm",
        "netsim.algorithms.ring",
        "netsim.record.recorder",
        "launch.local",
    } <= set(GRAPH)
    assert "mpi4py" in GRAPH["allreduce_train.comm"]  # a relative import resolves too:
    assert "netsim.algorithms.rounds" in GRAPH["netsim.algorithms.ring"]
    assert "netsim.algorithms" in GRAPH["netsim.report.traffic"]  # from netsim import algorithms


@pytest.mark.parametrize("forbidden", ["mpi4py", "cupy", "cupyx", "allreduce_train"])
def test_netsim_never_imports_mpi_a_gpu_library_or_the_training_program(forbidden):
    assert not {name for name in importers(forbidden) if within(name, "netsim")}


def test_launch_imports_of_ours_only_netsims_topology_loader_and_only_in_the_emulator():
    for name in (n for n in GRAPH if within(n, "launch")):
        ours = {i for i in GRAPH[name] if any(within(i, p) for p in PACKAGES)}
        allowed = LAUNCH_MAY_IMPORT.get(name, set()) | {"launch"}
        bad = {i for i in ours if not any(within(i, a) for a in allowed)}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_in_netsim_only_calibration_imports_launch():
    found = {n for n in importers("launch") if within(n, "netsim")}
    assert found and all(within(n, "netsim.calibration") for n in found), sorted(found)


def _strings(path) -> list[str]:
    """The string constants of a module's code (f-strings' parts too), not its docstrings."""
    tree = ast.parse(path.read_text())
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def test_netsim_names_allreduce_train_only_as_the_probe_it_starts():
    """netsim never imports allreduce_train, but calibration starts its probe under mpirun,
    `python -m allreduce_train.probe`: the one place netsim's code names one of its modules
    (docstrings aside; "allreduce_train" alone, as in a file's magic or a pip extra, is not a
    module). That name is a module of the tree that runs as a program."""
    named: dict[str, set[str]] = {}
    for name, path in modules():
        if within(name, "netsim"):
            for value in _strings(path):
                for found in re.findall(r"\ballreduce_train(?:\.\w+)*", value):
                    if "." in found or value.strip() == found:
                        named.setdefault(name, set()).add(found)
    assert named == STARTS
    from netsim.calibration import measure

    argv = measure.probe_argv(2, "probe.json", (), (4096,), 1)
    assert argv[argv.index("-m") + 1] == measure.PROBE == "allreduce_train.probe"
    for started in set().union(*STARTS.values()):
        assert is_module(started), f"{started} is started but is not a module of ours"
        tree = ast.parse(ROOT.joinpath(*started.split(".")).with_suffix(".py").read_text())
        assert any(
            isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body
        ), f'{started} does not run as a program (no `if __name__ == "__main__"`)'


def test_every_third_party_import_of_netsim_and_launch_is_declared():
    """In pyproject.toml's dependencies, or an extra where the import is optional (plots)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]
    names = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("-", "_") for d in declared}
    for name in (n for n in GRAPH if within(n, "netsim") or within(n, "launch")):
        for top in {i.split(".")[0] for i in GRAPH[name]}:
            if top not in sys.stdlib_module_names and top not in PACKAGES:
                assert top in names, f"{name} imports {top}, which pyproject.toml does not declare"


@pytest.mark.parametrize("package", sorted(NETSIM_MAY_IMPORT))
def test_each_netsim_package_imports_only_what_its_docstring_allows(package):
    allowed = NETSIM_MAY_IMPORT[package] | {package}
    for name in (n for n in GRAPH if within(n, package)):
        ours = {i for i in GRAPH[name] if any(within(i, p) for p in PACKAGES)}
        bad = {i for i in ours if not any(within(i, a) for a in allowed)}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_every_package_says_what_it_is_for():
    for package in (p for p in (ROOT / "netsim").rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(package.read_text()))
        assert doc and len(doc) > 100, f"{package} has no docstring worth the name"
    for package in PACKAGES:
        assert ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))


def test_no_module_is_past_300_lines_without_saying_why():
    everything = (
        [p for _, p in modules()]
        + sorted(ROOT.glob("tests/**/*.py"))
        + sorted(ROOT.glob("bench/*.py"))
    )
    for path in everything:
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text)) or ""
        assert text.count("\n") <= 300 or "300 lines" in doc, f"{path}: {text.count(chr(10))} lines"


def test_nothing_in_the_project_refers_to_a_path_outside_it():
    """A user who clones or installs the project has only what is in it (the design too)."""
    files = [*ROOT.glob("*.md"), *ROOT.glob("docs/**/*"), *ROOT.glob("bench/*")]
    for path in [*files, *(p for _, p in modules())]:
        if path.is_file():
            assert not re.search(r"\.\./\w", path.read_text(errors="replace")), path
