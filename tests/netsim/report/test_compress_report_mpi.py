"""A compressed run over real mpirun, reported: PowerSGD in three buckets on 3 ranks (three
collectives a bucket, the P and Q all-reduces by recursive doubling). The step records give
the compression's compute rounds, ("compress", j) around each collective, and every
collective's rounds under its schedule's labels; the merge checks them against the plan;
the summary's analytic bytes are the compression's, equal to those recorded; the report
prints the compression line and its buckets."""

import json
import subprocess
import sys

import numpy as np
import pytest

from netsim.algorithms import compression as methods
from netsim.record import rundir
from netsim.report import summary, traffic

from conftest import ROOT, train

pytestmark = [pytest.mark.slow, pytest.mark.mpi]

P, METHOD, ALLREDUCE = 3, "powersgd:2", "recursive-doubling"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """64-37-29-10, buckets of at most 5 KiB (the first 1 KiB), overlapped: 6 steps."""
    run_dir = tmp_path_factory.mktemp("compressed")
    result = train(
        P, run_dir, "--layers", "64,37,29,10", "--steps", "6", "--global-batch", "31",
        "--bucket-mb", str(5 / 1024), "--first-bucket-mb", str(1 / 1024), "--overlap", "on",
        "--eval-every", "6", "--trace-steps", "none", "--compress", METHOD,
        "--allreduce", ALLREDUCE,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    config, records, totals = rundir.load(str(run_dir))
    return run_dir, config, records, traffic.merge(config, records, complete=True)


def test_records_give_compute_rounds_around_each_collective(run):
    _, config, records, merged = run
    layout = merged.buckets.layout
    assert len(layout) > 1
    for rank in range(P):
        for rec in records[rank]:
            for b, bucket in enumerate(rec["buckets"]):
                plan, algorithm, context = traffic.bucket_collectives(config, layout, b)
                phases = [(ph, ix) for ph, ix, _, _ in bucket["rounds"]]
                compute = [k for k, (ph, _) in enumerate(phases) if ph == "compress"]
                assert [phases[k] for k in compute] == [("compress", j)
                                                        for j in range(len(plan) + 1)]  # fmt: skip
                schedules = methods.schedules(plan, algorithm, P, **context)
                want = [(r.phase, r.index) for s in schedules for r in s.rounds]
                assert [x for k, x in enumerate(phases) if k not in compute] == want
                times = [t for _, _, t0, t1 in bucket["rounds"] for t in (t0, t1)]
                assert times[0] == bucket["start_ns"] and times[-1] == bucket["end_ns"]
                assert all(a <= b for a, b in zip(times, times[1:]))
    assert [c.what for c in traffic.bucket_collectives(config, layout, 0)[0]] == [
        "uncompressed", "P", "Q"]  # fmt: skip


def test_the_merge_sums_the_compute_and_checks_every_collective(run):
    _, config, records, merged = run
    want = np.array(
        [[sum(traffic.compress_ns(b) for b in records[r][s]["buckets"]) for r in range(P)]
         for s in range(len(merged.steps))]
    ) / 1e9  # fmt: skip
    np.testing.assert_allclose(merged.table["compress_s"], want, rtol=1e-12)
    assert (want > 0).all()
    assert {"P reduce-scatter", "Q exchange", "uncompressed exchange"} & {
        ph for ph, _ in merged.round_labels}  # fmt: skip
    assert len(merged.round_labels) == sum(len(s.rounds) for s in merged.schedules)
    assert np.isfinite(merged.round_transfer_s).all()  # every round recorded on every rank


def test_the_summary_and_report_say_what_the_compression_sent_and_cost(run):
    run_dir, config, _, merged = run
    s = summary.summarize(config, merged)
    assert s["analytic_bytes_sent_per_step_by_rank"] == s["bytes_sent_per_step_by_rank"]
    c = s["compression"]
    assert c["method"] == METHOD and c["ratio"] > 1
    assert np.sum(c["uncompressed_bytes_sent_per_step_by_rank"]) == pytest.approx(
        c["ratio"] * np.sum(c["analytic_bytes_sent_per_step_by_rank"])
    )
    assert c["compress_s_per_step"] == pytest.approx(np.mean(merged.table["compress_s"]))
    # the run's own summary.json, written at its end, says the same
    written = json.loads((run_dir / "summary.json").read_text())["traffic"]["compression"]
    assert written["method"] == METHOD and written["ratio"] == c["ratio"]
    out = subprocess.run([sys.executable, "-m", "netsim", "report", str(run_dir)],
                         capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"(= {METHOD} over {ALLREDUCE}, netsim's count)" in out.stdout
    assert f"  compression {METHOD}: " in out.stdout and "x fewer); its compute" in out.stdout
    assert out.stdout.count("all-reduce of P (") == len(merged.buckets.layout)
