"""The all-reduce a run should use, chosen by the same model that predicts clusters.

    choose(topology_spec, world_size, nelems, itemsize, node_of_rank) -> Choice

Every algorithm training can run over MPI (scheduled, not in-network), at 1, 2 and 4
channels, is simulated (netsim.sim.simulate) on the topology of this machine for the run's
buffer and rank layout; the fastest wins, but one listed later in netsim.algorithms.ALGORITHMS
displaces the best so far only if predicted MARGIN faster: a gain the model cannot resolve
(its median error here is about 10%) is not worth leaving the ring for (measured at p = 4,
4-16 MiB: halving-doubling predicted 0.5% faster, measured 5-30% slower).

The topology is this machine's calibration (`python -m netsim calibrate` writes it to
`cache_file()`, one per host name) or, until there is one, ESTIMATE: what calibration
fitted on the development VM (2 vCPUs, MPICH 5.0.2, the executor with persistent requests;
median |error| 9.8% over p = 2-4 and 4 KiB-64 MiB; 2026-12-02), with this machine's core
count. The choice is deterministic for a given file: the simulator is. Training makes it on
rank 0 and broadcasts it, so every rank runs the same schedule.
"""

from __future__ import annotations

import copy
import os
import platform
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from netsim import algorithms
from netsim.cluster import topology
from netsim.errors import InputError
from netsim.report.text import ms, nbytes
from netsim.sim import simulate

CHANNELS = (1, 2, 4)
MARGIN = 0.05  # how much faster a later-listed candidate must be predicted to be picked
CACHE_ENV = "NETSIM_CACHE_DIR"  # where calibrations are kept (default: ~/.cache/netsim)

# One node of ranks, as `netsim calibrate` writes it (see netsim.calibration.fitting for the
# meaning of each key); gpus_per_node and nodes are set per run, cores per machine.
ESTIMATE = {
    "name": "built-in estimate (a 2-vCPU VM, MPICH 5.0.2)",
    "nodes": 1,
    "gpus_per_node": 4,
    "placement": "block",
    "intra_node": {
        "kind": "all-to-all",
        "latency_us": 4.288,
        "bandwidth_gbit_per_s": 35.31,
        "aggregate_bandwidth_gbit_per_s": 70.62,
        "cache_bandwidth_gbit_per_s": 60.68,
        "cache_bytes": 16 << 20,
    },
    "compute": {"cores": 2, "message_overhead_us": 9.586, "reduce_gbyte_per_s": 4.63},
}
# Between hosts, where a calibration (one node) says nothing: MPICH's TCP over 10 GbE.
NETWORK_ESTIMATE = {
    "nic": {"count": 1, "bandwidth_gbit_per_s": 10, "latency_us": 15.0},
    "network": {"kind": "switch", "latency_us": 1.0},
}


@dataclass(frozen=True)
class Choice:
    algorithm: str
    channels: int
    predicted_s: dict  # "name" or "name xC" -> seconds, every candidate, in listing order
    source: str  # the topology's file, or the built-in estimate
    notes: list = field(default_factory=list)  # what the model had to assume

    def to_dict(self) -> dict:
        return {
            "algorithm": self.algorithm,
            "channels": self.channels,
            "predicted_s": self.predicted_s,
            "topology": self.source,
            "notes": self.notes,
        }

    def line(self, size: int, world_size: int) -> str:
        """Why, in one line: what was picked, against the best of each other algorithm."""
        best: dict[str, float] = {}
        for key, t in self.predicted_s.items():
            name = key.split(" x")[0]
            best[name] = min(t, best.get(name, t))
        ranked = sorted(best.items(), key=lambda kv: kv[1])
        others = ", ".join(f"{name} {ms(t)}" for name, t in ranked if name != self.algorithm)
        picked = _key(self.algorithm, self.channels)
        return (
            f"{picked} for {nbytes(size)} on {world_size} ranks, "
            f"predicted {ms(self.predicted_s[picked])} (the others at best: {others}; "
            f"model: {self.source})"
        )


def cache_file(host: str | None = None) -> Path:
    """Where this host's calibration is kept: $NETSIM_CACHE_DIR, else $XDG_CACHE_HOME/netsim,
    else ~/.cache/netsim; one file per host name."""
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "netsim"
    )
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in host or platform.node())
    return Path(base) / f"calibrated-{name or 'host'}.toml"


def machine_spec(path: str | os.PathLike | None = None) -> tuple[dict, str]:
    """(topology description, where it came from): the calibration at `path` (default: this
    host's cache file) if it exists, else the built-in estimate with this machine's cores.
    A cache file that exists but cannot be read is an error, not a silent estimate."""
    path = Path(path) if path is not None else cache_file()
    if not path.is_file():
        spec = copy.deepcopy(ESTIMATE)
        spec["compute"]["cores"] = len(os.sched_getaffinity(0)) or 1
        return spec, "built-in estimate (python -m netsim calibrate measures this machine)"
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"the calibration {path} cannot be read: {exc}") from None
    topology.parse(spec, str(path))  # one line naming the key if it is not a topology
    return spec, str(path)


def choose(
    spec: dict,
    world_size: int,
    nelems: int,
    itemsize: int = 4,
    node_of_rank=None,
    segments=None,
    source: str = "<dict>",
    channels: int | None = None,
) -> Choice:
    """The fastest all-reduce of nelems elements on world_size ranks laid out on nodes as
    node_of_rank says (None: one node), on the machine `spec` describes; at `channels`
    channels, or the best of CHANNELS (None)."""
    topo, notes = _laid_out(spec, world_size, node_of_rank, source)
    predicted = {}
    for name, algorithm in algorithms.ALGORITHMS.items():
        if not (algorithm.scheduled and algorithm.runs_over_mpi):
            continue
        for c in (channels,) if channels else CHANNELS if world_size > 1 else (1,):
            try:
                schedule = algorithm.schedule(world_size, nelems, node_of_rank, segments, c)
            except InputError:  # a layout it cannot run (a hierarchical ring, uneven nodes)
                continue
            predicted[_key(name, c)] = simulate.simulate(schedule, topo, itemsize).time_s
    picked = fastest(predicted)
    name, _, count = picked.partition(" x")
    return Choice(name, int(count or channels or 1), predicted, source, notes)


def fastest(predicted: dict) -> str:
    """The key picked from {key: seconds} in listing order: the first, displaced by any
    later one predicted at least MARGIN faster than the best so far."""
    best = next(iter(predicted))
    for key, t in predicted.items():
        if t < predicted[best] * (1 - MARGIN):
            best = key
    return best


def _laid_out(spec: dict, world_size: int, node_of_rank, source: str):
    """The machine's topology resized to the run: as many nodes as the run has, each with
    as many ranks as its fullest (the cores stay the machine's)."""
    nodes = [0] * world_size if node_of_rank is None else list(node_of_rank)
    per_node = max(nodes.count(n) for n in set(nodes))
    spec = {**copy.deepcopy(spec), "nodes": len(set(nodes)), "gpus_per_node": per_node}
    notes = []
    if spec["nodes"] > 1 and "network" not in spec:
        spec.update(copy.deepcopy(NETWORK_ESTIMATE))
        notes.append("between hosts: an estimate (10 GbE, MPICH over TCP); not calibrated")
    return topology.parse(spec, source), notes


def _key(name: str, channels: int) -> str:
    return name if channels == 1 else f"{name} x{channels}"
