"""The all-reduce a run should use, chosen by the same model that predicts clusters.

    choose(topology_spec, world_size, nelems, itemsize, node_of_rank) -> Choice

Every algorithm training can run over MPI (scheduled, not in-network), at 1, 2 and 4
channels, is simulated (netsim.sim.simulate) on the topology of this machine for the run's
buffer and rank layout; the fastest wins, but one listed later in netsim.algorithms.ALGORITHMS
displaces the best so far only if predicted MARGIN faster: a gain the model cannot resolve
(its median error here is about 10%) is not worth leaving the ring for (measured at p = 4,
4-16 MiB: halving-doubling predicted 0.5% faster, measured 5-30% slower).

Each candidate is also priced through shared memory inside a node (allreduce_train's
`--transport shm`: a peer's slice read from a shared window, its add fused with the read)
where the machine's shared-memory path is known: the same node with its own rates, a second
topology (`shm_file`, written beside the calibration by `netsim calibrate`), so that the
choice is (algorithm, channels, transport) with transport mpi or shm. Messages are listed
first: shared memory displaces them only MARGIN faster, as any later candidate.

The topology is this machine's calibration (`python -m netsim calibrate` writes it to
`cache_file()`, one per host name, and its shared-memory path to `shm_file()` of it) or,
until there is one, ESTIMATE and SHM_ESTIMATE: what calibration fitted on the development
VM (2 vCPUs, MPICH 5.0.2; see each), with this machine's core count. The choice is
deterministic for given files: the simulator is. Training makes it on rank 0 and
broadcasts it, so every rank runs the same schedule.
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
# meaning of each key); gpus_per_node and nodes are set per run, cores per machine. Fitted on
# the development VM (the executor with persistent requests; median |error| 9.8% over
# p = 2-4 and 4 KiB-64 MiB; 2026-12-02).
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
# The same node's shared-memory path (--transport shm). Measured on this VM on 2026-12-05,
# 18:50-19:32, by `netsim calibrate --ranks 2,3,4 --rounds 3` (8 passes, then 4 more), whose
# probe times the ring through messages and through shared memory in alternating rounds.
# Other jobs held the machine throughout (load 10-15 on its 2 vCPUs): 2,072 of 2,088 rounds
# had under 90% of the cores, too few undisturbed ones to fit, so the fit took what load
# spoils least: per point, the ratio of the two paths' times (the median of each one's
# fastest 3 rounds, pooled over all 12 passes; both seen through the same spells of load)
# applied to ESTIMATE's undisturbed message times, and `fitting.fit_shared_memory` fitted
# to those (median |error| 10%). The ratios: from 64 KiB shared memory took 0.54-0.74 of
# the messages' time at p = 3, 4 (0.18-0.78 at p = 2 from 256 KiB), below it 1.05-1.17 at
# p = 3, 4: a round's counters and waits cost about what MPI's do.
SHM_ESTIMATE = {
    "name": "built-in estimate (a 2-vCPU VM, shared memory)",
    "nodes": 1,
    "gpus_per_node": 4,
    "placement": "block",
    "intra_node": {
        "kind": "all-to-all",
        "latency_us": 0.2,
        "bandwidth_gbit_per_s": 103.4,
        "aggregate_bandwidth_gbit_per_s": 142.5,
        "cache_bandwidth_gbit_per_s": 206.9,
        "cache_bytes": 16 << 20,
    },
    "compute": {
        "cores": 2,
        "message_overhead_us": 13.25,
        "reduce_gbyte_per_s": 6.365,
        "shared_memory": True,
    },
}
TRANSPORTS = ("mpi", "shm")  # allreduce_train's --transport: messages, or shared memory
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
    transport: str = "mpi"  # inside a node: mpi (messages) or shm (shared memory)

    def to_dict(self) -> dict:
        return {
            "algorithm": self.algorithm,
            "channels": self.channels,
            "transport": self.transport,
            "predicted_s": self.predicted_s,
            "topology": self.source,
            "notes": self.notes,
        }

    def line(self, size: int, world_size: int) -> str:
        """Why, in one line: what was picked, against the best of each other algorithm and
        transport ("ring" through messages, "ring/shm" through shared memory)."""
        best: dict[str, float] = {}
        for key, t in self.predicted_s.items():
            name = key.split(" x")[0]
            best[name] = min(t, best.get(name, t))
        ranked = sorted(best.items(), key=lambda kv: kv[1])
        mine = _key(self.algorithm, 1, self.transport)
        others = ", ".join(f"{name} {ms(t)}" for name, t in ranked if name != mine)
        picked = _key(self.algorithm, self.channels, self.transport)
        how = " (through shared memory inside a node)" if self.transport == "shm" else ""
        mine_s = self.predicted_s[picked]
        # a faster one was passed over by the margin: say so, or the line contradicts itself
        margin = (
            f"; kept over those predicted less than {MARGIN:.0%} faster, within the model's error"
            if ranked and ranked[0][1] < mine_s
            else ""
        )
        return (
            f"{picked}{how} for {nbytes(size)} on {world_size} ranks, "
            f"predicted {ms(mine_s)} (the others at best: {others}; model: {self.source}"
            f"{margin})"
        )


def cache_file(host: str | None = None) -> Path:
    """Where this host's calibration is kept: $NETSIM_CACHE_DIR, else $XDG_CACHE_HOME/netsim,
    else ~/.cache/netsim; one file per host name."""
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "netsim"
    )
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in host or platform.node())
    return Path(base) / f"calibrated-{name or 'host'}.toml"


def shm_file(path: str | os.PathLike) -> Path:
    """Where the calibration at `path` keeps its shared-memory path: beside it, `.shm`
    before its suffix (calibrated-vm.toml: calibrated-vm.shm.toml)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.shm{path.suffix}")


