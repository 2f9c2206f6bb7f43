"""What the reports say of a compressed run (--compress), on hand-made records with known
answers (no MPI): the compression's compute rounds ("compress", j) read as compute of the
exchange, summed per step and rank, its collectives' rounds checked against the compression's
plan, the analytic bytes by the compression's definition, the report's compression line and
bucket rows; and the tensors a report gives a bucket are the ones training compresses."""

import numpy as np
import pytest

from allreduce_train.exchange import buckets as training
from allreduce_train.maths import model
from netsim.algorithms import compression as methods
from netsim.record import rundir
from netsim.report import compare, files, summary, text, timeline, traffic

from traces import check_chrome_trace

MS = 1_000_000  # nanoseconds
LAYERS = [3, 4, 2]  # layer 0: 16 elements (W 3x4, b 4), layer 1: 10 (W 4x2, b 2)


def config(method="topk:0.25", p=2):
    """The 3-4-2 MLP in float32, in two buckets: layer 1 first (launch order), then layer 0."""
    return {
        "world_size": p,
        "nparams": 26,
        "buffer_bytes": 104,
        "node_of_rank": [0] * p,
        "clock_offsets_s": [0.0] * p,
        "layers": LAYERS,
        "segments": [[0, 16], [16, 10]],
        "buckets": [
            {"offset": 64, "bytes": 40, "layer": 1},
            {"offset": 0, "bytes": 64, "layer": 0},
        ],
        "overlap": False,
        "config": {"allreduce": "ring", "dtype": "float32", "global_batch": 8, "compress": method},
    }


# topk:0.25 on 2 ranks: bucket 0 (10 elements) k = 3, a ring all-gather of 2 x 3 x 8 bytes,
# each rank sending its 24; bucket 1 (16 elements) k = 4: 64 bytes, 32 each
SENT = (24, 32)


def records(p=2, steps=3, compress_us=((100, 50), (300, 20))):
    """Per step: backward ends at 3 ms; bucket b runs after it, on each rank its compute
    round 0 (compress_us[b][0] us), its all-gather's one round (1 ms), its compute round 1
    (compress_us[b][1] us); the update 0.5 ms."""
    out = [[] for _ in range(p)]
    for step in range(steps):
        for r in range(p):
            t0 = step * 100 * MS
            at = comm = t0 + 3 * MS
            buckets = []
            for (offset, nbytes), sent, (before, after) in zip(((64, 40), (0, 64)), SENT,
                                                               compress_us):  # fmt: skip
                a = at + before * 1000
                b = a + MS
                end = b + after * 1000
                buckets.append(
                    {"offset": offset, "bytes": nbytes, "bytes_sent": sent, "bytes_recv": sent,
                     "messages": 1, "links": [[r, (r + 1) % p, sent, 1]], "ready_ns": comm,
                     "start_ns": at, "end_ns": end,
                     "rounds": [["compress", 0, at, a], ["all-gather", 0, a, b],
                                ["compress", 1, b, end]]}
                )  # fmt: skip
                at = end
            out[r].append(
                {"step": step, "epoch": 0, "samples": 4, "loss": 1.0, "compute_s": 3.5e-3,
                 "comm_s": (at - comm) / 1e9, "exposed_s": (at - comm) / 1e9, "hidden_s": 0.0,
                 "t_start_ns": t0, "t_comm_ns": comm, "t_comm_end_ns": at,
                 "t_end_ns": at + MS // 2, "bytes_sent": sum(SENT), "bytes_recv": sum(SENT),
                 "messages": 2, "links": [[r, (r + 1) % p, sum(SENT), 2]],
                 "rounds": [x for b in buckets for x in b["rounds"]],
                 "d2h_bytes": 0, "h2d_bytes": 0, "d2h_s": 0.0, "h2d_s": 0.0, "buckets": buckets}
            )  # fmt: skip
    return out


@pytest.fixture
def merged():
    cfg = config()
    return cfg, traffic.merge(cfg, records(), complete=True)


def test_compute_rounds_are_the_compressions_time_and_not_rounds_of_a_schedule(merged):
    _, t = merged
    np.testing.assert_allclose(t.table["compress_s"], (100 + 50 + 300 + 20) * 1e-6)
    np.testing.assert_allclose(t.buckets.compress_s[:, :, 0], 150e-6)
    np.testing.assert_allclose(t.buckets.compress_s[:, :, 1], 320e-6)
    # the all-gathers' rounds, named after what they carry, checked against the plan
    assert t.round_labels == [("values and indices all-gather", 0)] * 2
    assert t.round_bucket == [0, 1] and t.compression == "topk:0.25"
    assert [[c.kind for c in plan] for plan in t.plans] == [["all-gather"]] * 2
    np.testing.assert_allclose(t.round_transfer_s, 1e-3)
    phases = [x[0] for x in t.raw_rounds[1][0]]  # rank 1, step 0: compute rounds kept too
    assert phases == ["compress", "values and indices all-gather", "compress"] * 2


