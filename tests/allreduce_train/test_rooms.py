"""allreduce_train's rooms and who may import whom, read off the code (tests/importgraph.py):
what allreduce_train/__init__.py and each room's __init__.py say, held here."""

import ast

import pytest

from importgraph import GRAPH, ROOT, importers, within

# What each room may import of ours, besides itself (its __init__.py says the same). netsim's
# errors are everyone's: its loaders raise them.
ROOMS = {
    "allreduce_train.exits": set(),
    "allreduce_train.comm": {"allreduce_train.exits"},
    "allreduce_train.maths": {"allreduce_train.exits"},
    "allreduce_train.guard": {"allreduce_train.exits"},
    "allreduce_train.config": {
        "allreduce_train.exits",
        "allreduce_train.maths",
        "allreduce_train.guard",
        "netsim.algorithms",
    },
    "allreduce_train.exchange": {
        "allreduce_train.exits",
        "allreduce_train.config",
        "allreduce_train.maths",
        "netsim.algorithms",
        "netsim.calibration.choose",
        "netsim.workload.buckets",
    },
    "allreduce_train.run": {
        "allreduce_train.exits",
        "allreduce_train.comm",
        "allreduce_train.config",
        "allreduce_train.maths",
        "allreduce_train.guard",
        "netsim.algorithms",
        "netsim.record",
        "netsim.report",
    },
    "allreduce_train.sync": {
        "allreduce_train.exits",
        "allreduce_train.comm",
        "allreduce_train.config",
        "allreduce_train.maths",
        "allreduce_train.guard",
        "allreduce_train.exchange",
        "allreduce_train.run",
        "netsim.record",
    },
    "allreduce_train.downpour": {
        "allreduce_train.exits",
        "allreduce_train.comm",
        "allreduce_train.config",
        "allreduce_train.maths",
        "allreduce_train.guard",
        "allreduce_train.run",
        "netsim.algorithms",
        "netsim.record",
    },
}
OURS = ("allreduce_train", "netsim", "launch")
EVERYONES = {"netsim.errors"}
# The two programs at the top may import every room.
PROGRAMS = {"allreduce_train", "allreduce_train.__main__", "allreduce_train.probe"}


def ours(name: str) -> set[str]:
    return {i for i in GRAPH[name] if any(within(i, p) for p in OURS)}


def test_every_module_of_allreduce_train_is_in_a_room_or_is_a_program():
    for name in (n for n in GRAPH if within(n, "allreduce_train")):
        assert name in PROGRAMS or any(within(name, room) for room in ROOMS), name


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_each_room_imports_only_what_its_docstring_allows(room):
    allowed = ROOMS[room] | EVERYONES | {room}
    for name in (n for n in GRAPH if within(n, room)):
        bad = {i for i in ours(name) if not any(within(i, a) for a in allowed)}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_each_room_says_what_it_holds_and_what_it_may_import():
    for room in ROOMS:
        path = ROOT.joinpath(*room.split("."))
        if path.is_dir():
            doc = ast.get_docstring(ast.parse((path / "__init__.py").read_text()))
            assert doc and "May import:" in doc, room
            said = doc.split("May import:")[1]
            for allowed in ROOMS[room]:
                assert allowed.rpartition(".")[2] in said, f"{room} does not name {allowed}"


def test_no_import_cycle_between_modules():
    mods = {n for n in GRAPH if within(n, "allreduce_train")}
    edges = {n: {i for i in GRAPH[n] if i in mods and i != n} for n in mods}
    state: dict[str, int] = {}

    def visit(n, path):
        state[n] = 1
        for m in edges[n]:
            assert state.get(m) != 1, " -> ".join([*path, n, m])
            if m not in state:
                visit(m, [*path, n])
        state[n] = 2

    for n in sorted(mods):
        if n not in state:
            visit(n, [])


def test_only_comm_imports_mpi4py():
    assert importers("mpi4py") == {"allreduce_train.comm"}


def test_only_the_backend_and_nccl_import_cupy():
    assert importers("cupy") | importers("cupyx") == {
        "allreduce_train.maths.backend",
        "allreduce_train.exchange.nccl",
    }


def test_only_netsim_record_knows_the_step_file_layout():
    """Executors store readings through the recorder's writer (readings(), copy_times()),
    never into the mapped file's slots themselves."""
    for path in ROOT.joinpath("allreduce_train").rglob("*.py"):
        text = path.read_text()
        for word in (".slots", "rec.base", "recorder.base", "copy_slot", "stepfile"):
            assert word not in text, f"{path} uses {word}"
