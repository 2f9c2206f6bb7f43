"""A real run all-reduced in three buckets overlapped with backward, under mpirun once for
the module: its report says exposed and hidden and has a row per bucket, and steps.jsonl,
links.csv, timeline.json and summary.json carry the buckets."""

import csv
import json

import pytest

from conftest import mpirun, read_json, train
from traces import check_chrome_trace

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

# 64-128-128-10: 26,122 parameters; buckets of 0.02 MB after a first of 0.004 MB: three, the
# last layer's, the middle one's, the first one's (launch order)
OPTIONS = "--layers 64,128,128,10 --bucket-mb 0.02 --first-bucket-mb 0.004 --overlap on".split()
STEPS, TRACED = 6, [1, 2, 3]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("buckets")
    result = train(2, run_dir, *OPTIONS, "--steps", str(STEPS), "--allreduce", "ring")
    assert result.returncode == 0, result.output
    return run_dir, result


def steps_jsonl(run_dir):
    return [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]


def test_the_report_says_exposed_and_hidden_and_has_a_row_per_bucket(run):
    run_dir, result = run
    nbuckets = len(read_json(run_dir / "config.json")["buckets"])
    assert nbuckets == 3
    assert "  buckets  3 (" in result.stdout and "overlapped with backward" in result.stdout
    report = mpirun(0, ["-m", "netsim", "report", str(run_dir)])
    assert report.returncode == 0, report.output
    assert report.stdout.strip() in result.stdout  # the end of the run said the same
    lines = report.stdout.splitlines()
    comm = [x for x in lines if x.startswith("  communication per step (mean over ranks): ")]
    assert len(comm) == 1 and "exposed" in comm[0] and "samples/s" in comm[0]
    head = next(k for k, x in enumerate(lines) if x.startswith("  buckets in launch order"))
    rows = lines[head + 2 : head + 2 + nbuckets]
    assert [int(x.split()[0]) for x in rows] == list(range(nbuckets))
    assert not lines[head + 2 + nbuckets].split()[0].isdigit()  # no more rows
    figures = read_json(run_dir / "summary.json")["traffic"]
    assert figures["exposed_s"] > 0 and figures["hidden_s"] >= 0
    assert 0 <= figures["hidden_share"] <= 1 and len(figures["buckets"]) == nbuckets


def test_steps_jsonl_rows_carry_their_buckets_in_order(run):
    run_dir, _ = run
    rows = steps_jsonl(run_dir)
    assert len(rows) == 2 * STEPS
    for row in rows:
        assert row["exposed_s"] + row["hidden_s"] == pytest.approx(row["comm_s"], abs=1e-9)
        assert len(row["buckets"]) == 3
        for b in row["buckets"]:
            assert 0 <= b["ready_s"] <= b["start_s"] <= b["end_s"] and b["bytes_sent"] > 0
        assert sum(b["bytes_sent"] for b in row["buckets"]) == row["bytes_sent"]


def test_links_csv_has_a_row_per_bucket_that_sums_to_the_bytes_sent(run):
    run_dir, _ = run
    with open(run_dir / "links.csv", newline="") as f:
        links = list(csv.DictReader(f))
    assert list(links[0]) == ["step", "src", "dst", "src_node", "dst_node", "intra_node",
                              "sent_bytes", "messages", "bucket"]  # fmt: skip
    for row in steps_jsonl(run_dir):
        mine = [x for x in links if (int(x["step"]), int(x["src"])) == (row["step"], row["rank"])]
        assert sorted({int(x["bucket"]) for x in mine}) == [0, 1, 2]
        assert sum(int(x["sent_bytes"]) for x in mine) == row["bytes_sent"]
        for k, b in enumerate(row["buckets"]):
            assert (
                sum(int(x["sent_bytes"]) for x in mine if int(x["bucket"]) == k)
                == (b["bytes_sent"])
            )


def test_the_timeline_has_one_communication_slice_per_bucket_per_traced_step(run):
    run_dir, _ = run
    trace = read_json(run_dir / "timeline.json")
    assert trace["otherData"]["traced_steps"] == TRACED
    check_chrome_trace(trace, 2)
    events = trace["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    slices = [e for e in events if e["ph"] == "X" and e["name"].startswith("bucket ")]
    assert sorted((e["pid"], e["args"]["step"], e["args"]["bucket"]) for e in slices) == [
        (r, s, k) for r in range(2) for s in TRACED for k in range(3)
    ]
    assert {names[(e["pid"], e["tid"])] for e in slices} == {"communication"}
    assert len([e for e in events if e["ph"] == "i"]) == len(slices)  # each bucket's ready
