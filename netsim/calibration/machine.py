"""This machine as netsim models it: one node whose GPUs are the ranks, described by the
physical parameters calibration fits (netsim.calibration.fitting), and the simulated times of the
measured points on it. The simulator itself is the model, so a topology written from these
parameters predicts exactly the times the fit saw.
"""

from __future__ import annotations

import numpy as np

from netsim.algorithms import RING, Round, Schedule
from netsim.cluster import topology
from netsim.sim import simulate

GBIT = 1e9 / 8
DIGITS = 4  # significant digits of the parameters written


# fitted parameter -> (table, key, scale from SI units to the key's unit)
PARAMETERS = {
    "latency_s": ("intra_node", "latency_us", 1e6),
    "bandwidth_bytes_per_s": ("intra_node", "bandwidth_gbit_per_s", 1 / GBIT),
    "aggregate_bandwidth_bytes_per_s": ("intra_node", "aggregate_bandwidth_gbit_per_s", 1 / GBIT),
    "cache_bandwidth_bytes_per_s": ("intra_node", "cache_bandwidth_gbit_per_s", 1 / GBIT),
    "message_overhead_s": ("compute", "message_overhead_us", 1e6),
    "reduce_bytes_per_s": ("compute", "reduce_gbyte_per_s", 1e-9),
}


def topology_spec(
    params: dict, gpus: int, facts: dict, name: str = "this machine", digits: int | None = DIGITS
) -> dict:
    """The TOML description of one node of `gpus` ranks; values rounded to `digits`
    significant digits (the file is what gets used, so the residuals reported are those of
    the rounded values; the fit itself works unrounded, or its steps would see stairs)."""
    spec = {
        "name": name,
        "nodes": 1,
        "gpus_per_node": gpus,
        "placement": "block",
        "intra_node": {"kind": "all-to-all"},
        "compute": {"cores": facts["cores"]},
    }
    for param, (table, key, scale) in PARAMETERS.items():
        if param in params:
            value = params[param] * scale
            spec[table][key] = float(f"{value:.{digits}g}") if digits else float(value)
    if "cache_bandwidth_gbit_per_s" in spec["intra_node"]:
        spec["intra_node"]["cache_bytes"] = facts["cache_bytes"]
    return spec


def pingpong_schedule(nbytes: int) -> Schedule:
    """A one-way trip: one round in which rank 0 sends nbytes (of 1-byte items) to rank 1."""
    one = np.array([0]), np.array([1]), np.array([0]), np.array([nbytes])
    return Schedule("ping-pong", 2, nbytes, (Round("ping-pong", 0, False, *one),))


class Model:
    """Times of every measured point on a candidate topology, by the simulator."""

    def __init__(self, pingpong_sizes, allreduce_points, gpus: int, facts: dict):
        self.gpus, self.facts = gpus, facts
        self.pingpong = [pingpong_schedule(n) for n in pingpong_sizes]
        self.allreduce = [RING.schedule(p, n // 4) for p, n in allreduce_points]

    def times(self, params: dict, digits: int | None = None) -> np.ndarray:
        spec = topology_spec(params, self.gpus, self.facts, digits=digits)
        topo = topology.parse(spec, "calibrate")
        mpi_alone = topology.parse({k: v for k, v in spec.items() if k != "compute"}, "calibrate")
        return np.array(
            [simulate.simulate(s, mpi_alone, 1).time_s for s in self.pingpong]
            + [simulate.simulate(s, topo, 4).time_s for s in self.allreduce]
        )
