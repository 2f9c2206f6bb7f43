"""The architecture, read off the code: who may import whom (the import graph, from the ast of
every module, imports inside functions included), and the size of modules."""

import ast
import re

import pytest

from importgraph import GRAPH, PACKAGES, ROOT, importers, modules, within

# What each netsim package may import of ours, besides itself (its __init__.py says why).
NETSIM_MAY_IMPORT = {
    "netsim.algorithms": {"netsim.errors"},
    "netsim.cluster": {"netsim.errors"},
    "netsim.record": {"netsim.errors"},
    "netsim.report": {"netsim.errors", "netsim.algorithms", "netsim.record"},
    "netsim.sim": {
        "netsim.errors",
        "netsim.algorithms",
        "netsim.cluster",
        "netsim.record",
        "netsim.report",
        "launch",
    },
}


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


def test_only_comm_imports_mpi4py():
    assert importers("mpi4py") == {"allreduce_train.comm"}


def test_only_backend_imports_cupy():
    assert importers("cupy") | importers("cupyx") == {"allreduce_train.backend"}


@pytest.mark.parametrize("forbidden", ["mpi4py", "cupy", "cupyx", "allreduce_train"])
def test_netsim_never_imports_mpi_a_gpu_library_or_the_training_program(forbidden):
    assert not {name for name in importers(forbidden) if within(name, "netsim")}


def test_launch_imports_nothing_of_ours():
    ours = [
        i
        for name in GRAPH
        if within(name, "launch")
        for i in GRAPH[name]
        if any(within(i, p) for p in PACKAGES) and not within(i, "launch")
    ]
    assert not ours


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
