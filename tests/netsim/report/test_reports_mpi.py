"""Traffic and synchronisation reports of real runs: exact bytes per rank and per link,
stalls that match an injected straggler, a valid timeline, crashed and malformed runs. It runs
past 300 lines: one report, held to real runs of every algorithm, each test a few lines."""

import csv
import json
import statistics
import struct

import numpy as np
import pytest

from netsim import algorithms
from netsim.algorithms import RING

from conftest import mpirun, program, read_json, train
from traces import check_chrome_trace


def merged_steps(run_dir):
    return [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]


def netsim_report(run_dir, *options):
    return mpirun(0, ["-m", "netsim", "report", str(run_dir), *options])


OTHERS = [a for a in algorithms.SCHEDULED if a != "ring"]  # the ring's test is below


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("p", [2, 3, 4])
@pytest.mark.parametrize("name", OTHERS)
def test_every_algorithms_recorded_bytes_are_its_own_count_and_the_report_says_so(
    name, p, tmp_path
):
    # 1285 parameters (64-17-10): odd, not a multiple of 2, 3 or 4; nodes of two ranks where p
    # is even (the hierarchical ring needs even nodes), of one rank otherwise.
    per_node = 2 if p % 2 == 0 else 1
    result = train(
        p,
        tmp_path,
        "--allreduce",
        name,
        "--layers",
        "64,17,10",
        "--steps",
        "3",
        "--global-batch",
        "12",
        "--ranks-per-node",
        str(per_node),
    )
    assert result.returncode == 0, result.output
    algorithm, config = algorithms.get(name), read_json(tmp_path / "config.json")
    expected = (
        algorithm.elements_sent(
            p, 1285, node_of_rank=config["node_of_rank"], segments=config["segments"]
        )
        * 4
    )
    assert [row["bytes_sent"] for row in merged_steps(tmp_path)] == [
        int(expected[r]) for _ in range(3) for r in range(p)
    ]
    traffic = read_json(tmp_path / "summary.json")["traffic"]
    assert traffic["analytic_bytes_sent_per_step_by_rank"] == expected.tolist()
    assert traffic["bytes_sent_per_step_by_rank"] == expected.tolist()
    assert f"(= {name} analytic {algorithm.formula})" in result.stdout
    if name == "tree" and p == 3:  # the root sends n to each child, each child n up
        assert (
            "bytes sent per step: r0 10.0 KiB, r1 5.0 KiB, r2 5.0 KiB (= tree analytic"
            in result.stdout
        )


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("p", [2, 3, 4])
def test_bytes_per_rank_and_per_link_equal_the_ring_count(p, tmp_path):
    # 64-17-10: 1285 parameters, not a multiple of 2, 3 or 4; four pretend nodes of one
    # rank make every link inter-node, two of two split them.
    result = train(
        p,
        tmp_path,
        *"--layers 64,17,10 --steps 5 --global-batch 12 --ranks-per-node 2".split(),
        *"--allreduce ring".split(),
    )
    assert result.returncode == 0, result.output
    n, itemsize = 1285, 4
    sched = RING.schedule(p, n)
    sent = sched.elements_sent() * itemsize
    rows = merged_steps(tmp_path)
    assert len(rows) == 5 * p
    for row in rows:
        assert row["bytes_sent"] == sent[row["rank"]]
        assert row["bytes_recv"] == sched.elements_received()[row["rank"]] * itemsize
        assert row["messages"] == 2 * (p - 1) and row["node"] == row["rank"] // 2
        assert len(row["rounds"]) == 2 * (p - 1)
        assert row["wait_s"] <= row["comm_s"] and row["transfer_s"] == pytest.approx(
            row["comm_s"] - row["wait_s"]
        )
    with open(tmp_path / "links.csv", newline="") as f:
        links = list(csv.DictReader(f))
    assert {(int(x["src"]), int(x["dst"])) for x in links} == {(r, (r + 1) % p) for r in range(p)}
    for link in links:  # per step, per directed link: everything its sender sent
        assert int(link["sent_bytes"]) == sent[int(link["src"])] and int(link["messages"]) == 2 * (
            p - 1
        )
        assert int(link["intra_node"]) == (int(link["src"]) // 2 == int(link["dst"]) // 2)
    total = 5 * 2 * (p - 1) * n * itemsize
    assert sum(int(x["sent_bytes"]) for x in links) == total  # nothing double counted
    traffic = read_json(tmp_path / "summary.json")["traffic"]
    assert np.sum(traffic["link_matrix_bytes"]) == total == traffic["bytes_sent_total"]
    assert traffic["intra_node_bytes"] + traffic["inter_node_bytes"] == total
    if p == 4:  # 0->1 and 2->3 stay inside a node, 1->2 and 3->0 cross
        assert traffic["intra_node_bytes"] == 5 * (sent[0] + sent[2])
    assert (
        traffic["analytic_bytes_sent_per_step_by_rank"]
        == sent.tolist()
        == (RING.elements_sent(p, n) * itemsize).tolist()
    )
    assert "(= ring analytic 2(p-1)/p x n)" in result.stdout


@pytest.mark.mpi
@pytest.mark.slow
def test_straggler_stalls_the_others_and_is_named(tmp_path):
    result = train(
        4, tmp_path, "--straggler", "2:0.2", "--steps", "6", "--global-batch", "16", timeout=120
    )
    assert result.returncode == 0, result.output
    waits: dict[int, list[float]] = {}
    for row in merged_steps(tmp_path):
        if row["rank"] == 2:
            assert row["wait_s"] < 0.02, row
            assert row["compute_s"] >= 0.2
        else:
            assert 0.1 <= row["wait_s"] <= 0.35, row
            waits.setdefault(row["rank"], []).append(row["wait_s"])
    # each rank stalls about the straggler's 0.2 s; one step may be off by the scheduling of
    # 4 ranks on 2 cores (a stall of 0.284 s seen once in CI), so the tight bound is per rank
    assert sorted(waits) == [0, 1, 3]
    for rank, rank_waits in waits.items():
        assert 0.15 <= statistics.median(rank_waits) <= 0.25, (rank, rank_waits)
    traffic = read_json(tmp_path / "summary.json")["traffic"]
    assert traffic["most_waited_for_rank"] == 2 and traffic["most_waited_for_share_of_steps"] == 1.0
    assert "most waited for: rank 2" in result.stdout
    assert "most waited for: rank 2" in netsim_report(tmp_path).stdout


@pytest.mark.mpi
@pytest.mark.slow
def test_timeline_is_valid_chrome_trace_with_every_rank(tmp_path):
    # the ring named: its rounds are the trace's (auto's pick at p = 3 moves with the model)
    result = train(3, tmp_path, "--steps", "8", "--trace-steps", "2-4,7", "--allreduce", "ring")
    assert result.returncode == 0, result.output
    trace = read_json(tmp_path / "timeline.json")
    assert trace["otherData"]["traced_steps"] == [2, 3, 4, 7]
    check_chrome_trace(trace, 3)
    names = {e["name"] for e in trace["traceEvents"] if e["ph"] == "X"}
    assert {"all-reduce 2", "forward/backward 7", "reduce-scatter 0", "all-gather 1"} <= names
    assert not any(
        e["args"].get("step") in (0, 1, 5, 6) for e in trace["traceEvents"] if e["ph"] == "X"
    )


@pytest.mark.mpi
@pytest.mark.slow
def test_report_command_matches_the_end_of_run_report(tmp_path):
    result = train(2, tmp_path, "--steps", "5")
    assert result.returncode == 0, result.output
    report = netsim_report(tmp_path)
    assert report.returncode == 0, report.output
    assert report.stdout.strip() in result.stdout
    figures = json.loads(netsim_report(tmp_path, "--json").stdout)
    assert figures == read_json(tmp_path / "summary.json")["traffic"]


@pytest.mark.mpi
@pytest.mark.slow
def test_killed_run_still_reported_as_incomplete(tmp_path):
    result = mpirun(
        3,
        [
            program("inject.py"),
            "raise",
            "1",
            "6",
            "--",
            "--run-dir",
            str(tmp_path),
            "--steps",
            "1000",
        ],
        timeout=60,
    )
    assert result.returncode != 0
    assert not (tmp_path / "summary.json").exists()
    report = netsim_report(tmp_path)
    assert report.returncode == 0, report.output
    assert "INCOMPLETE RUN" in report.stdout
    steps = int(report.stdout.split(" steps on ")[0].split()[-1])
    assert 5 <= steps < 1000  # rank 1 died in its 6th update: steps 0..4 are on every rank


@pytest.mark.mpi
@pytest.mark.slow
def test_allreduce_mpi_reports_stalls_but_no_bytes(tmp_path):
    result = train(2, tmp_path, "--steps", "4", "--allreduce", "mpi")
    assert result.returncode == 0, result.output
    assert "not observable inside MPI_Allreduce" in result.stdout
    assert all(
        row["bytes_sent"] is None and row["wait_s"] is not None for row in merged_steps(tmp_path)
    )


@pytest.mark.mpi
@pytest.mark.slow
def test_no_record_writes_no_step_files(tmp_path):
    result = train(2, tmp_path, "--steps", "4", "--no-record")
    assert result.returncode == 0, result.output
    assert not list(tmp_path.glob("steps*")) and (tmp_path / "summary.json").exists()
    assert "traffic and synchronisation" not in result.stdout


@pytest.mark.mpi
@pytest.mark.slow
def test_clock_offsets_recorded_and_small_on_one_machine(tmp_path):
    assert train(3, tmp_path, "--steps", "2").returncode == 0
    config = read_json(tmp_path / "config.json")
    assert len(config["clock_offsets_s"]) == 3 and config["clock_offsets_s"][0] == 0
    # one machine, one monotonic clock: the estimate is within its own error bound
    for offset, error in zip(config["clock_offsets_s"], config["clock_error_s"]):
        assert abs(offset) <= error + 1e-4


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: None, "no such directory"),
        (lambda d: d.mkdir(), "not a run directory"),
        (lambda d: (d.mkdir(), (d / "config.json").write_text("{not json")), "not valid JSON"),
        (lambda d: (d.mkdir(), (d / "config.json").write_text('{"world_size": 2}')), "missing"),
    ],
)
def test_malformed_run_directory_is_one_line_exit_2(make, message, tmp_path):
    run_dir = tmp_path / "run"
    make(run_dir)
    result = netsim_report(run_dir)
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("netsim: error: ") and message in result.stderr


