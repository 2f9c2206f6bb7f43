"""Time to accuracy on a cluster we do not have (issue 31, part 4): a run's steps to the target,
measured here, times its step replayed there (netsim.sim.predict.step_there), whose buckets
cost their compression's collectives on the modelled ranks plus the compression's compute
as measured. By hand on synthetic records, with the network's cost stubbed."""

from types import SimpleNamespace

import numpy as np
import pytest

from netsim import algorithms
from netsim.algorithms import compression as methods
from netsim.cluster import topology
from netsim.report import compare
from netsim.sim import predict, predict_text

MS = 1_000_000  # ns
MIB = 1 << 20


def compressed_run(compress_ms, method="fp16", backward_ms=10, update_ms=2, overlap=False):
    """Two ranks, one bucket of 1 MiB of float32 (no layers said: one vector), one step per
    entry of compress_ms ([rank] (before, after) its collective, in ms); the bucket's
    compute rounds recorded as exchange.compress records them, its collective's round
    between them."""
    config = {
        "world_size": 2,
        "nparams": MIB // 4,
        "buffer_bytes": MIB,
        "segments": None,
        "overlap": overlap,
        "buckets": [{"offset": 0, "bytes": MIB, "layer": 0}],
        "config": {"allreduce": "ring", "channels": 1, "compress": method, "dtype": "float32"},
    }
    records, starts = [[], []], []
    for step, per_rank in enumerate(compress_ms):
        t0 = step * 100 * MS
        starts.append([t0 / 1e9] * 2)
        for rank, (before, after) in enumerate(per_rank):
            t_comm = t0 + backward_ms * MS
            a = t_comm + round(before * MS)  # the collective's one round: 1 ms measured here
            b = a + MS
            end = b + round(after * MS)
            records[rank].append(
                {
                    "step": step,
                    "t_start_ns": t0,
                    "t_comm_ns": t_comm,
                    "t_comm_end_ns": end,
                    "t_end_ns": end + update_ms * MS,
                    "compute_s": (backward_ms + update_ms) / 1e3,
                    "exposed_s": (end - t_comm) / 1e9,
                    "hidden_s": 0.0,
                    "buckets": [
                        {
                            "ready_ns": t_comm,
                            "start_ns": t_comm,
                            "end_ns": end,
                            "rounds": [
                                ["compress", 0, t_comm, a],
                                ["exchange", 0, a, b],
                                ["compress", 1, b, end],
                            ],
                        }
                    ],
                }
            )
    run = SimpleNamespace(
        algorithm=algorithms.RING,
        steps=np.arange(len(compress_ms)),
        table={"samples": np.full((len(compress_ms), 2), 32.0)},
        times={"t_start": np.array(starts), "t_end": np.array(starts) + 0.015},
    )
    return config, run, records


@pytest.fixture
def half_ms_per_mib(monkeypatch):
    """Each collective of a compressed bucket costs a time known by hand: 0.5 ms per MiB of
    its buffer, on any network."""
    calls = []

    def cost(topo, p, algorithm, channels, collective, segments):
        calls.append((p, collective))
        return collective.nbytes / MIB * 0.5e-3

    monkeypatch.setattr(predict, "_collective_s", cost)
    return calls


