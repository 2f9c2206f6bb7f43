"""netsim replay of a bucketed run (netsim.sim.predict.replay_buckets): each bucket issued
when the run had it ready, on one stream, at the modelled cost of its size, so that a
replay splits communication into exposed and hidden as training does; with overlap off
every bucket waits for backward's end. By hand on synthetic timings, then a real run under
mpirun replayed on many modelled ranks."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from netsim import algorithms
from netsim.cluster import topology
from netsim.errors import InputError
from netsim.record import rundir
from netsim.report import traffic
from netsim.sim import predict, predict_text

from conftest import mpirun, train

MS = 1_000_000  # ns
MIB = 1 << 20


def synthetic_run(readies, backward_ms=10, update_ms=2, picks=None):
    """Two ranks, one step per entry of readies ([rank][bucket] ready, ms from the step's
    start); buckets of 1 MiB and 2 MiB, float32."""
    sizes = [MIB, 2 * MIB]
    config = {
        "world_size": 2,
        "nparams": sum(sizes) // 4,
        "buffer_bytes": sum(sizes),
        "segments": None,
        "overlap": True,
        "buckets": [
            {"offset": 2 * MIB, "bytes": MIB, "layer": 1},
            {"offset": 0, "bytes": 2 * MIB, "layer": 0},
        ],
        "config": {"allreduce": "ring", "channels": 1},
    }
    if picks:
        config["config"]["allreduce_choice"] = {
            "buckets": [{"bytes": n, "algorithm": a, "channels": 1} for n, a in zip(sizes, picks)]
        }
    records, starts = [[], []], []
    for step, ready in enumerate(readies):
        t0 = step * 100 * MS
        starts.append([t0 / 1e9] * 2)
        for rank in (0, 1):
            t_comm = t0 + backward_ms * MS
            records[rank].append(
                {
                    "step": step,
                    "t_start_ns": t0,
                    "t_comm_ns": t_comm,
                    "t_comm_end_ns": t_comm + MS,
                    "t_end_ns": t_comm + MS + update_ms * MS,
                    "compute_s": (backward_ms + update_ms) / 1e3,
                    "exposed_s": 1e-3,
                    "hidden_s": 4e-3,
                    "buckets": [
                        {"ready_ns": t0 + r * MS, "start_ns": t0 + r * MS, "end_ns": t0 + r * MS}
                        for r in ready[rank]
                    ],
                }
            )
    run = SimpleNamespace(
        algorithm=algorithms.RING,
        steps=np.arange(len(readies)),
        table={"samples": np.full((len(readies), 2), 32.0)},
        times={"t_start": np.array(starts), "t_end": np.array(starts) + 0.013},
    )
    return config, run, records


@pytest.fixture
def one_ms_per_mib(monkeypatch):
    """The collective's model replaced by a cost known by hand: 1 ms per MiB."""
    calls = []

    def cost(topo, algorithm, p, nelems, itemsize, compute_s, segments, channels):
        calls.append((algorithm.name, p, nelems * itemsize))
        return {"allreduce_time_s_median": nelems * itemsize / MIB * 1e-3}

    monkeypatch.setattr(predict, "predict", cost)
    return calls


def test_two_buckets_by_hand_overlap_on_and_off(one_ms_per_mib):
    # bucket 0 (1 MiB, 1 ms) ready at 4 ms (rank 0) and 5 ms (rank 1): runs 5..6 ms; bucket 1
    # (2 MiB, 2 ms) ready at 9 ms: runs 9..11 ms; backward ends at 10 ms, the update 2 ms
    config, run, records = synthetic_run([[[4, 9], [5, 9]]])
    topo = topology.load("dgx-h100")
    on = predict.replay_buckets(config, run, records, topo)
    at = [b[k] for b in on["buckets"] for k in ("ready_s", "start_s", "end_s")]
    assert at == pytest.approx([5e-3, 5e-3, 6e-3, 9e-3, 9e-3, 11e-3])
    assert on["compute_s"] == pytest.approx(12e-3)  # backward 10 + update 2
    assert on["step_time_s"] == pytest.approx(13e-3)  # last end 11 + update 2
    assert on["exposed_comm_s"] == pytest.approx(1e-3)  # last end - backward end
    assert on["hidden_comm_s"] == pytest.approx(2e-3)  # 3 ms of all-reduces - 1 exposed
    assert on["comm_busy_s"] == pytest.approx(3e-3) and on["overlap"] is True
    assert on["samples_per_s"] == pytest.approx(64 / 13e-3)
    off = predict.replay_buckets(config, run, records, topo, overlap=False)
    at = [b[k] for b in off["buckets"] for k in ("start_s", "end_s")]
    assert at == pytest.approx([10e-3, 11e-3, 11e-3, 13e-3])
    assert off["exposed_comm_s"] == pytest.approx(3e-3)  # all of it
    assert off["hidden_comm_s"] == 0.0 and off["step_time_s"] == pytest.approx(15e-3)
    # on is what the run did, which measured the same (a 13 ms step, 1 ms exposed); off not
    assert off["errors"] == {}
    for key in ("step_time_s", "compute_s", "exposed_comm_s", "samples_per_s"):
        assert on["errors"][key] == pytest.approx(0.0, abs=1e-12), key
    text = predict_text.replay_text(off)
    assert "exposed communication" in text and "the run's was on" in text


