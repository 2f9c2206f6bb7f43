"""A device gradient staged through host memory in the order the rounds need it: the plan
covers the buffer once and ahead of every round, and (real mpirun, NumPy standing in for
the device, a copier that lands each piece only when waited for) every schedule's staged
sum equals its plain one to the bit, while the same run without the waits does not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from allreduce_train.exchange import staging
from allreduce_train.exchange.schedule import ScheduleAllreduce
from netsim import algorithms

from conftest import mpirun, program

NAMES = ["ring", "halving-doubling", "recursive-doubling", "tree", "parameter-server"]


def touched(name: str, p: int, rank: int, n: int, channels: int = 1):
    schedule = algorithms.get(name).schedule(p, n, channels=channels)
    return ScheduleAllreduce(schedule, rank, None, np, np.float32).touched()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("p,n", [(1, 10), (2, 7), (3, 1001), (4, 1000), (5, 3)])
def test_the_plan_copies_everything_once_and_before_the_round_that_needs_it(name, p, n):
    for rank in range(p):
        rounds = touched(name, p, rank, n)
        pieces = staging.plan(rounds, n)
        assert len(pieces) == len(rounds) + 1
        flat = sorted(piece for round_pieces in pieces for piece in round_pieces)
        mask = np.zeros(n, dtype=int)
        for lo, hi in flat:
            mask[lo:hi] += 1
        assert (mask == 1).all()  # every element exactly once
        have = np.zeros(n, dtype=bool)
        for k, ranges in enumerate(rounds):
            for lo, hi in pieces[k]:
                have[lo:hi] = True
            for lo, hi in ranges:
                assert have[lo:hi].all(), (name, p, rank, k)


def test_the_ring_starts_sending_before_most_of_the_buffer_is_on_the_host():
    n, p = 4000, 4
    first = staging.plan(touched("ring", p, 0, n), n)[0]
    assert sum(hi - lo for lo, hi in first) == 2 * n // p  # the chunk it sends, the one it adds


@pytest.mark.mpi
@pytest.mark.parametrize("p", [2, 3, 4])
def test_every_schedule_staged_sums_as_it_does_on_the_host(p, tmp_path):
    n = 1001
    result = mpirun(p, [program("staged_allreduce.py"), str(tmp_path / "out"), str(n)], timeout=120)
    assert result.returncode == 0, result.output
    for rank in range(p):
        report = json.loads((tmp_path / f"out.{rank}").read_text())
        assert set(report) >= {f"{a} x{c}" for a in NAMES for c in (1, 2)} | {"mpi x1"}
        for key, got in report.items():
            assert got["same"], (rank, key)
            assert got["moved"] == [n, n], (rank, key)  # the gradient there and back, once
            if key != "mpi x1":
                assert got["wrong_unwaited"], (rank, key)  # the waits are what makes it right
            assert got["direct_same"], (rank, key)
            assert got["direct_syncs"] == max(got["rounds"], 1) + 1, (rank, key)  # + the end
            plain, staged = got["records"]
            network = ("bytes_sent", "bytes_recv", "messages")
            assert [staged[k] for k in network] == [plain[k] for k in network], (rank, key)
            assert (plain["d2h_bytes"], plain["h2d_bytes"], plain["d2h_s"]) == (0, 0, 0.0)
            assert (staged["d2h_bytes"], staged["h2d_bytes"]) == (4 * n, 4 * n), (rank, key)
            assert staged["d2h_s"] > 0 and staged["h2d_s"] > 0, (rank, key)
