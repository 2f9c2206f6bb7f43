"""timeline.json: the chosen steps of a run in Chrome trace event format (opens in Perfetto
or chrome://tracing). One process per rank, three tracks each:

  compute        forward/backward (and any injected delay), then the optimizer update
  communication  the all-reduce, with its rounds nested inside it
  stall          the part of the all-reduce spent waiting for ranks that arrived later

A run all-reduced in more than one bucket draws its communication apart from the wait after
backward, so that one sees it overlap backward:

  communication  (drawn under compute) one slice per bucket, from the start of its
                 all-reduce to its end, its rounds nested inside it; args: its bytes, when
                 it was ready, the shares of it hidden under backward and exposed
  exposed wait   the wait after backward for the last buckets (the all-reduce slice above)

and marks on the compute track when each bucket became ready (an instant, and a flow arrow
from there to the start of its all-reduce).

Each message is a flow arrow from the round in which its sender posted it to the round in
which its receiver completed it. Times are microseconds on rank 0's clock, counted from
the start of the first traced step. Only `--trace-steps` are drawn, so the file stays
small however long the run (a few KiB per step per rank).
"""

from __future__ import annotations

import numpy as np

from .traffic import Traffic

COMPUTE, COMM, STALL, BUCKETS = 0, 1, 2, 3
_TRACKS = {COMPUTE: "compute", COMM: "communication", STALL: "stall"}
# a run in buckets: its buckets' communication under compute, then the wait after backward
_BUCKET_TRACKS = {COMPUTE: "compute", BUCKETS: "communication", COMM: "exposed wait",
                  STALL: "stall"}  # fmt: skip


def chrome_trace(config: dict, traffic: Traffic, traced_steps) -> dict:
    rows = [s for s, step in enumerate(traffic.steps) if int(step) in traced_steps]
    events = _metadata(traffic)
    if rows:
        origin = traffic.times["t_start"][rows].min()
        us = lambda t: round((t - origin) * 1e6, 3)  # noqa: E731 (a unit conversion, named)
        for s in rows:
            events += _step_events(traffic, s, us)
            events += _bucket_events(traffic, s, us)
            events += _message_flows(traffic, s, us)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "run_dir": config.get("run_dir"),
            "world_size": traffic.world_size,
            "traced_steps": [int(traffic.steps[s]) for s in rows],
            "clock": "rank 0's perf_counter, offsets measured at start-up",
        },
    }


def _metadata(traffic: Traffic) -> list[dict]:
    events = []
    for r in range(traffic.world_size):
        events.append(
            {
                "ph": "M",
                "name": "process_name",
                "pid": r,
                "tid": 0,
                "ts": 0,
                "args": {"name": f"rank {r} (node {traffic.node_of_rank[r]})"},
            }
        )
        events.append(
            {
                "ph": "M",
                "name": "process_sort_index",
                "pid": r,
                "tid": 0,
                "ts": 0,
                "args": {"sort_index": r},
            }
        )
        tracks = _BUCKET_TRACKS if traffic.nbuckets > 1 else _TRACKS
        for order, (tid, name) in enumerate(tracks.items()):
            events.append(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": r,
                    "tid": tid,
                    "ts": 0,
                    "args": {"name": name},
                }
            )
            if traffic.nbuckets > 1:
                events.append(
                    {
                        "ph": "M",
                        "name": "thread_sort_index",
                        "pid": r,
                        "tid": tid,
                        "ts": 0,
                        "args": {"sort_index": order},
                    }
                )
    return events


def _slice(name, pid, tid, start_us, end_us, **args) -> dict:
    return {
        "ph": "X",
        "name": name,
        "pid": pid,
        "tid": tid,
        "ts": start_us,
        "dur": round(max(end_us - start_us, 0.0), 3),
        "args": args,
    }


