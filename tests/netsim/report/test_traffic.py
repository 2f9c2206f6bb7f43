"""netsim.report (traffic, summary, text, timeline) on hand-made records with known answers
(no MPI)."""

import numpy as np
import pytest

from netsim.algorithms import RING
from netsim.report import summary, text, timeline, traffic

from traces import check_chrome_trace


def ns(seconds: float) -> int:
    """A clock reading as ranks write it: integer nanoseconds."""
    return int(round(seconds * 1e9))


def make_run(p=3, nparams=6, enter=None, steps=2, offsets=None, copy_s=(0.0, 0.0)):
    """Records as ranks write them: rank r enters the all-reduce at enter[r] (its own clock)
    and each round takes 1 ms after the later of the two partners posted; with copy_s, each
    step also stages the buffer through host memory, rank r's copies taking (r + 1) copy_s."""
    enter = enter if enter is not None else [0.0] * p
    offsets = offsets if offsets is not None else [0.0] * p
    sched = RING.schedule(p, nparams)
    config = {
        "world_size": p,
        "nparams": nparams,
        "buffer_bytes": nparams * 4,
        "node_of_rank": [0] * p,
        "clock_offsets_s": offsets,
        "config": {"allreduce": "ring", "dtype": "float32"},
    }
    records = [[] for _ in range(p)]
    for step in range(steps):
        base = step * 10.0
        ready = np.array(enter, dtype=float) + base  # global clock
        times = ready.copy()
        rounds = [[] for _ in range(p)]
        for rnd in sched.rounds:
            post = times.copy()
            done = times.copy()
            for a, b in zip(rnd.src, rnd.dst):
                end = max(post[a], post[b]) + 1e-3
                done[a], done[b] = max(done[a], end), max(done[b], end)
            for r in range(p):
                rounds[r].append(
                    [rnd.phase, rnd.index, ns(post[r] - offsets[r]), ns(done[r] - offsets[r])]
                )
            times = done
        for r in range(p):
            loc = -offsets[r]
            records[r].append(
                {
                    "step": step,
                    "epoch": 0,
                    "samples": 4,
                    "loss": 1.0,
                    "compute_s": 0.5,
                    "comm_s": times[r] - ready[r],
                    "t_start_ns": ns(ready[r] - 0.5 + loc),
                    "t_comm_ns": ns(ready[r] + loc),
                    "t_comm_end_ns": ns(times[r] + loc),
                    "t_end_ns": ns(times[r] + loc),
                    "bytes_sent": int(sched.elements_sent()[r] * 4),
                    "bytes_recv": int(sched.elements_received()[r] * 4),
                    "messages": int(sched.messages_sent()[r]),
                    "links": [
                        [
                            r,
                            (r + 1) % p,
                            int(sched.elements_sent()[r] * 4),
                            int(sched.messages_sent()[r]),
                        ]
                    ],
                    "rounds": rounds[r],
                    "d2h_bytes": nparams * 4 if any(copy_s) else 0,
                    "h2d_bytes": nparams * 4 if any(copy_s) else 0,
                    "d2h_s": (r + 1) * copy_s[0],
                    "h2d_s": (r + 1) * copy_s[1],
                }
            )
    return config, records


def test_stall_is_arrival_skew_and_late_rank_is_blamed():
    config, records = make_run(enter=[0.0, 0.0, 0.2])
    t = traffic.merge(config, records, complete=True)
    np.testing.assert_allclose(t.table["wait_s"][:, 0], 0.2)
    np.testing.assert_allclose(t.table["wait_s"][:, 1], 0.2)
    np.testing.assert_allclose(t.table["wait_s"][:, 2], 0.0)
    np.testing.assert_allclose(t.table["caused_wait_s"][:, 2], 0.4)
    np.testing.assert_allclose(t.table["transfer_s"], t.table["comm_s"] - t.table["wait_s"])
    s = summary.summarize(config, t)
    assert s["most_waited_for_rank"] == 2 and s["most_waited_for_share_of_steps"] == 1.0
    assert "most waited for: rank 2" in text.text(config, t, s)


def test_clock_offsets_put_ranks_on_one_clock():
    # rank 1's clock runs 100 s ahead; without its offset it would look 100 s late
    config, records = make_run(enter=[0.0, 0.0, 0.2], offsets=[0.0, -100.0, 0.0])
    t = traffic.merge(config, records, complete=True)
    np.testing.assert_allclose(t.table["wait_s"][:, :2], 0.2)


def test_peer_not_ready_shows_in_the_rounds_with_the_late_rank():
    config, records = make_run(enter=[0.0, 0.0, 0.2])
    t = traffic.merge(config, records, complete=True)
    first = t.round_labels.index(("reduce-scatter", 0))
    # rank 0 receives from 2 and sends to 1 in round 0; 2 posts 0.2 s after 0 did
    assert t.peer_not_ready_s[0, 0, first] == pytest.approx(0.2)
    assert t.peer_not_ready_s[0, 2, first] == pytest.approx(0.0)
    assert t.round_transfer_s[0, 0, first] == pytest.approx(1e-3)


def test_link_matrix_and_node_split():
    config, records = make_run(p=4, nparams=8)
    config["node_of_rank"] = [0, 0, 1, 1]
    t = traffic.merge(config, records, complete=True)
    m = t.link_matrix()
    per_link = 2 * 3 * 2 * 4 * 2  # 2(p-1) rounds x 2 elements x 4 bytes, over 2 steps
    assert m[0, 1] == m[1, 2] == m[2, 3] == m[3, 0] == per_link and m.sum() == 4 * per_link
    intra, inter = t.intra_inter_bytes()
    assert intra == inter == 2 * per_link  # 0->1, 2->3 inside nodes; 1->2, 3->0 between


def test_crashed_run_uses_steps_every_rank_recorded():
    config, records = make_run(steps=3)
    records[1] = records[1][:1]
    t = traffic.merge(config, records, complete=False)
    assert list(t.steps) == [0] and t.steps_by_rank == [3, 1, 3]
    assert "INCOMPLETE RUN" in text.text(config, t, summary.summarize(config, t))


def test_timeline_nests_and_names_every_rank():
    config, records = make_run(enter=[0.0, 0.0, 0.2], steps=3)
    t = traffic.merge(config, records, complete=True)
    trace = timeline.chrome_trace(config, t, {1, 2})
    assert trace["otherData"]["traced_steps"] == [1, 2]
    check_chrome_trace(trace, 3)


def test_a_staged_run_reports_its_copies_and_a_cpu_run_none():
    config, records = make_run(nparams=1024, copy_s=(300e-6, 200e-6))
    t = traffic.merge(config, records, complete=True)
    s = summary.summarize(config, t)
    assert s["copies"] == {
        "d2h_bytes_per_step_by_rank": [4096.0] * 3,
        "h2d_bytes_per_step_by_rank": [4096.0] * 3,
        "d2h_s_median_by_rank": pytest.approx([300e-6, 600e-6, 900e-6]),
        "h2d_s_median_by_rank": pytest.approx([200e-6, 400e-6, 600e-6]),
    }
    assert (
        "  GPU <-> host copies per step (staging): 4.0 KiB each to the host, 4.0 KiB each back; "
        "median 300.0 us-900.0 us to the host (overlapping the rounds), 200.0 us-600.0 us back"
    ) in text.text(config, t, s).splitlines()
    config, records = make_run()
    t = traffic.merge(config, records, complete=True)
    s = summary.summarize(config, t)
    assert "copies" not in s and "copies" not in text.text(config, t, s)