@pytest.mark.mpi
@pytest.mark.slow
def test_corrupt_record_in_the_middle_is_named(tmp_path):
    assert train(2, tmp_path, "--steps", "4").returncode == 0
    path = tmp_path / "steps-rank1.bin"
    good = path.read_bytes()
    frames = [0]  # where each frame starts: u32 size, u32 kind, payload, u32 size
    while frames[-1] < len(good):
        frames.append(frames[-1] + struct.unpack_from("<I", good, frames[-1])[0])
    middle = frames[len(frames) // 2]  # a step frame
    for at, value, message in (
        (middle + 4, 9, f"unknown frame kind 9 at byte {middle}"),
        (middle, 7, f"damaged at byte {middle}"),
    ):
        data = bytearray(good)
        struct.pack_into("<I", data, at, value)
        path.write_bytes(bytes(data))
        result = netsim_report(tmp_path)  # the steps before the damage, and the damage named
        assert result.returncode == 0 and not result.stderr and "DAMAGED RUN" in result.stdout
        assert f"steps-rank1.bin: {message}; {len(frames) // 2 - 2} steps readable" in result.stdout


@pytest.mark.mpi
@pytest.mark.slow
def test_bad_straggler_and_trace_options(tmp_path):
    for options, words in (
        (["--straggler", "7:0.1"], "names rank 7"),
        (["--straggler", "2"], "RANK:SECONDS"),
        (["--straggler", "1:x0.5"], "1 to 1000"),
        (["--trace-steps", "a-b"], "--trace-steps"),
    ):
        result = train(3, tmp_path / "run", *options)
        assert result.returncode == 2 and words in result.stdout, result.output


@pytest.mark.mpi
@pytest.mark.slow
def test_ring_channels_are_recorded_and_counted_as_their_own_rings(tmp_path):
    """Three channels on two nodes of two: every channel's ring enters each node at another
    local rank, so each rank sends to more than one peer; the bytes are still the count."""
    result = train(
        4,
        tmp_path,
        "--allreduce",
        "ring",
        "--channels",
        "3",
        "--ranks-per-node",
        "2",
        "--layers",
        "64,17,10",
        "--steps",
        "3",
        "--global-batch",
        "12",
    )
    assert result.returncode == 0, result.output
    config = read_json(tmp_path / "config.json")
    expected = RING.elements_sent(4, 1285, node_of_rank=config["node_of_rank"], channels=3) * 4
    traffic = read_json(tmp_path / "summary.json")["traffic"]
    assert traffic["bytes_sent_per_step_by_rank"] == expected.tolist()
    assert "(= ring analytic 2(p-1)/p x n)" in result.stdout
    with open(tmp_path / "links.csv", newline="") as f:
        peers = {(int(x["src"]), int(x["dst"])) for x in csv.DictReader(f)}
    assert len(peers) > 4  # not one ring's four links
