"""What the reports say of a run all-reduced in buckets, on hand-made records with known
answers (no MPI): exposed and hidden communication, the bucket table, the buckets in
steps.jsonl, links.csv and timeline.json, and the training's own end-of-run lines."""

import csv
import json

import numpy as np
import pytest

from allreduce_train.run import console
from netsim.algorithms import RING
from netsim.record import stepfile
from netsim.report import files, summary, text, timeline, traffic

from traces import check_chrome_trace

MS = 1_000_000  # nanoseconds


def config(p=2, buckets=True):
    """12 float32 parameters in two layers of 6; in buckets: the top layer's first (launch
    order), then the bottom one's, overlapped with backward."""
    out = {
        "world_size": p,
        "nparams": 12,
        "buffer_bytes": 48,
        "node_of_rank": [0] * p,
        "clock_offsets_s": [0.0] * p,
        "segments": [[0, 6], [6, 6]],
        "config": {"allreduce": "ring", "dtype": "float32", "global_batch": 8},
    }
    if buckets:
        out["buckets"] = [
            {"offset": 24, "bytes": 24, "layer": 1},
            {"offset": 0, "bytes": 24, "layer": 0},
        ]
        out["overlap"] = True
    return out


def records(p=2, steps=3, late=(0.0, 0.0)):
    """Per step (ms from its start, rank r's backward `late[r]` ms longer): bucket 0 ready and
    started at 1, its rounds end at 2 and 3 (= t_comm, all of it under backward); bucket 1
    ready at 2.5, started at t_comm, its rounds end at t_comm + 0.5 and + 1 (= t_comm_end,
    all of it exposed); the update ends 0.5 later."""
    sent = int(RING.schedule(p, 6).elements_sent()[0] * 4)  # each bucket's, per rank
    out = [[] for _ in range(p)]
    for step in range(steps):
        for r in range(p):
            t0 = step * 100 * MS
            comm = t0 + int((3 + late[r]) * MS)
            b0 = [t0 + MS, t0 + MS, t0 + 2 * MS, t0 + 3 * MS]
            b1 = [t0 + int(2.5 * MS), comm, comm + MS // 2, comm + MS]
            buckets = []
            for (offset, nbytes), (ready, start, mid, end) in zip(((24, 24), (0, 24)), (b0, b1)):
                buckets.append(
                    {"offset": offset, "bytes": nbytes, "bytes_sent": sent, "bytes_recv": sent,
                     "messages": 2, "links": [[r, (r + 1) % p, sent, 2]], "ready_ns": ready,
                     "start_ns": start, "end_ns": end,
                     "rounds": [["reduce-scatter", 0, start, mid], ["all-gather", 0, mid, end]]}
                )  # fmt: skip
            exposed, hidden = stepfile.split(
                comm, comm + MS, [(b["start_ns"], b["end_ns"]) for b in buckets]
            )
            out[r].append(
                {"step": step, "epoch": 0, "samples": 4, "loss": 1.0,
                 "compute_s": (3 + late[r] + 0.5) / 1e3, "comm_s": exposed + hidden,
                 "exposed_s": exposed, "hidden_s": hidden, "t_start_ns": t0, "t_comm_ns": comm,
                 "t_comm_end_ns": comm + MS, "t_end_ns": comm + MS + MS // 2,
                 "bytes_sent": 2 * sent, "bytes_recv": 2 * sent, "messages": 4,
                 "links": [[r, (r + 1) % p, 2 * sent, 4]],
                 "rounds": [x for b in buckets for x in b["rounds"]],
                 "d2h_bytes": 0, "h2d_bytes": 0, "d2h_s": 0.0, "h2d_s": 0.0, "buckets": buckets}
            )  # fmt: skip
    return out


def unbucketed(recs):
    """The same steps as a step file before version 5 reads: no buckets, no split."""
    for rank in recs:
        for rec in rank:
            for k in ("buckets", "exposed_s", "hidden_s"):
                del rec[k]
            rec["comm_s"] = (rec["t_comm_end_ns"] - rec["t_comm_ns"]) / 1e9
            rec["rounds"] = rec["rounds"][:2]
    return recs


def merged(late=(0.0, 0.0), buckets=True):
    recs = records(late=late)
    cfg = config(buckets=buckets)
    return cfg, traffic.merge(cfg, recs if buckets else unbucketed(recs), complete=True)


def test_exposed_and_hidden_split_the_communication_and_the_stall_stays_in_the_exposed_part():
    cfg, t = merged(late=(0.0, 2.0))  # rank 1's backward 2 ms longer: rank 0 stalls
    np.testing.assert_allclose(t.table["hidden_s"][:, 0], 2e-3)
    np.testing.assert_allclose(t.table["exposed_s"], 1e-3)
    np.testing.assert_allclose(t.table["comm_s"], t.table["exposed_s"] + t.table["hidden_s"])
    # the stall (2 ms of arrival skew) is capped at what rank 0 waited after backward (1 ms)
    np.testing.assert_allclose(t.table["wait_s"][:, 0], 1e-3)
    step = t.times["t_end"] - t.times["t_start"]
    np.testing.assert_allclose(
        t.table["compute_s"] + t.table["transfer_s"] + t.table["wait_s"], step
    )
    b = t.buckets
    assert len(b) == t.nbuckets == 2 and b.overlap
    assert [x["layer"] for x in b.layout] == [1, 0]
    np.testing.assert_allclose(b.hidden_s.sum(axis=2), t.table["hidden_s"])
    assert (b.ready <= b.start).all() and (b.start <= b.end).all()


def test_each_buckets_rounds_are_its_own_schedules():
    _, t = merged()
    assert t.round_labels == [("reduce-scatter", 0), ("all-gather", 0)] * 2
    assert t.round_bucket == [0, 0, 1, 1] and len(t.schedules) == 2 and t.schedule is None
    np.testing.assert_allclose(t.peer_not_ready_s, 0.0)
    np.testing.assert_allclose(t.round_transfer_s[:, :, 0], 1e-3)
    np.testing.assert_allclose(t.round_transfer_s[:, :, 2], 0.5e-3)
    assert t.raw_rounds[0][0][2][4] == 1  # bucket 1's reduce-scatter


def test_the_summary_and_the_report_say_what_overlap_hid():
    cfg, t = merged()
    s = summary.summarize(cfg, t)
    assert s["exposed_s"] == pytest.approx(1e-3) and s["hidden_s"] == pytest.approx(2e-3)
    assert s["hidden_share"] == pytest.approx(2 / 3) and s["step_s"] == pytest.approx(4.5e-3)
    assert s["exposed_share_of_step"] == pytest.approx(1 / 4.5)
    assert s["step_samples_per_s"] == pytest.approx(8 / 4.5e-3)
    assert s["allreduce_time_s_median"] == pytest.approx(3e-3)  # the buckets' times, summed
    assert s["analytic_bytes_sent_per_step_by_rank"] == s["bytes_sent_per_step_by_rank"]
    first, second = s["buckets"]
    assert (first["hidden_share"], second["hidden_share"]) == (pytest.approx(1.0), 0.0)
    assert second["ready_to_start_s_mean"] == pytest.approx(0.5e-3)
    assert [r["bucket"] for r in s["rounds"]] == [0, 0, 1, 1]
    report = text.text(cfg, t, s).splitlines()
    assert (
        "  communication per step (mean over ranks): 3.00 ms = 2.00 ms hidden under backward "
        "(67%) + 1.00 ms exposed (22% of a 4.50 ms step); 1,778 samples/s (steps alone)"
    ) in report
    head = report.index("  buckets in launch order, overlapped with backward (mean over ranks "
                        "and steps):")  # fmt: skip
    table = report[head + 1 : head + 4]
    assert table[0].split() == ["bucket", "layer", "offset", "KiB", "size", "KiB", "sent",
                                "KiB/rank", "ready->start", "ms", "duration", "ms", "hidden",
                                "algorithm"]  # fmt: skip
    assert table[1].split() == ["0", "1", "0.0", "0.0", "0.0", "0.000", "2.000", "100%", "ring"]
    assert table[2].split()[:2] == ["1", "0"] and table[2].split()[-2] == "0%"
    assert len({len(line) for line in table[1:]}) == 1  # aligned
    assert any("stall/exposed" in line for line in report)
    assert any(line.strip().startswith("b1 all-gather") for line in report)


@pytest.mark.parametrize("buckets", [False, True])
def test_one_bucket_or_none_is_one_line_all_exposed(buckets):
    recs = records()
    if buckets:  # one bucket of the whole gradient, after backward
        for rank in recs:
            for rec in rank:
                rec["buckets"] = [rec["buckets"][1] | {"offset": 0, "bytes": 48}]
                rec["buckets"][0]["rounds"] = rec["rounds"] = rec["rounds"][2:]
                rec["exposed_s"], rec["hidden_s"] = 1e-3, 0.0
                rec["comm_s"] = 1e-3
    else:
        unbucketed(recs)
    cfg = config(buckets=False)
    cfg["buckets"], cfg["overlap"] = [{"offset": 0, "bytes": 48, "layer": 0}], False
    t = traffic.merge(cfg, recs, complete=True)
    np.testing.assert_allclose(t.table["exposed_s"], t.table["comm_s"])
    np.testing.assert_allclose(t.table["hidden_s"], 0.0)
    s = summary.summarize(cfg, t)
    assert s["hidden_s"] == 0.0 and s["hidden_share"] == 0.0
    assert "bucket" not in s["rounds"][0] and t.nbuckets == 1
    report = text.text(cfg, t, s)
    assert (
        "  communication per step (mean over ranks): 1.00 ms, all exposed (22% of a 4.50 ms "
        "step)" in report
    )
    assert "buckets in launch order" not in report and "stall/comm" in report


def test_steps_jsonl_and_links_csv_carry_the_buckets(tmp_path):
    cfg, t = merged()
    files.write_outputs(str(tmp_path), cfg, t, {1})
    rows = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert row["exposed_s"] + row["hidden_s"] == pytest.approx(row["comm_s"])
        assert [b["bytes"] for b in row["buckets"]] == [24, 24]
        for b in row["buckets"]:
            assert 0 <= b["ready_s"] <= b["start_s"] <= b["end_s"]
        first = row["buckets"][0]
        assert (first["ready_s"], first["end_s"]) == (pytest.approx(1e-3), pytest.approx(3e-3))
        assert [r["bucket"] for r in row["rounds"]] == [0, 0, 1, 1]
    with open(tmp_path / "links.csv", newline="") as f:
        links = list(csv.DictReader(f))
    assert list(links[0])[-1] == "bucket" and list(links[0])[:3] == ["step", "src", "dst"]
    assert len(links) == 3 * 2 * 2  # steps x ranks x buckets
    for row in rows:
        mine = [x for x in links if (int(x["step"]), int(x["src"])) == (row["step"], row["rank"])]
        assert sorted(int(x["bucket"]) for x in mine) == [0, 1]
        assert sum(int(x["sent_bytes"]) for x in mine) == row["bytes_sent"]


def test_an_unbucketed_runs_files_say_so(tmp_path):
    cfg, t = merged(buckets=False)
    files.write_outputs(str(tmp_path), cfg, t, {1})
    rows = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert all(r["buckets"] is None and r["hidden_s"] == 0.0 for r in rows)
    assert all("bucket" not in x for r in rows for x in r["rounds"])
    with open(tmp_path / "links.csv", newline="") as f:
        assert {x["bucket"] for x in csv.DictReader(f)} == {"0"}


def test_the_timeline_draws_each_bucket_under_compute():
    cfg, t = merged(late=(0.0, 2.0))
    trace = timeline.chrome_trace(cfg, t, {1, 2})
    check_chrome_trace(trace, 2)
    events = trace["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    order = {(e["pid"], e["tid"]): e["args"]["sort_index"] for e in events
             if e["name"] == "thread_sort_index"}  # fmt: skip
    tracks = sorted((order[k], names[k]) for k in names if k[0] == 0)
    assert [n for _, n in tracks] == ["compute", "communication", "exposed wait", "stall"]
    slices = [e for e in events if e["ph"] == "X" and e["name"].startswith("bucket ")]
    assert len(slices) == 2 * 2 * 2  # traced steps x ranks x buckets
    assert {names[(e["pid"], e["tid"])] for e in slices} == {"communication"}
    hidden = {(e["args"]["bucket"], e["args"]["hidden_share"]) for e in slices}
    assert hidden == {(0, 1.0), (1, 0.0)}
    assert all(e["args"]["bytes"] == 24 and "ready_us" in e["args"] for e in slices)
    ready = [e for e in events if e["ph"] == "i"]
    assert len(ready) == len(slices) and {e["tid"] for e in ready} == {timeline.COMPUTE}
    rounds = [e for e in events if e["ph"] == "X" and e["name"] == "all-gather 0"]
    assert {e["tid"] for e in rounds} == {timeline.BUCKETS}  # nested in their buckets
    assert any(e["name"] == "all-reduce 1" for e in events)  # the wait after backward, kept


def test_an_unbucketed_timeline_is_as_it_was():
    cfg, t = merged(buckets=False)
    trace = timeline.chrome_trace(cfg, t, {1})
    check_chrome_trace(trace, 2)
    events = trace["traceEvents"]
    assert not any(e["name"].startswith("bucket") for e in events)
    assert not any(e["name"] == "thread_sort_index" for e in events)
    assert {e["tid"] for e in events if e["ph"] == "X" and e["name"] == "all-gather 0"} == {
        timeline.COMM
    }


def totals(**more):
    return {"world_size": 2, "steps": 100, "wall_s": 1.0, "samples_per_s": 800.0,
            "test_accuracy": 0.9, "test_loss": 0.3, "compute_s_by_rank": [1.25, 1.25],
            "comm_s_by_rank": [0.04, 0.04], "comm_share": 0.04 / 1.29, "weights_blake2b": "ab",
            **more}  # fmt: skip


def test_the_end_of_run_line_says_hidden_and_exposed_when_something_was_hidden():
    line = console.final_report(totals(traffic={"hidden_s": 0.0022})).splitlines()[1]
    assert line == (
        "  per step (mean over ranks): compute 12.50 ms, communication 2.60 ms of which 2.20 ms "
        "hidden under backward, 0.40 ms exposed (3% of step time)"
    )
    for quiet in (totals(), totals(traffic={"hidden_s": 0.0})):  # nothing hidden, or unknown
        assert console.final_report(quiet).splitlines()[1] == (
            "  per step (mean over ranks): compute 12.50 ms, all-reduce 0.40 ms (3% of step time)"
        )


def test_the_banner_names_the_buckets_when_there_are_several():
    buckets = [{"offset": 24, "bytes": 1 << 20, "layer": 1}, {"offset": 0, "bytes": 3072}]
    assert console.bucket_line(buckets, True) == (
        "  buckets  2 (1.0 MiB, 3.0 KiB; in launch order), overlapped with backward"
    )
    assert console.bucket_line(buckets, False).endswith("all-reduced after backward")
    d = {"config": {"allreduce": "ring", "activation": "relu", "loss": "mse", "dtype": "float32",
                    "global_batch": 8, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
                    "seed": 0},
         "dataset": {"name": "xor", "train_samples": 4, "test_samples": 4},
         "hostnames": ["a", "a"], "local_batch_by_rank": [4, 4], "world_size": 2, "nodes": 1,
         "mpi_library": "MPICH", "device": "cpu", "layers": [2, 2, 1], "nparams": 9,
         "buffer_bytes": 36, "steps_per_epoch": 1, "total_steps": 2, "run_dir": "r",
         "buckets": buckets, "overlap": True}  # fmt: skip
    assert console.bucket_line(buckets, True) in console.banner(d).splitlines()
    one = console.banner(d | {"buckets": buckets[:1]})
    assert "buckets" not in one and "buckets" not in console.banner(d | {"buckets": None})
