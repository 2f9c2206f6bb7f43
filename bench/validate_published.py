"""Does netsim predict real clusters? Every row of bench/published.md, predicted.

    python bench/validate_published.py [--json]

Each row names its hardware (a preset of netsim/cluster/presets, datasheet rates and NCCL's
own per-link figures, the same for every row of that hardware), its ranks and size, the
algorithm the measurement forced (NCCL_ALGO) or "auto" where NCCL chose, and how many GPUs
one process drove. The prediction is netsim.sim.nccl's: NCCL's tuning model on netsim's
links, the pick NCCL's model makes where the row left the choice to NCCL. Nothing is fitted
to the rows. Prints predicted, measured and pred/meas per row (busbw in GB/s, or time in
us for the latency rows), then the median and the worst |error| against the goal: median
<= 15%, every row within 0.67x-1.5x. Exits 1 where the goal is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netsim.cluster import topology  # noqa: E402
from netsim.sim import nccl  # noqa: E402

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
# id, preset, ranks, bytes, NCCL_ALGO ("auto": NCCL's choice), GPUs per process,
# measured, what was measured ("busbw" GB/s or "time" us)
ROWS = [
    ("A1", "hgx-h100", 8, 8 * GIB, "ring", 8, 368.1, "busbw"),
    ("A1", "hgx-h100", 8, 1 * GIB, "ring", 8, 360.1, "busbw"),
    ("A1", "hgx-h100", 8, 64 * MIB, "ring", 8, 318.6, "busbw"),
    ("A1", "hgx-h100", 8, 16 * MIB, "ring", 8, 231.9, "busbw"),
    ("A1", "hgx-h100", 8, 1 * MIB, "ring", 8, 39.4, "busbw"),
    ("A1", "hgx-h100", 8, 8, "ring", 8, 35.0, "time"),
    ("A1", "hgx-h100", 8, 64 * KIB, "ring", 8, 35.8, "time"),
    ("A2", "oci-h100-2node", 16, 1 * GIB, "auto", 1, 446.3, "busbw"),
    ("A2", "oci-h100-2node", 16, 16 * GIB, "auto", 1, 464.6, "busbw"),
    ("A3", "b200-rails", 32, 16 * GIB, "ring", 1, 334.8, "busbw"),
    ("A3", "b200-rails", 128, 16 * GIB, "ring", 1, 306.3, "busbw"),
    ("A3", "b200-rails", 256, 16 * GIB, "ring", 1, 304.4, "busbw"),
    ("A4", "b200-rails", 256, 16 * GIB, "collnet", 1, 544.3, "busbw"),
    ("A5", "oci-a100-2node", 16, 10 * GIB, "auto", 1, 222.9, "busbw"),
    ("A6", "v100-4node", 32, 1 * GIB, "auto", 1, 12.2, "busbw"),
]


def predict_rows() -> list[dict]:
    out = []
    for rid, preset, ranks, nbytes, algorithm, gpus, measured, what in ROWS:
        pick = nccl.estimates(topology.load(preset), ranks, nbytes, algorithm, "auto", None, gpus)[
            0
        ]
        predicted = pick.time_s * 1e6 if what == "time" else pick.busbw_bytes_per_s / 1e9
        out.append(
            {
                "id": rid,
                "preset": preset,
                "ranks": ranks,
                "bytes": nbytes,
                "asked": algorithm,
                "algorithm": pick.algorithm,
                "protocol": pick.protocol,
                "what": what,
                "predicted": predicted,
                "measured": measured,
                "ratio": predicted / measured,
            }
        )
    return out


def summary(rows: list[dict]) -> dict:
    errors = [abs(r["ratio"] - 1) for r in rows]
    worst = max(rows, key=lambda r: abs(r["ratio"] - 1))
    return {
        "rows": len(rows),
        "median_abs_error": statistics.median(errors),
        "worst_ratio": worst["ratio"],
        "worst_row": f"{worst['id']} {worst['ranks']} GPUs {worst['bytes']} B",
        "all_within_0.67_1.5": all(0.67 <= r["ratio"] <= 1.5 for r in rows),
    }


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes} B"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print rows and summary as JSON")
    args = parser.parse_args()
    rows = predict_rows()
    s = summary(rows)
    goal = s["median_abs_error"] <= 0.15 and s["all_within_0.67_1.5"]
    if args.json:
        print(json.dumps({"rows": rows, "summary": s, "goal_met": goal}, indent=2))
        return 0 if goal else 1
    print(
        f"{'id':<4} {'preset':<15} {'GPUs':>5} {'size':>8}  {'NCCL_ALGO':<9} {'picked':<17} "
        f"{'predicted':>12} {'measured':>11} pred/meas"
    )
    for r in rows:
        unit = "us" if r["what"] == "time" else "GB/s"
        print(
            f"{r['id']:<4} {r['preset']:<15} {r['ranks']:>5} {_size(r['bytes']):>8}  "
            f"{r['asked']:<9} {r['algorithm'] + '/' + r['protocol']:<17} "
            f"{r['predicted']:>7.1f} {unit:<4} {r['measured']:>6.1f} {unit:<4} {r['ratio']:>9.2f}"
        )
    print(
        f"median |error| {s['median_abs_error']:.1%}; worst x{s['worst_ratio']:.2f} "
        f"({s['worst_row']}); every row within 0.67x-1.5x: {s['all_within_0.67_1.5']}"
    )
    print(f"goal (median <= 15%, every row within 0.67x-1.5x): {'met' if goal else 'MISSED'}")
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