def test_predicted_time_to_accuracy_is_measured_steps_times_predicted_step_exactly(
    half_ms_per_mib,
):
    # fp16: one all-reduce of 262144 float16 elements (512 KiB): 0.25 ms there. The
    # compression's compute per step is the slowest rank's: step 0 max(0.3 + 0.1, 0.2 + 0.4)
    # = 0.6 ms, step 1 0.9 ms, step 2 0.7 ms; the median step: backward 10 + 0.25 + 0.7 +
    # update 2 = 12.95 ms
    config, run, records = compressed_run(
        [[(0.3, 0.1), (0.2, 0.4)], [(0.5, 0.4), (0.1, 0.1)], [(0.3, 0.4), (0.2, 0.2)]]
    )
    topo = topology.load("dgx-h100")
    step = predict.step_there(config, run, records, topo, 8)
    (p, collective), *more = half_ms_per_mib
    assert not more and p == 8
    assert collective == methods.Collective("all-reduce", "gradient", MIB // 4, "float16")
    assert step["world_size"] == 8 and step["compression"] == "fp16"
    assert step["buckets"][0]["network_s"] == 0.25e-3
    assert step["compress_s"] == pytest.approx(0.7e-3)
    assert step["step_time_s"] == pytest.approx(12.95e-3)
    assert step["exposed_comm_s"] == pytest.approx(0.95e-3)
    # evaluations after steps 9, 19, 29: the target first reached after step 19, 20 steps
    row = {"steps": 30, "curve": [
        {"step": 9, "wall_s": 1.0, "test_accuracy": 0.5, "bytes": 10},
        {"step": 19, "wall_s": 2.0, "test_accuracy": 0.93, "bytes": 20},
        {"step": 29, "wall_s": 3.0, "test_accuracy": 0.97, "bytes": 30},
    ]}  # fmt: skip
    compare.predict_row(compare.to_target(row, 0.9), step)
    out = row["predicted"]
    assert row["to_target"]["steps"] == out["steps_to_target"] == 20
    assert out["time_to_target_s"] == 20 * step["step_time_s"]  # exactly
    assert out["time_s"] == 30 * step["step_time_s"]
    assert (out["topology"], out["ranks"], out["step_s"]) == (topo.name, 8, step["step_time_s"])
    assert out["compress_s"] == step["compress_s"] and out["network_s"] == 0.25e-3
    compare.predict_row(compare.to_target(row, 0.99), step)
    assert row["predicted"]["time_to_target_s"] is None  # never reached: no time
    assert compare.time_to_accuracy(7, 0.1) == 7 * 0.1


@pytest.mark.parametrize(
    "method,want",
    [
        # k = ceil(0.01 x 262144) = 2622 float32 values and int32 indices from each of 8 ranks
        ("topk:0.01", [("all-gather", "values and indices", 8 * 2622 * 8, "uint8")]),
        ("bf16", [("all-reduce", "gradient", MIB // 4, "bfloat16")]),
        ("none", None),  # predict's all-reduce, as before compression
    ],
)
def test_each_bucket_costs_its_compressions_collectives_on_the_modelled_ranks(
    half_ms_per_mib, method, want
):
    config, run, records = compressed_run([[(0.1, 0.1), (0.1, 0.1)]], method)
    step = predict.step_there(config, run, records, topology.load("dgx-h100"), 8)
    got = [(c.kind, c.what, c.nelems, c.dtype) for _, c in half_ms_per_mib]
    if want is None:
        assert got == [] and step["compression"] == "none"
        alone = predict.predict(topology.load("dgx-h100"), algorithms.RING, 8, MIB // 4, 4,
                                channels=1)  # fmt: skip
        assert step["buckets"][0]["network_s"] == alone["allreduce_time_s_median"]
        return
    assert got == want
    (_, collective), *_ = half_ms_per_mib
    assert step["buckets"][0]["network_s"] == collective.nbytes / MIB * 0.5e-3


def test_a_collective_alone_is_the_simulators_time_for_its_bytes():
    topo = topology.load("ethernet-100g")
    gather = methods.Collective("all-gather", "values and indices", 8 * 1000, "uint8")
    alone = predict._collective_s(topo, 8, algorithms.RING, 1, gather, None)
    ring = predict.simulate.simulate(methods.all_gather_schedule(8, 8000), topo, 1)
    assert alone == float(ring.finish_s.max()) > 0
    half = methods.Collective("all-reduce", "gradient", 1 << 16, "float16")
    by_predict = predict.predict(topo, algorithms.RING, 8, 1 << 16, 2, channels=1)
    assert (
        predict._collective_s(topo, 8, algorithms.RING, 1, half, None)
        == (by_predict["allreduce_time_s_median"])
    )


def test_the_replay_text_says_what_the_compression_costs(half_ms_per_mib):
    config, run, records = compressed_run([[(0.3, 0.1), (0.2, 0.4)]], "topk:0.01")
    step = predict.step_there(config, run, records, topology.load("dgx-h100"), 8)
    text = predict_text.replay_text(step)
    assert "compression topk:0.01: each bucket's all-reduce is its collectives there" in text
    assert "600.0 us per step, the slowest rank's" in text
