"""A damaged run directory is reported as far as it can be read, clearly marked, or refused
in one line (exit 2); never a traceback. The base is one real 2-rank run of 6 steps."""

import contextlib
import io
import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsim.__main__ import main
from netsim.record import stepfile

from conftest import train

pytestmark = [pytest.mark.mpi, pytest.mark.slow]  # each test needs the base run

FILES = ("config.json", "summary.json", "steps-rank0.bin", "steps-rank1.bin", "network.json")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("base") / "run"
    result = train(2, run_dir, "--steps", "6")
    assert result.returncode == 0, result.output
    return run_dir


def report(run_dir, *options):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["report", str(run_dir), *options])
    return code, out.getvalue(), err.getvalue()


def copy(base, tmp_path, emulated=False):
    shutil.copytree(base, tmp_path / "run")
    if emulated:  # as launch.emulate leaves it (tests/netsim/calibration/test_emulated.py)
        net = {"nodes": 1, "ranks_per_node": 2, "node_mbit_per_s": 200.0, "mtu": 1500}
        link = {"link": "node0.up", "bytes": 1000, "packets": 10, "drops": 0, "overlimits": 0}
        (tmp_path / "run" / "network.json").write_text(
            json.dumps({"emulated": net, "links": [link]})
        )
    return tmp_path / "run"


def test_sound_run_is_complete(base):
    code, out, _ = report(base, "--json")
    figures = json.loads(out)
    assert code == 0 and figures["complete"] and figures["steps_by_rank"] == [6, 6]
    assert "damage" not in figures


def middle_of_the_steps(data: bytes) -> int:
    """Where the middle step frame starts: past the header and the messages frame, whose
    size depends on what the run recorded."""
    offset, steps = 0, []
    while offset + stepfile.FRAME.size <= len(data):
        size, kind = stepfile.FRAME.unpack_from(data, offset)
        if size == 0:
            break
        if kind == stepfile.STEP:
            steps.append(offset)
        offset += size
    return steps[len(steps) // 2]


def test_truncated_rank0_file_is_damaged_not_complete(base, tmp_path):
    run = copy(base, tmp_path)
    path = run / "steps-rank0.bin"
    data = path.read_bytes()
    path.write_bytes(data[: middle_of_the_steps(data) + 16])
    code, out, _ = report(run, "--json")
    figures = json.loads(out)
    assert code == 0 and not figures["complete"]
    kept = figures["steps_by_rank"][0]
    assert 0 < kept < 6 and figures["steps_by_rank"][1] == 6 and figures["steps_recorded"] == kept
    assert figures["damage"] == [f"{path}: truncated, holds {kept} of the run's 6 steps"]
    code, out, _ = report(run)
    assert code == 0 and "DAMAGED RUN" in out and f"holds {kept} of the run's 6 steps" in out


def test_garbage_in_a_step_file_keeps_the_steps_before_it(base, tmp_path):
    run = copy(base, tmp_path)
    path = run / "steps-rank1.bin"
    data = bytearray(path.read_bytes())
    at = middle_of_the_steps(data)
    at += stepfile.FRAME.unpack_from(data, at)[0] - 4  # its closing size, the next's size
    data[at : at + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    code, out, _ = report(run, "--json")
    figures = json.loads(out)
    assert code == 0 and not figures["complete"] and 0 < figures["steps_by_rank"][1] < 6
    assert figures["damage"][0].startswith(f"{path}: damaged at byte ")


@pytest.mark.parametrize(
    "damage,words",
    [
        (lambda run: (run / "steps-rank1.bin").unlink(), "steps-rank1.bin: missing, holds 0"),
        (lambda run: (run / "summary.json").write_text("{not json"), "summary.json: not valid"),
        (lambda run: (run / "summary.json").write_text('{"steps": "six"}'), "steps is 'six'"),
    ],
)
def test_damaged_files_named_and_the_rest_reported(base, tmp_path, damage, words):
    run = copy(base, tmp_path)
    damage(run)
    code, out, err = report(run)
    assert code == 0 and not err and "DAMAGED RUN" in out and words in out, out


@pytest.mark.parametrize(
    "damage,words",
    [
        (lambda run: (run / "config.json").unlink(), "not a run directory (no config.json)"),
        (lambda run: (run / "config.json").write_text("[]"), "expected a JSON object"),
        (
            lambda run: (run / "config.json").write_text(
                (run / "config.json").read_text().replace('"world_size": 2', '"world_size": 1e9')
            ),
            "bad world_size, node_of_rank",
        ),
    ],
)
def test_unreadable_config_is_one_line(base, tmp_path, damage, words):
    run = copy(base, tmp_path)
    damage(run)
    code, out, err = report(run)
    assert code == 2 and not out and err.count("\n") == 1 and words in err, err


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
damages = st.one_of(
    st.tuples(st.just("truncate"), st.sampled_from(FILES), st.floats(0, 1)),
    st.tuples(
        st.just("flip"),
        st.sampled_from(FILES),
        st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=4),
    ),
    st.tuples(st.just("delete"), st.sampled_from(FILES), st.none()),
    st.tuples(st.just("json"), st.sampled_from(FILES), json_values),
    # one value of a JSON file replaced, its n-th key's (in config.json's "config" too)
    st.tuples(
        st.just("key"),
        st.sampled_from(("config.json", "summary.json", "network.json")),
        st.tuples(st.integers(0, 99), st.booleans(), json_values),
    ),
)


def apply(run, damage) -> None:
    what, name, arg = damage
    path = run / name
    data = path.read_bytes() if path.exists() else b""
    if what == "truncate":
        path.write_bytes(data[: int(len(data) * arg)])
    elif what == "flip" and data:
        data = bytearray(data)
        for where, mask in arg:
            data[min(int(len(data) * where), len(data) - 1)] ^= mask
        path.write_bytes(bytes(data))
    elif what == "delete":
        path.unlink(missing_ok=True)
    elif what == "json":
        path.write_text(json.dumps(arg))
    elif what == "key" and isinstance(whole := _json(data), dict):
        index, nested, new = arg
        inner = whole.get({"config.json": "config", "network.json": "emulated"}.get(name))
        value = inner if nested and isinstance(inner, dict) else whole
        if value:
            value[sorted(value)[index % len(value)]] = new
            path.write_text(json.dumps(whole))


def _json(data: bytes):
    try:
        return json.loads(data)
    except ValueError:
        return None


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(damages, min_size=1, max_size=3), st.booleans(), st.booleans())
def test_fuzzed_run_directory_reports_or_refuses_in_one_line(
    base, tmp_path_factory, damage, as_json, emulated
):
    run = copy(base, tmp_path_factory.mktemp("fuzz"), emulated)
    for one in damage:
        apply(run, one)
    code, out, err = report(run, *(["--json"] if as_json else []))
    if code == 0:
        assert out and not err
        if as_json:
            json.loads(out)
    else:
        assert code == 2 and not out and err.count("\n") == 1 and err.startswith("netsim: error: ")