def machine_spec(path: str | os.PathLike | None = None) -> tuple[dict, str]:
    """(topology description, where it came from): the calibration at `path` (default: this
    host's cache file) if it exists, else the built-in estimate with this machine's cores.
    A cache file that exists but cannot be read is an error, not a silent estimate."""
    specs, source = machine_specs(path)
    return specs["mpi"], source


def machine_specs(path: str | os.PathLike | None = None) -> tuple[dict, str]:
    """({transport: topology description}, where they came from): "mpi", as machine_spec,
    and "shm", the shared-memory path, where it is known (the estimate's, or the file
    beside the calibration; a calibration without one, from an older netsim, has none)."""
    path = Path(path) if path is not None else cache_file()
    if not path.is_file():
        specs = {"mpi": copy.deepcopy(ESTIMATE), "shm": copy.deepcopy(SHM_ESTIMATE)}
        for spec in specs.values():
            spec["compute"]["cores"] = len(os.sched_getaffinity(0)) or 1
        return specs, "built-in estimate (python -m netsim calibrate measures this machine)"
    specs = {"mpi": _read(path)}
    if shm_file(path).is_file():
        specs["shm"] = _read_shared_memory(shm_file(path))
    return specs, str(path)


def _read(path: Path) -> dict:
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"the calibration {path} cannot be read: {exc}") from None
    topology.parse(spec, str(path))  # one line naming the key if it is not a topology
    return spec


def _read_shared_memory(path: Path) -> dict:
    """The shared-memory path kept beside a calibration: its transfers read peers' memory
    (said by the file since `netsim calibrate` writes it; said here for older files)."""
    spec = _read(path)
    spec.setdefault("compute", {})["shared_memory"] = True
    return spec


def shared_memory(topo, path: str | os.PathLike | None):
    """(the topology a run through shared memory is priced on, a note or None): for a
    calibrated machine (a [compute] table: ranks are processes), its shared-memory path,
    from the file beside `path`, else the built-in estimate's (noted); any other topology
    (GPUs on their links) as it is."""
    if "compute" not in topo.spec:
        return topo, None
    beside = shm_file(path) if path is not None else None
    if beside is not None and beside.is_file():
        return topology.parse(_read_shared_memory(beside), str(beside)), None
    spec = {**copy.deepcopy(SHM_ESTIMATE), "gpus_per_node": topo.gpus_per_node}
    spec["compute"]["cores"] = topo.spec["compute"].get("cores", spec["compute"]["cores"])
    note = f"no shared-memory calibration beside {path}: the built-in estimate's (this VM's)"
    return topology.parse(spec, "built-in estimate (shared memory)"), note


def choose(
    spec: dict,
    world_size: int,
    nelems: int,
    itemsize: int = 4,
    node_of_rank=None,
    segments=None,
    source: str = "<dict>",
    channels: int | None = None,
    shm: dict | None = None,
    transport: str | None = None,
    algorithm: str | None = None,
) -> Choice:
    """The fastest all-reduce of nelems elements on world_size ranks laid out on nodes as
    node_of_rank says (None: one node), on the machine `spec` describes; at `channels`
    channels, or the best of CHANNELS (None); `algorithm` only, or every one (None). With
    `shm`, the machine's shared-memory path, each is also priced through it; `transport`
    (mpi or shm) prices that one only (shm without `shm`: the messages' rates, noted)."""
    if transport not in (None, *TRANSPORTS):
        raise InputError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    paths = {"mpi": spec, "shm": shm} if transport is None else {transport: shm or spec}
    paths = {t: s for t, s in paths.items() if s is not None}
    notes, predicted = [], {}
    if transport == "shm" and shm is None:
        notes.append("shared memory: not calibrated; priced as messages")
    for how, machine in paths.items():
        topo, laid_out_notes = _laid_out(machine, world_size, node_of_rank, source)
        notes += [n for n in laid_out_notes if n not in notes]
        for name, candidate in algorithms.ALGORITHMS.items():
            if not (candidate.scheduled and candidate.runs_over_mpi):
                continue
            if algorithm is not None and name != algorithm:
                continue
            for c in (channels,) if channels else CHANNELS if world_size > 1 else (1,):
                try:
                    schedule = candidate.schedule(world_size, nelems, node_of_rank, segments, c)
                except InputError:  # a layout it cannot run (a hierarchical ring, uneven nodes)
                    continue
                time_s = simulate.simulate(schedule, topo, itemsize).time_s
                predicted[_key(name, c, how)] = time_s
    if not predicted:
        raise InputError(f"no all-reduce to choose from for {algorithm or 'any algorithm'}")
    picked = fastest(predicted)
    name, _, count = picked.partition(" x")
    name, _, how = name.partition("/")
    return Choice(name, int(count or channels or 1), predicted, source, notes, how or "mpi")


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


def _key(name: str, channels: int, transport: str = "mpi") -> str:
    """ "ring", "ring x2"; through shared memory "ring/shm", "ring/shm x2"."""
    name = name if transport == "mpi" else f"{name}/{transport}"
    return name if channels == 1 else f"{name} x{channels}"