def _step_events(traffic: Traffic, s: int, us) -> list[dict]:
    t, tab, step = traffic.times, traffic.table, int(traffic.steps[s])
    last = int(t["t_comm"][s].argmax())
    events = []
    for r in range(traffic.world_size):
        start, enter, leave, end = (
            us(t[k][s, r]) for k in ("t_start", "t_comm", "t_comm_end", "t_end")
        )
        events.append(_slice(f"forward/backward {step}", r, COMPUTE, start, enter, step=step))
        events.append(_slice(f"update {step}", r, COMPUTE, leave, end, step=step))
        events.append(
            _slice(
                f"all-reduce {step}",
                r,
                COMM,
                enter,
                leave,
                step=step,
                bytes_sent=_int(tab["bytes_sent"][s, r]),
            )
        )
        wait = tab["wait_s"][s, r]
        if wait > 0:
            events.append(
                _slice(
                    f"stall: waiting for rank {last}",
                    r,
                    STALL,
                    enter,
                    us(t["t_comm"][s, r] + wait),
                    step=step,
                    waited_for=last,
                )
            )
        track = BUCKETS if traffic.nbuckets > 1 else COMM  # nested in its bucket, or the call
        for phase, index, posted, done, _ in traffic.raw_rounds[r][s] if traffic.raw_rounds else []:
            events.append(_slice(f"{phase} {index}", r, track, us(posted), us(done), step=step))
    return events


def _bucket_events(traffic: Traffic, s: int, us) -> list[dict]:
    """A run in more than one bucket: each bucket's all-reduce on the communication track,
    and when it became ready on the compute track (an instant and a flow to its start)."""
    b, step = traffic.buckets, int(traffic.steps[s])
    if traffic.nbuckets < 2:
        return []
    events = []
    for r in range(traffic.world_size):
        for k, layout in enumerate(b.layout):
            ready, start, end = (us(a[s, r, k]) for a in (b.ready, b.start, b.end))
            took = b.end[s, r, k] - b.start[s, r, k]
            hidden = float(b.hidden_s[s, r, k] / took) if took > 0 else 0.0
            events.append(
                _slice(f"bucket {k}", r, BUCKETS, start, end, step=step, bucket=k,
                       bytes=layout["bytes"], bytes_sent=_int(b.bytes_sent[s, r, k]),
                       ready_us=ready, hidden_share=round(hidden, 4),
                       exposed_share=round(1.0 - hidden, 4))
            )  # fmt: skip
            events.append(
                {"ph": "i", "s": "t", "name": f"bucket {k} ready", "pid": r, "tid": COMPUTE,
                 "ts": ready, "args": {"step": step, "bucket": k, "bytes": layout["bytes"]}}
            )  # fmt: skip
            flow = f"{step}:ready:{r}:{k}"
            events.append({"ph": "s", "id": flow, "name": "bucket ready", "cat": "bucket",
                           "pid": r, "tid": COMPUTE, "ts": ready})  # fmt: skip
            events.append({"ph": "f", "bp": "e", "id": flow, "name": "bucket ready",
                           "cat": "bucket", "pid": r, "tid": BUCKETS, "ts": start})  # fmt: skip
    return events


def _message_flows(traffic: Traffic, s: int, us) -> list[dict]:
    """One arrow per message, from sender's round to receiver's round (flow events bind to
    the enclosing slice on their track)."""
    if traffic.raw_rounds is None:
        return []
    events, step = [], int(traffic.steps[s])
    track = BUCKETS if traffic.nbuckets > 1 else COMM
    when = [
        {(b, ph, ix): (tp, td) for ph, ix, tp, td, b in traffic.raw_rounds[r][s]}
        for r in range(traffic.world_size)
    ]
    each = [(b, rnd) for b, schedule in enumerate(traffic.schedules) for rnd in schedule.rounds]
    for b, rnd in each:
        for src, dst, count in zip(rnd.src, rnd.dst, rnd.count):
            key = (b, rnd.phase, rnd.index)
            if key not in when[src] or key not in when[dst]:
                continue
            bucket = f"b{b}:" if traffic.nbuckets > 1 else ""
            flow = f"{step}:{bucket}{rnd.phase}:{rnd.index}:{src}->{dst}"
            events.append(
                {
                    "ph": "s",
                    "id": flow,
                    "name": "message",
                    "cat": "message",
                    "pid": int(src),
                    "tid": track,
                    "ts": us(when[src][key][0]),
                }
            )
            events.append(
                {
                    "ph": "f",
                    "bp": "e",
                    "id": flow,
                    "name": "message",
                    "cat": "message",
                    "pid": int(dst),
                    "tid": track,
                    "ts": us(when[dst][key][1]),
                    "args": {"elements": int(count)},
                }
            )
    return events


def _int(v):
    return None if np.isnan(v) else int(v)
