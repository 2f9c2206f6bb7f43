"""--allreduce auto and --transport auto: what netsim's model predicts fastest, agreed by every
rank.

Rank 0 reads this machine's calibration (netsim.calibration.choose.machine_specs: the files
`python -m netsim calibrate` keeps per host, the message path and the shared-memory path, or
the built-in estimate) and simulates every candidate for the run's buffer, rank count and
node layout: each algorithm at each channel count (or the one asked for), through messages
and, on the CPU, through shared memory inside a node (or the transport asked for). The
choice goes to every rank by broadcast, so all run the same schedule the same way even if
their files or clocks differ. The run's config then names what was picked (config.json,
summary.json and every report read it as if it had been asked for), and with --allreduce
auto its `allreduce_choice` keeps why: the candidates' predicted times and the model's
source. A named algorithm with --transport auto gets its transport the same way (the banner's
device line says shared memory); a library's all-reduce (mpi, nccl), a GPU's gradient and
an async run move messages.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config.config import Config
from ..exits import UsageError
from ..maths import model
from . import buckets


def resolve(cfg: Config, world, node_of_rank, widths, on_gpu: bool | None = None) -> Config:
    """cfg with the algorithm and channels auto picked, and why (`allreduce_choice`, whose
    `why` is the line the banner prints), and the transport where it is auto; cfg itself
    when the run named both. on_gpu: whether the gradient lives on a GPU (None: found out
    from --device). Collective: every rank calls it."""
    picks_transport = cfg.transport == "auto"
    if cfg.allreduce != "auto" and not picks_transport:
        return cfg
    if cfg.mode == "async":  # no all-reduce: the ring is what its reports compare with
        return dataclasses.replace(
            cfg,
            allreduce="ring" if cfg.allreduce == "auto" else cfg.allreduce,
            channels=cfg.channels or 1,
            transport="mpi" if picks_transport else cfg.transport,
        )
    if picks_transport and (_library(cfg.allreduce) or _gpu(cfg, world, on_gpu)):
        if cfg.allreduce != "auto":  # messages, and nothing to pick
            return dataclasses.replace(cfg, transport="mpi")
        cfg = dataclasses.replace(cfg, transport="mpi")
    error, choice = world.bcast(
        _on_root(cfg, world, node_of_rank, widths) if world.is_root else None
    )
    if error is not None:
        option = "--allreduce auto" if cfg.allreduce == "auto" else "--transport auto"
        raise UsageError(f"{option}: {error}")
    if cfg.allreduce != "auto":  # the named algorithm: only its transport was picked
        return dataclasses.replace(cfg, transport=choice["transport"])
    return dataclasses.replace(
        cfg,
        allreduce=choice["algorithm"],
        channels=choice["channels"],
        transport=choice["transport"],
        allreduce_choice=choice,
    )


def _library(name: str) -> bool:
    """Whether the named all-reduce is a library's (it moves its own bytes: no transport)."""
    from netsim import algorithms

    return name != "auto" and not algorithms.get(name).scheduled


def _gpu(cfg: Config, world, on_gpu: bool | None) -> bool:
    if on_gpu is not None or cfg.device == "cpu":
        return bool(on_gpu)
    from ..maths import backend  # as setup selected it (--device auto: a GPU if there is one)

    return backend.select(cfg.device, world.local_rank, world.local_size).on_gpu


def _on_root(cfg: Config, world, node_of_rank, widths) -> tuple[str | None, dict | None]:
    from netsim.calibration import choose
    from netsim.errors import InputError

    segments = model.layer_segments(widths)
    nelems, itemsize = sum(n for _, n in segments), np.dtype(cfg.dtype).itemsize
    layout = node_of_rank if len(set(node_of_rank)) > 1 else None
    try:
        specs, source = choose.machine_specs()
        picked = choose.choose(
            specs["mpi"],
            world.world_size,
            nelems,
            itemsize,
            layout,
            segments,
            source,
            channels=cfg.channels,
            shm=specs.get("shm"),
            transport=None if cfg.transport == "auto" else cfg.transport,
            algorithm=None if cfg.allreduce == "auto" else cfg.allreduce,
        )
        per_bucket = None
        spans = buckets.plan(widths, itemsize, cfg.bucket_mb, cfg.first_bucket_mb)
        if cfg.allreduce == "auto" and len(spans) > 1:
            # each bucket its own pick, on the transport picked for the gradient (its memory
            # is one window or none); sizes met twice are picked once
            seen: dict[int, dict] = {}
            per_bucket = []
            for b in spans:
                n = b.hi - b.lo
                if n not in seen:
                    mine = choose.choose(
                        specs["mpi"], world.world_size, n, itemsize, layout,
                        buckets.within(segments, b.lo, b.hi), source, channels=cfg.channels,
                        shm=specs.get("shm"), transport=picked.transport,
                    )  # fmt: skip
                    seen[n] = {"algorithm": mine.algorithm, "channels": mine.channels,
                               "predicted_s": min(mine.predicted_s.values())}  # fmt: skip
                per_bucket.append({"bytes": n * itemsize, **seen[n]})
    except InputError as exc:
        return str(exc), None
    why = picked.line(nelems * itemsize, world.world_size)
    if per_bucket is not None:
        picks = [c["algorithm"] + (f" x{c['channels']}" if c["channels"] > 1 else "")
                 for c in per_bucket]  # fmt: skip
        counted = ", ".join(f"{name} for {picks.count(name)}" for name in dict.fromkeys(picks))
        why += f"; per bucket of {len(per_bucket)}: {counted}"
    return None, {
        **picked.to_dict(),
        "nbytes": nelems * itemsize,
        "world_size": world.world_size,
        "why": why,
        **({"buckets": per_bucket} if per_bucket is not None else {}),
    }