def test_the_median_step_and_many_ranks(one_ms_per_mib):
    readies = [[[4, 9], [4, 9]], [[4, 9], [4, 9]], [[1, 20], [1, 20]]]  # one slow step
    config, run, records = synthetic_run(readies)
    out = predict.replay_buckets(config, run, records, topology.load("dgx-h100"), ranks=64)
    assert out["world_size"] == 64 and out["steps_replayed"] == 3
    assert {p for _, p, _ in one_ms_per_mib} == {64}
    assert out["exposed_comm_s"] == pytest.approx(1e-3)  # the median step's
    assert out["samples_per_s"] == pytest.approx(32 * 64 / 13e-3)
    assert out["errors"] == {}  # 64 ranks were not measured


def test_per_bucket_picks_unless_an_algorithm_is_asked_for(one_ms_per_mib):
    config, run, records = synthetic_run([[[4, 9], [4, 9]]], picks=["recursive-doubling", "ring"])
    topo = topology.load("dgx-h100")
    out = predict.replay_buckets(config, run, records, topo)
    assert [b["algorithm"] for b in out["buckets"]] == ["recursive-doubling", "ring"]
    assert out["algorithm"] == "recursive-doubling, ring"
    tree = predict.replay_buckets(config, run, records, topo, algorithms.get("tree"))
    assert [b["algorithm"] for b in tree["buckets"]] == ["tree", "tree"]


def test_each_bucket_costs_what_predict_says_for_its_size():
    config, run, records = synthetic_run([[[4, 9], [4, 9]]])
    topo = topology.load("dgx-h100")
    out = predict.replay_buckets(config, run, records, topo, ranks=16)
    for b in out["buckets"]:
        alone = predict.predict(topo, algorithms.RING, 16, b["bytes"] // 4, 4, channels=1)
        assert b["allreduce_s"] == alone["allreduce_time_s_median"] > 0
    assert predict.bucketed(config) and not predict.bucketed({**config, "buckets": [{}]})


def test_records_without_bucket_timings_are_one_line():
    config, run, records = synthetic_run([[[4, 9], [4, 9]]])
    records[1][0]["buckets"] = None
    with pytest.raises(InputError, match="do not time its 2 buckets"):
        predict.replay_buckets(config, run, records, topology.load("dgx-h100"))


@pytest.mark.slow
@pytest.mark.mpi
def test_a_bucketed_run_replayed_on_many_ranks_overlap_hides_communication(tmp_path):
    result = train(
        2, tmp_path, "--layers", "64,512,512,10", "--steps", "6", "--allreduce", "ring",
        "--bucket-mb", "0.25", "--first-bucket-mb", "0.1",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    config, records, totals = rundir.load(str(tmp_path))
    assert len(config["buckets"]) == 2 and config["overlap"] is True
    result = mpirun(0, ["-m", "netsim", "replay", str(tmp_path), "--topology", "dgx-h100"])
    assert result.returncode == 0, result.output
    assert "exposed communication" in result.stdout and "hidden communication" in result.stdout
    result = mpirun(
        0, ["-m", "netsim", "replay", str(tmp_path), "--topology", "dgx-h100", "--json"]
    )
    out = json.loads(result.stdout)
    assert out["world_size"] == 2 and len(out["buckets"]) == 2 and "step_time_s" in out["errors"]
    merged = traffic.merge(config, records, complete=totals is not None)
    topo = topology.load("dgx-h100")
    on = predict.replay_buckets(config, merged, records, topo, ranks=64)
    off = predict.replay_buckets(config, merged, records, topo, ranks=64, overlap=False)
    assert on["exposed_comm_s"] < off["exposed_comm_s"] == pytest.approx(off["comm_busy_s"])
    assert on["hidden_comm_s"] > 0 == off["hidden_comm_s"]
    assert on["step_time_s"] < off["step_time_s"]
