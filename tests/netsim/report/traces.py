"""What makes a timeline.json valid Chrome trace: checked on hand-made and on real runs."""


def check_chrome_trace(trace, p):
    """Valid Chrome trace: every event has ph/ts/pid; on one track, slices nest or are apart."""
    events = trace["traceEvents"]
    assert all({"ph", "ts", "pid"} <= set(e) for e in events)
    names = {e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert names == set(range(p))
    tracks = {}
    for e in events:
        if e["ph"] == "X":
            assert e["dur"] >= 0 and round(e["dur"], 3) == e["dur"]  # whole nanoseconds, as ts
            tracks.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    assert {pid for pid, _ in tracks} == set(range(p))
    for spans in tracks.values():
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack = []
        for start, end in spans:
            # a slice that ends where the next begins may overshoot that ts by a rounding
            # error of ts + dur in binary floating point
            while stack and stack[-1] <= start + 1e-6:
                stack.pop()
            assert not stack or end <= stack[-1] + 1e-6, "slices overlap without nesting"
            stack.append(end)
    flows = [e for e in events if e["ph"] in "sf"]
    assert len(flows) % 2 == 0 and {e["id"] for e in flows if e["ph"] == "s"} == {
        e["id"] for e in flows if e["ph"] == "f"
    }
