"""Does netsim predict published data-parallel scaling? Every row of bench/scaling.md.

    python bench/validate_scaling.py [--json]

Each row is a published throughput (samples/s) of a data-parallel run on P GPUs, beside the
single-GPU throughput the same source reports for the same model, precision and per-GPU
batch. The prediction: the built-in workload (netsim.workload, generated from the
architecture), its layers' compute scaled to the source's single-GPU step (batch / its
samples/s: forward, backward, optimizer and input pipeline as one GPU ran them), the
gradients bucketed as the source's framework does (PyTorch DDP's 25 MiB after a 1 MiB
first bucket; apex's DDP, in NGC 20.03, buckets of 10 M elements and no small first one, or
one bucket where its message_size exceeds the model), every bucket's all-reduce from
NCCL's model on the hardware's preset (netsim/cluster/presets: datasheet rates and NCCL's
own per-link figures, one preset per hardware), and the step simulated by netsim.sim.step.
Predicted samples/s = P x batch x micro-steps / step. Nothing is fitted to the rows: the
compute comes from each source's own single-GPU figure, the network from the preset.

Prints predicted, measured and pred/meas per row, the efficiency both imply, and the median
and worst |error| against the goal: median <= 10%, every row within 0.8x-1.25x. Exits 1
where the goal is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netsim import algorithms  # noqa: E402
from netsim.cluster import topology  # noqa: E402
from netsim.sim import step  # noqa: E402
from netsim.workload import catalog  # noqa: E402

MIB = 1 << 20
TORCH_DDP = (25 * MIB, MIB)  # bucket_cap_mb=25, _DEFAULT_FIRST_BUCKET_BYTES
APEX_DDP = (10_000_000 * 4, None)  # apex.parallel.DistributedDataParallel(message_size=1e7)
ONE_BUCKET = (None, None)  # apex's message_size=250e6 > BERT-base's 110 M: one bucket

# source, hardware preset, workload, seq, precision, gradient dtype, per-GPU batch,
# micro-steps per step, buckets, GPUs, single-GPU samples/s, measured samples/s
D = "DLE-RN50"  # NVIDIA DeepLearningExamples, ResNet50 v1.5 PyTorch README (21.03)
R = "DLPerf-RN50"  # OneFlow DLPerf: NVIDIA's RN50 PyTorch, NGC 20.03, 4 x 8 V100, 100G IB
B = "DLPerf-BERT"  # OneFlow DLPerf: NVIDIA's BERT PyTorch, NGC 20.03, the same cluster
ROWS = [
    (D, "oci-a100-2node", "resnet-50", None, "TF32", "float32", 256, 1, TORCH_DDP, 8, 938, 7248),
    (D, "oci-a100-2node", "resnet-50", None, "AMP", "float32", 256, 1, TORCH_DDP, 8, 2470, 16621),
    (D, "v100-4node", "resnet-50", None, "FP32 16G", "float32", 112, 2, TORCH_DDP, 8, 367, 2855),
    (D, "v100-4node", "resnet-50", None, "AMP 16G", "float32", 256, 1, TORCH_DDP, 8, 1200, 8322),
    (D, "v100-4node", "resnet-50", None, "FP32 32G", "float32", 112, 2, TORCH_DDP, 8, 356, 2766),
    (D, "v100-4node", "resnet-50", None, "AMP 32G", "float32", 256, 1, TORCH_DDP, 8, 1156, 8056),
    *[
        (R, "v100-4node", "resnet-50", None, "FP32", "float32", 128, 1, APEX_DDP, p, 367.29, m)
        for p, m in ((4, 1449.48), (8, 2887.65), (16, 5716.79), (32, 10917.09))
    ],
    *[
        (R, "v100-4node", "resnet-50", None, "AMP", "float32", 256, 1, APEX_DDP, p, 802.9, m)
        for p, m in ((4, 3137.44), (8, 6154.66), (16, 11991.94), (32, 22551.16))
    ],
    *[
        (B, "v100-4node", "bert-base", 128, prec, dtype, b, 1, ONE_BUCKET, p, single, m)
        for prec, dtype, b, single, measured in (
            ("FP32", "float32", 32, 119.6, (457.72, 921.32, 1499.4, 2885.81)),
            ("FP32", "float32", 48, 121.94, (464.66, 928.01, 1584.32, 3039.3)),
            ("FP16", "float16", 64, 444.51, (1671.66, 3251.7, 4936.92, 9331.72)),
            ("FP16", "float16", 96, 462.35, (1727.93, 3287.12, 5426.07, 10349.12)),
        )
        for p, m in zip((4, 8, 16, 32), measured)
    ],
]
GOAL_MEDIAN, GOAL_LOW, GOAL_HIGH = 0.10, 0.8, 1.25


def predict(row) -> dict:
    source, preset, name, seq, _, dtype, batch, accumulate, plan, p, single, _ = row
    topo = topology.load(preset)
    workload = catalog.builtin(name, seq).with_(batch=batch)
    forward, backward = step.compute_times(workload, step_s=batch / single)
    timer = step.Timer(topo, p, "nccl", algorithms.RING, 4 if dtype == "float32" else 2)
    cap, first = plan
    return step.step(
        workload,
        timer,
        forward,
        backward,
        grad_dtype=dtype,
        cap_bytes=cap,
        first_cap_bytes=first,
        overlap=cap is not None,
        accumulate=accumulate,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows = []
    for row in ROWS:
        source, preset, name, seq, precision, _, batch, accumulate, _, p, single, measured = row
        out = predict(row)
        rows.append(
            {
                "source": source,
                "hardware": preset,
                "model": name if seq is None else f"{name} seq {seq}",
                "precision": precision,
                "batch": batch,
                "accumulate": accumulate,
                "gpus": p,
                "single_gpu": single,
                "measured": measured,
                "predicted": out["samples_per_s"],
                "ratio": out["samples_per_s"] / measured,
                "measured_efficiency": measured / (p * single),
                "predicted_efficiency": out["scaling_efficiency"],
                "exposed_ms": out["exposed_comm_s"] * 1e3,
                "buckets": len(out["buckets"]),
            }
        )
    errors = [abs(r["ratio"] - 1) for r in rows]
    median, worst = statistics.median(errors), max(errors)
    inside = sum(GOAL_LOW <= r["ratio"] <= GOAL_HIGH for r in rows)
    ok = median <= GOAL_MEDIAN and inside == len(rows)
    if args.json:
        print(json.dumps({"rows": rows, "median_abs_error": median, "worst": worst}, indent=1))
        return 0 if ok else 1
    print(
        f"{'source':<12} {'hardware':<15} {'model':<17} {'prec':<8} {'batch':>5} {'GPUs':>4} "
        f"{'measured':>10} {'predicted':>10} {'pred/meas':>9} {'eff meas':>8} {'eff pred':>8} "
        f"{'exposed':>9}"
    )
    for r in rows:
        print(
            f"{r['source']:<12} {r['hardware']:<15} {r['model']:<17} {r['precision']:<8} "
            f"{r['batch']:>5} {r['gpus']:>4} {r['measured']:>10,.0f} {r['predicted']:>10,.0f} "
            f"{r['ratio']:>9.3f} {r['measured_efficiency']:>8.1%} "
            f"{r['predicted_efficiency']:>8.1%} {r['exposed_ms']:>6.1f} ms"
        )
    worst_row = max(rows, key=lambda r: abs(r["ratio"] - 1))
    print(
        f"{len(rows)} rows: median |error| {median:.1%}, worst {worst:.1%} ({worst_row['source']} "
        f"{worst_row['model']} {worst_row['precision']} on {worst_row['gpus']} GPUs); "
        f"{inside} of {len(rows)} within {GOAL_LOW}x-{GOAL_HIGH}x"
    )
    print(
        f"goal (median <= {GOAL_MEDIAN:.0%}, every row within {GOAL_LOW}x-{GOAL_HIGH}x): "
        f"{'met' if ok else 'missed'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
