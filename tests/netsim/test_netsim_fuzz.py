"""hypothesis against python -m netsim predict | sweep, in process: topology files mutated from
the presets (keys dropped, changed or added, values of every type, the text cut short) and
random mixes of options. Each ends with exit 0, clean, or exit 2 and one line on stderr;
never an exception (a bug's traceback), a warning or a NaN in the figures."""

import contextlib
import io
import json
import tomllib
import warnings

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from netsim import __main__ as cli
from netsim.cluster import topology

PRESETS = {p.stem: tomllib.loads(p.read_text()) for p in topology.PRESETS_DIR.glob("*.toml")}

EXTREME_INTS = [0, -1, 2**17, 2**17 + 1, 2**31, 2**63, 10**30]
EXTREME_FLOATS = [float("nan"), float("inf"), -float("inf"), -0.0, 1e-308, 1e308, 5e-324]
scalars = st.one_of(
    st.integers(-3, 12),
    st.sampled_from(EXTREME_INTS),
    st.floats(-10, 1e4),
    st.sampled_from(EXTREME_FLOATS),
    st.booleans(),
    st.text(max_size=8),
    st.sampled_from(["all-to-all", "pcie-tree", "fat-tree", "torus", "rails", "hopper", "block"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3))


def keys_of(doc: dict):
    return [(None, k) for k in doc] + [
        (t, k) for t, table in doc.items() if isinstance(table, dict) for k in table
    ]


@st.composite
def documents(draw) -> dict:
    """A preset with a few keys dropped, changed or added (a table may become a value)."""
    doc = json.loads(json.dumps(PRESETS[draw(st.sampled_from(sorted(PRESETS)))]))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        table, key = draw(st.sampled_from(keys_of(doc)))
        where = doc if table is None else doc[table]
        action = draw(st.sampled_from(["drop", "set", "add"]))
        if action == "drop":
            where.pop(key, None)
        elif action == "set":
            where[key] = draw(values)
        else:
            name = draw(st.one_of(st.sampled_from(["compute", "cores", "dims", "gpu"]), st.text()))
            where[name] = draw(values)
    return doc


@st.composite
def topology_texts(draw) -> str:
    text = topology.to_toml(draw(documents()))
    if draw(st.integers(0, 9)) == 0:  # a file cut short, or junk added
        text = text[: draw(st.integers(0, len(text)))] + draw(st.text(max_size=4))
    return text


RANKS = (st.integers(2, 8), [-1, 0, 2**17, 10**30, "x", ""])
# option: (good values, bad ones)
OPTIONS = {
    "--params": (st.integers(1, 10**6), [0, -1, 2**40, 2**40 + 1, "1e3"]),
    "--compute-ms": (st.floats(0, 100), [-1.0, *EXTREME_FLOATS, "a"]),
    "--chunks": (st.integers(1, 3), [-1, 0, 65]),
    "--channels": (st.integers(1, 3), [-1, 0, 65]),
    "--dtype": (st.sampled_from(["float32", "float64"]), ["float16"]),
}
OWN = {
    "predict": {
        "--ranks": RANKS,
        "--algorithm": (st.sampled_from(["ring", "tree", "parameter-server"]), ["mpi"]),
    },
    "sweep": {
        "--ranks": (st.lists(RANKS[0], min_size=1, max_size=3), [[2, "x"], [1, 4], [2, 10**30]]),
        "--algorithms": (st.just("ring,hierarchical-ring,double-binary-tree"), ["r,,x"]),
    },
}


@st.composite
def commands(draw) -> list[str]:
    """predict or sweep with some of their options (--params, and --ranks for a small job,
    always), all good but, one time in three, one of them."""
    name = draw(st.sampled_from(sorted(OWN)))
    choices = {**OPTIONS, **OWN[name]}
    given = {
        k: draw(good)
        for k, (good, _) in choices.items()
        if k in ("--ranks", "--params") or draw(st.booleans())
    }
    if draw(st.integers(0, 2)) == 0:
        key = draw(st.sampled_from(sorted(choices)))
        given[key] = draw(st.sampled_from(choices[key][1]))
    argv = [name]
    for key, value in given.items():
        argv += [key, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return argv


def fail_on_nan(constant):
    raise AssertionError(f"{constant} in the JSON output")


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "topology.toml"


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(text=topology_texts(), command=commands(), as_json=st.booleans())
def test_any_topology_and_options_end_in_a_figure_or_one_line(path, text, command, as_json):
    path.write_text(text)
    argv = [*command, "--topology", str(path), *(["--json"] if as_json else [])]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a numpy warning: an inf or a NaN on its way out
            code = cli.main(argv)
    event(f"exit {code}")
    if code == 2:
        event("a bad topology" if str(path) in err.getvalue() else "a bad option")
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith("netsim: error: "), lines
        return
    assert code == 0 and err.getvalue() == "", (code, err.getvalue())
    if as_json:
        json.loads(out.getvalue(), parse_constant=fail_on_nan)
