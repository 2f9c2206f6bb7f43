"""--allreduce auto: the all-reduce netsim's model predicts fastest, agreed by every rank.

Rank 0 reads this machine's calibration (netsim.calibration.choose.machine_spec: the file `python
-m netsim calibrate` keeps per host, or the built-in estimate) and simulates every
candidate for the run's buffer, rank count and node layout; the choice goes to every rank by
broadcast, so all run the same schedule even if their files or clocks differ. The run's
config then names the algorithm picked (config.json, summary.json and every report read it
as if it had been asked for), and its `allreduce_choice` keeps why: the candidates'
predicted times and the model's source.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config.config import Config
from ..exits import UsageError
from ..maths import model


def resolve(cfg: Config, world, node_of_rank, widths) -> Config:
    """cfg with the algorithm and channels auto picked, and why (`allreduce_choice`, whose
    `why` is the line the banner prints); cfg itself when the run asked for an algorithm by
    name. Collective: every rank calls it."""
    if cfg.allreduce != "auto":
        return cfg
    if cfg.mode == "async":  # no all-reduce: the ring is what its reports compare with
        return dataclasses.replace(cfg, allreduce="ring", channels=cfg.channels or 1)
    error, choice = world.bcast(
        _on_root(cfg, world, node_of_rank, widths) if world.is_root else None
    )
    if error is not None:
        raise UsageError(f"--allreduce auto: {error}")
    return dataclasses.replace(
        cfg, allreduce=choice["algorithm"], channels=choice["channels"], allreduce_choice=choice
    )


def _on_root(cfg: Config, world, node_of_rank, widths) -> tuple[str | None, dict | None]:
    from netsim.calibration import choose
    from netsim.errors import InputError

    segments = model.layer_segments(widths)
    nelems, itemsize = sum(n for _, n in segments), np.dtype(cfg.dtype).itemsize
    try:
        spec, source = choose.machine_spec()
        picked = choose.choose(
            spec,
            world.world_size,
            nelems,
            itemsize,
            node_of_rank if len(set(node_of_rank)) > 1 else None,
            segments,
            source,
            channels=cfg.channels,
        )
    except InputError as exc:
        return str(exc), None
    return None, {
        **picked.to_dict(),
        "nbytes": nelems * itemsize,
        "world_size": world.world_size,
        "why": picked.line(nelems * itemsize, world.world_size),
    }