def test_bytes_are_the_compressions_definition_against_the_same_buckets_uncompressed(merged):
    cfg, t = merged
    s = summary.summarize(cfg, t)
    assert s["analytic_bytes_sent_per_step_by_rank"] == [sum(SENT)] * 2
    assert s["bytes_sent_per_step_by_rank"] == [sum(SENT)] * 2
    c = s["compression"]
    # uncompressed, each bucket's ring all-reduce on 2 ranks sends its n elements: 10 + 16
    assert c["uncompressed_bytes_sent_per_step_by_rank"] == [104, 104]
    assert c["ratio"] == 104 / 56 and c["method"] == "topk:0.25"
    assert c["compress_s_per_step"] == pytest.approx(470e-6)
    assert [b["uncompressed_bytes_sent_per_step_by_rank"] for b in c["buckets"]] == [
        [40, 40], [64, 64]]  # fmt: skip
    assert [b["collectives"] for b in c["buckets"]] == [
        [{"kind": "all-gather", "what": "values and indices", "nelems": n, "dtype": "uint8",
          "bytes": n}] for n in (48, 64)
    ]  # fmt: skip
    report = text.text(cfg, t, s).splitlines()
    assert "  bytes sent per step: 56 B each (= topk:0.25 over ring, netsim's count); whole " \
        "run 336 B" in report  # fmt: skip
    assert (
        "  compression topk:0.25: 56 B per rank per step against 104 B uncompressed (1.86x "
        "fewer); its compute 470.0 us per step (mean over ranks)"
    ) in report
    rows = report[report.index(next(x for x in report if x.startswith("  compression"))) + 2 :][:2]
    assert rows[0].split()[:5] == ["0", "0.0", "0.0", "0.0", "0.150"]
    assert rows[1].endswith("  0.320  all-gather of values and indices (64 B uint8)")


def test_timeline_and_steps_files_carry_a_compressed_run(merged, tmp_path):
    cfg, t = merged
    files.write_outputs(str(tmp_path), cfg, t, {1})
    trace = timeline.chrome_trace(cfg, t, {1})
    check_chrome_trace(trace, 2)
    names = {e["name"] for e in trace["traceEvents"] if e["ph"] == "X"}
    assert {"compress 0", "values and indices all-gather 0", "compress 1"} <= names


def test_a_round_outside_the_plan_is_one_line():
    recs = records()
    recs[1][2]["buckets"][0]["rounds"][1][0] = "reduce-scatter"
    with pytest.raises(rundir.RunDirError, match="rank 1's step 2 has round values and "
                       "indices reduce-scatter 0, which the bucket 0's schedule"):  # fmt: skip
        traffic.merge(config(), recs, complete=True)
    recs = records()
    del recs[0][1]["buckets"][1]["rounds"][0]  # no compute round before the all-gather
    with pytest.raises(rundir.RunDirError, match="rank 0's step 1 has round all-gather 0 in "
                       "bucket 1 outside its 1 collectives"):  # fmt: skip
        traffic.merge(config(), recs, complete=True)


def test_compare_says_the_method_and_defaults_the_target_to_the_lowest_final_accuracy(
    tmp_path, monkeypatch
):
    rows = {"a": 0.9, "b": 0.8}

    def row(run_dir, target):
        curve = [
            {"step": 9, "wall_s": 1.0, "test_accuracy": 0.5, "bytes": 5},
            {"step": 19, "wall_s": 2.0, "test_accuracy": rows[run_dir], "bytes": 10},
        ]
        out = {"run_dir": run_dir, "label": run_dir, "compress": run_dir == "a" and "fp16" or
               "none", "steps": 20, "curve": curve, "final_accuracy": rows[run_dir],
               "best_accuracy": rows[run_dir], "wall_s": 2.0, "bytes": 10}  # fmt: skip
        return (compare.to_target(out, target) if target else out), None

    monkeypatch.setattr(compare, "_row", row)
    out = compare.compare(["a", "b"], None)
    assert [r["target"] for r in out] == [0.8, 0.8]
    assert [r["to_target"]["steps"] for r in out] == [20, 20]
    table = compare.text(out).splitlines()
    assert table[0] == f"target accuracy 0.8 ({compare.DEFAULT_TARGET})"
    assert table[2].split()[:3] == ["a", "fp16", "20"]
    assert compare.compare(["a", "b"], 0.85)[1]["to_target"] is None


@pytest.mark.parametrize("method", ["powersgd:2", "topk:0.05", "fp16"])
def test_a_reports_bucket_holds_the_tensors_training_compresses(method):
    """The 64-37-29-10 MLP of the compression's MPI tests, in its buckets: the
    collectives a report plans for each bucket are those the factory gives it."""
    widths, p = (64, 37, 29, 10), 3
    segments = model.layer_segments(widths)
    cfg = {"world_size": p, "nparams": sum(n for _, n in segments), "node_of_rank": [0] * p,
           "layers": list(widths), "segments": [list(s) for s in segments],
           "config": {"allreduce": "ring", "dtype": "float32", "compress": method}}  # fmt: skip
    cfg["buffer_bytes"] = 4 * cfg["nparams"]
    plan = training.plan(widths, 4, 5 / 1024, 1 / 1024)
    layout = [{"offset": 4 * b.lo, "bytes": 4 * (b.hi - b.lo)} for b in plan]
    assert len(plan) > 1
    for k, b in enumerate(plan):
        ddp = [
            (n, (s[1], s[0]) if len(s) == 2 else s) for _, n, s in training.tensors_in(widths, b)
        ]
        assert traffic.bucket_tensors(cfg, b.lo, b.hi - b.lo) == ddp
        want = methods.collectives(methods.parse(method), ddp, p, np.float32)
        assert traffic.bucket_collectives(cfg, layout, k)[0] == want
