"""timeline.json: the chosen steps of a run in Chrome trace event format (opens in Perfetto
or chrome://tracing). One process per rank, three tracks each:

  compute        forward/backward (and any injected delay), then the optimizer update
  communication  the all-reduce, with its rounds nested inside it
  stall          the part of the all-reduce spent waiting for ranks that arrived later

Each message is a flow arrow from the round in which its sender posted it to the round in
which its receiver completed it. Times are microseconds on rank 0's clock, counted from
the start of the first traced step. Only `--trace-steps` are drawn, so the file stays
small however long the run (a few KiB per step per rank).
"""

from __future__ import annotations

import numpy as np

from .traffic import Traffic

COMPUTE, COMM, STALL = 0, 1, 2
_TRACKS = {COMPUTE: "compute", COMM: "communication", STALL: "stall"}


def chrome_trace(config: dict, traffic: Traffic, traced_steps) -> dict:
    rows = [s for s, step in enumerate(traffic.steps) if int(step) in traced_steps]
    events = _metadata(traffic)
    if rows:
        origin = traffic.times["t_start"][rows].min()
        us = lambda t: round((t - origin) * 1e6, 3)  # noqa: E731 (a unit conversion, named)
        for s in rows:
            events += _step_events(traffic, s, us)
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
        for tid, name in _TRACKS.items():
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
        for phase, index, posted, done in traffic.raw_rounds[r][s] if traffic.raw_rounds else []:
            events.append(_slice(f"{phase} {index}", r, COMM, us(posted), us(done), step=step))
    return events


def _message_flows(traffic: Traffic, s: int, us) -> list[dict]:
    """One arrow per message, from sender's round to receiver's round (flow events bind to
    the enclosing slice on their track)."""
    if traffic.raw_rounds is None:
        return []
    events, step, schedule = [], int(traffic.steps[s]), traffic.schedule
    when = [
        {(ph, ix): (tp, td) for ph, ix, tp, td in traffic.raw_rounds[r][s]}
        for r in range(traffic.world_size)
    ]
    for rnd in schedule.rounds:
        for src, dst, count in zip(rnd.src, rnd.dst, rnd.count):
            key = (rnd.phase, rnd.index)
            if key not in when[src] or key not in when[dst]:
                continue
            flow = f"{step}:{rnd.phase}:{rnd.index}:{src}->{dst}"
            events.append(
                {
                    "ph": "s",
                    "id": flow,
                    "name": "message",
                    "cat": "message",
                    "pid": int(src),
                    "tid": COMM,
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
                    "tid": COMM,
                    "ts": us(when[dst][key][1]),
                    "args": {"elements": int(count)},
                }
            )
    return events


def _int(v):
    return None if np.isnan(v) else int(v)
