"""What rank 0 prints: the start banner, one line per epoch, the final summary."""

from __future__ import annotations

from collections import Counter

from netsim import algorithms
from netsim.report.text import nbytes

from ..config.config import SGD_MOMENTUM


def banner(d: dict) -> str:
    cfg, ds = d["config"], d["dataset"]
    hosts = ", ".join(f"{h} x{n}" for h, n in Counter(d["hostnames"]).items())
    batches = sorted(set(d["local_batch_by_rank"]))
    per_rank = "-".join(map(str, batches)) if len(batches) > 1 else str(batches[0])
    algorithm = algorithms.get(cfg["allreduce"]).label
    batch = f"global batch {cfg['global_batch']} ({per_rank} per rank)"
    if cfg.get("mode") == "async":
        algorithm = "Downpour SGD against parameter servers"
        batch = f"batch {cfg['global_batch']} per replica step"
    return "\n".join(
        [
            f"allreduce_train: {d['world_size']} rank{'s' * (d['world_size'] > 1)} on {d['nodes']} "
            f"node{'s' * (d['nodes'] > 1)} ({hosts}); {d['mpi_library']}",
            f"  device   {d['device']}",
            f"  model    {'-'.join(map(str, d['layers']))} {cfg['activation']}, {cfg['loss']} "
            f"loss, {d['nparams']:,} parameters ({nbytes(d['buffer_bytes'])} {cfg['dtype']}), "
            f"{algorithm}",
            *(
                [f"  auto     {cfg['allreduce_choice']['why']}"]
                if cfg.get("allreduce_choice")
                else []
            ),
            f"  data     {ds['name']}: {ds['train_samples']:,} train / {ds['test_samples']:,} "
            f"test; {batch}, "
            f"{d['steps_per_epoch']} steps per epoch, {d['total_steps']} steps",
            f"  optim    {optimizer(cfg)}, weight decay {cfg['weight_decay']:g}, seed "
            f"{cfg['seed']}",
            f"  records  {d['run_dir']}",
        ]
    )


def optimizer(cfg: dict) -> str:
    if cfg.get("optimizer") == "adagrad":
        return f"Adagrad lr {cfg['lr']:g}"
    momentum = cfg["momentum"]
    if momentum is None:
        momentum = SGD_MOMENTUM if cfg.get("mode", "sync") == "sync" else 0.0
    return f"SGD lr {cfg['lr']:g}, momentum {momentum:g}"


def epoch_line(
    step: int,
    steps_per_epoch: int,
    train_loss: float,
    test_loss: float,
    accuracy: float,
    samples_per_s: float,
    comm_share: float,
) -> str:
    epoch = step // steps_per_epoch + 1
    return (
        f"epoch {epoch:>3}  step {step + 1:>6}  train loss {train_loss:.4f}  "
        f"test loss {test_loss:.4f}  test acc {accuracy:.4f}  "
        f"{samples_per_s:>9,.0f} samples/s  comm {comm_share:>4.0%}"
    )


def final_report(s: dict) -> str:
    if s.get("mode") == "async":
        r = len(s["steps_by_rank"]) - s["servers"]
        return (
            f"done: {s['steps']} batches on {r} replica{'s' * (r > 1)} in {s['wall_s']:.2f} s, "
            f"{s['samples_per_s']:,.0f} samples/s; test accuracy {s['test_accuracy']:.4f}, test "
            f"loss {s['test_loss']:.4f} (the servers' final weights, blake2b "
            f"{s['weights_blake2b']})"
        )
    p = s["world_size"]
    lines = [
        f"done: {s['steps']} steps in {s['wall_s']:.2f} s, {s['samples_per_s']:,.0f} samples/s; "
        f"test accuracy {s['test_accuracy']:.4f}, test loss {s['test_loss']:.4f}"
    ]
    compute = sum(s["compute_s_by_rank"]) / p / max(s["steps"], 1)
    comm = sum(s["comm_s_by_rank"]) / p / max(s["steps"], 1)
    lines.append(
        f"  per step (mean over ranks): compute {compute * 1e3:.2f} ms, all-reduce "
        f"{comm * 1e3:.2f} ms ({s['comm_share']:.0%} of step time)"
    )
    lines.append(
        f"  replicas: bit-identical on {p} rank{'s' * (p > 1)} (weights blake2b "
        f"{s['weights_blake2b']})"
    )
    skipped = s.get("nonfinite_skipped_steps")
    if skipped:
        shown = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
        lines.append(
            f"  skipped {len(skipped)} step{'s' * (len(skipped) > 1)} whose gradient was not "
            f"finite: {shown}"
        )
    return "\n".join(lines)
