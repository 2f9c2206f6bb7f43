"""--allreduce auto: netsim's model picks the all-reduce, rank 0 decides, every rank runs it.

netsim.calibration.choose in-process (what it picks, deterministically, from which file), then real
mpirun: the pick equals the ring's sum to the bit at p = 1..5 on awkward sizes, and every
rank runs rank 0's pick even when each rank's own calibration would pick another.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from netsim.algorithms import ALGORITHMS
from netsim.calibration import choose
from netsim.cluster import topology
from netsim.errors import InputError

from conftest import mpirun, program, read_json, train

# Networks whose gradient sizes are awkward for p = 2..5 (primes, one less than a power of
# two, fewer elements than ranks), the default job's (64-128-128-10), and a big one.
NETS = ["1-1", "2-3-1", "7-13-5", "64-128-128-10", "300-400-10"]


def spec(overhead_us: float, bandwidth_gbit: float = 100.0) -> dict:
    """A calibrated node in the form `netsim calibrate` writes."""
    out = copy.deepcopy(choose.ESTIMATE)
    out["intra_node"].update(bandwidth_gbit_per_s=bandwidth_gbit)
    out["compute"]["message_overhead_us"] = overhead_us
    return out


def message_steps(schedule) -> int:
    """Messages one after another on the busiest rank: what the overhead per message costs."""
    return sum(max(np.bincount(r.src).max(), np.bincount(r.dst).max()) for r in schedule.rounds)


def write_calibration(directory, data: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / choose.cache_file().name).write_text(topology.to_toml(data))


def test_small_buffers_take_few_messages_and_large_ones_few_bytes():
    small = choose.choose(spec(20.0), 4, 1024)
    large = choose.choose(spec(0.0, 10.0), 4, 16 << 20)
    names = {key.split(" x")[0] for key in small.predicted_s}
    steps = {name: message_steps(ALGORITHMS[name].schedule(4, 1024)) for name in names}
    assert steps[small.algorithm] == min(steps.values()) < steps["ring"]
    sent = {name: ALGORITHMS[name].elements_sent(4, 4 << 20).max() for name in names}
    assert sent[large.algorithm] == min(sent.values()) < sent["tree"]  # the fewest bytes
    for c in (small, large):  # the pick is within MARGIN of the least predicted time
        t = c.predicted_s[choose._key(c.algorithm, c.channels)]
        assert t * (1 - choose.MARGIN) <= min(c.predicted_s.values())


def test_the_choice_is_deterministic_and_lists_every_runnable_candidate():
    a, b = (choose.choose(spec(5.0), 3, 26_186, 4) for _ in range(2))
    assert a == b
    runnable = {n for n, alg in ALGORITHMS.items() if alg.scheduled and alg.runs_over_mpi}
    names = {key.split(" x")[0] for key in a.predicted_s}
    assert names == runnable and "mpi" not in names and "nvls" not in names
    assert {key for key in a.predicted_s if " x" in key} >= {"ring x2", "ring x4"}
    fixed = choose.choose(spec(5.0), 3, 26_186, 4, channels=2)
    assert fixed.channels == 2 and all(key.endswith(" x2") for key in fixed.predicted_s)


def test_a_later_candidate_must_be_margin_faster_and_one_rank_runs_the_ring():
    assert choose.fastest({"ring": 1.0, "hd": 0.96, "rd": 0.97}) == "ring"  # within 5%
    assert choose.fastest({"ring": 1.0, "hd": 0.96, "rd": 0.94}) == "rd"
    assert choose.fastest({"ring": 1.0, "hd": 0.90, "rd": 0.87}) == "hd"  # 3% of the best
    assert choose.fastest({"ring": 1.0, "hd": 0.90, "rd": 0.85}) == "rd"
    one = choose.choose(spec(5.0), 1, 1000)
    assert (one.algorithm, one.channels) == ("ring", 1) and set(one.predicted_s.values()) == {0.0}


def test_several_hosts_get_an_estimated_network_and_say_so():
    c = choose.choose(spec(5.0), 4, 1 << 20, 4, node_of_rank=[0, 0, 1, 1])
    assert c.notes and "estimate" in c.notes[0]
    assert choose.choose(spec(5.0), 4, 1 << 20).notes == []


def test_the_calibration_is_read_from_the_cache_and_a_bad_one_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(choose.CACHE_ENV, str(tmp_path))
    data, source = choose.machine_spec()
    assert source.startswith("built-in estimate") and data["compute"]["cores"] >= 1
    write_calibration(tmp_path, spec(42.0))
    data, source = choose.machine_spec()
    assert source == str(choose.cache_file()) and data["compute"]["message_overhead_us"] == 42.0
    choose.cache_file().write_text("name = [")
    with pytest.raises(InputError, match="cannot be read") as err:
        choose.machine_spec()
    assert "\n" not in str(err.value)


def test_shared_memory_is_a_candidate_and_wins_only_where_it_is_predicted_faster():
    cheap, dear = spec(1.0, 400.0), spec(60.0, 5.0)  # the shared-memory path's rates
    c = choose.choose(spec(20.0), 4, 1 << 20, shm=cheap)
    assert c.transport == "shm" and c.to_dict()["transport"] == "shm"
    assert {k for k in c.predicted_s if "/shm" in k} >= {"ring/shm", "ring/shm x2"}
    line = c.line(1 << 20, 4)
    assert line.startswith(f"{choose._key(c.algorithm, c.channels, 'shm')} (through shared")
    assert f"{c.algorithm} " in line.split("others at best: ")[1]  # its messages, beside it
    assert choose.choose(spec(20.0), 4, 1 << 20, shm=dear).transport == "mpi"
    asked = choose.choose(spec(20.0), 4, 1 << 20, shm=cheap, transport="mpi")
    assert asked.transport == "mpi" and not any("/shm" in k for k in asked.predicted_s)
    ring = choose.choose(spec(20.0), 4, 1 << 20, shm=cheap, channels=1, algorithm="ring")
    assert set(ring.predicted_s) == {"ring", "ring/shm"} and ring.algorithm == "ring"
    # shm asked for where only the messages are calibrated: priced at their rates, said
    unknown = choose.choose(spec(20.0), 4, 1 << 20, transport="shm")
    assert unknown.transport == "shm" and "not calibrated" in unknown.notes[0]
    # equal rates: messages stay (listed first; shm must be MARGIN faster)
    assert choose.choose(spec(5.0), 4, 1 << 20, shm=spec(5.0)).transport == "mpi"


def test_the_shared_memory_calibration_is_read_from_beside_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(choose.CACHE_ENV, str(tmp_path))
    specs, source = choose.machine_specs()
    assert source.startswith("built-in estimate") and set(specs) == {"mpi", "shm"}
    assert specs["shm"]["compute"]["cores"] == specs["mpi"]["compute"]["cores"] >= 1
    write_calibration(tmp_path, spec(42.0))  # an older calibration: messages only
    specs, _ = choose.machine_specs()
    assert set(specs) == {"mpi"}
    choose.shm_file(choose.cache_file()).write_text(topology.to_toml(spec(3.0)))
    specs, source = choose.machine_specs()
    # the file's rates, and what it is: transfers that read the peer's memory
    assert source == str(choose.cache_file())
    assert specs["shm"]["compute"] == {**spec(3.0)["compute"], "shared_memory": True}


class RootAlone:
    """Rank 0 of a world of p ranks, its broadcasts the identity (resolve in-process)."""

    rank = local_rank = 0
    is_root = True

    def __init__(self, p: int):
        self.world_size = self.local_size = p

    def bcast(self, value):
        return value


def test_transport_auto_is_the_models_pick_and_messages_where_there_is_no_choice(
    tmp_path, monkeypatch
):
    from allreduce_train.config.config import Config
    from allreduce_train.exchange import autoselect

    monkeypatch.setenv(choose.CACHE_ENV, str(tmp_path))
    write_calibration(tmp_path, spec(20.0))
    choose.shm_file(choose.cache_file()).write_text(topology.to_toml(spec(1.0, 400.0)))
    world, nodes, widths = RootAlone(4), [0] * 4, [64, 128, 128, 10]

    def resolve(on_gpu=None, **options):
        return autoselect.resolve(Config(device="cpu", **options), world, nodes, widths, on_gpu)

    both = resolve()
    assert both.transport == both.allreduce_choice["transport"] == "shm"
    assert "through shared memory" in both.allreduce_choice["why"]
    named = resolve(allreduce="ring")  # only the transport is picked, nothing recorded
    assert (named.allreduce, named.channels, named.transport) == ("ring", 1, "shm")
    assert named.allreduce_choice is None
    assert resolve(allreduce="mpi").transport == "mpi"  # the library moves its own bytes
    on_gpu = resolve(on_gpu=True)
    assert on_gpu.transport == "mpi"
    assert not any("/shm" in k for k in on_gpu.allreduce_choice["predicted_s"])
    told = resolve(transport="mpi")
    assert told.transport == "mpi" and told.allreduce_choice["transport"] == "mpi"
    asked = Config(device="cpu", allreduce="ring", transport="shm")
    assert autoselect.resolve(asked, world, nodes, widths) is asked
    downpour = resolve(mode="async")
    assert (downpour.allreduce, downpour.transport) == ("ring", "mpi")


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
def test_every_rank_runs_rank_0s_pick_and_it_sums_as_the_ring_does(tmp_path, p):
    # rank 0's calibration makes rounds dear (a log-round algorithm wins small buffers), the
    # others' makes them free and bytes dear: a rank choosing for itself would differ
    write_calibration(tmp_path / "0", spec(50.0))
    for rank in range(1, p):
        write_calibration(tmp_path / str(rank), spec(0.0, 1.0))
    out = tmp_path / "pick"
    result = mpirun(p, [program("auto_pick.py"), str(out), str(tmp_path), *NETS], timeout=90)
    assert result.returncode == 0, result.output
    reports = [json.loads((tmp_path / f"pick.{r}").read_text()) for r in range(p)]
    for net, mine in zip(NETS, reports[0]):
        assert mine["equals_ring"] and mine["identical_on_all_ranks"], (net, mine)
        assert mine["topology"] == str(tmp_path / "0" / choose.cache_file().name)
        for theirs in reports[1:]:
            assert theirs[NETS.index(net)] == mine
    if p >= 3:  # rank 0's calibration decided: with rounds dear, small buffers leave the ring
        assert reports[0][0]["algorithm"] != "ring"


@pytest.mark.mpi
@pytest.mark.slow
def test_a_training_run_says_what_auto_picked_and_records_why(tmp_path):
    result = train(3, tmp_path, "--allreduce", "auto", "--steps", "4", timeout=120)
    assert result.returncode == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("  auto     ")]
    assert len(lines) == 1 and "built-in estimate" in lines[0]  # the tests have no calibration
    config = read_json(tmp_path / "config.json")
    choice = config["config"]["allreduce_choice"]
    assert config["config"]["allreduce"] == choice["algorithm"] in lines[0]
    assert lines[0] == "  auto     " + choice["why"]
    assert config["config"]["channels"] == choice["channels"]
    assert config["config"]["transport"] == choice["transport"] in ("mpi", "shm")
    assert choice["predicted_s"] and choice["world_size"] == 3
    summary = read_json(tmp_path / "summary.json")
    assert summary["allreduce"] == choice["algorithm"]
    report = mpirun(0, ["-m", "netsim", "report", str(tmp_path)], timeout=60)
    assert report.returncode == 0 and "(= " in report.stdout  # bytes = its analytic count


def test_the_line_says_when_a_pick_was_kept_over_one_predicted_a_little_faster():
    """The margin was silent: 'ring, predicted 66.6 us (the others at best: recursive-doubling
    64.0 us ...)' read as a contradiction."""
    kept = choose.Choice("ring", 1, {"ring": 66.6e-6, "recursive-doubling": 64.0e-6}, "m")
    assert kept.line(1 << 10, 4).endswith(
        "model: m; kept over those predicted less than 5% faster, within the model's error)"
    )
    best = choose.Choice("ring", 1, {"ring": 60.0e-6, "recursive-doubling": 64.0e-6}, "m")
    assert best.line(1 << 10, 4).endswith("model: m)")
