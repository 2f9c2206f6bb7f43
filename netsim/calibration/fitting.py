"""Calibration: measure this machine's MPI, fit a topology of it, and show the residuals.

    python -m netsim calibrate [--ranks 2,3,4] [--rounds 3] [--passes 5] [--out this-machine.toml]

Measured (netsim.calibration.measure): ping-pong between two ranks, 8 B .. 64 MiB, and our ring
all-reduce (the executor training uses) at every rank count, 4 KiB .. 64 MiB.

Fitted: one node whose GPUs are the ranks, gpus_per_node = the most ranks measured, an
all-to-all fabric. Each parameter is a physical quantity pinned by its own part of the data:

    intra_node.latency_us                   MPI's latency                  small ping-pongs
    intra_node.bandwidth_gbit_per_s         one rank's copy rate           large ping-pongs
    intra_node.aggregate_bandwidth_gbit_per_s   all copies of the node     large all-reduces
                                            together (memory, CPUs)        at 3 and 4 ranks
    intra_node.cache_bandwidth_gbit_per_s   the same while every rank's    all-reduces of
                                            buffer and scratch fit in the  1-4 MiB
                                            last-level cache
    compute.message_overhead_us             our executor's cost per round  small all-reduces
                                            on top of MPI's (Python)
    compute.reduce_gbyte_per_s              adding a received chunk        all-reduces at 2
    compute.cores, intra_node.cache_bytes   read from the machine, not fitted

Why an aggregate capacity: on 2 cores the ring's 64 MiB all-reduce takes ~3 times as long
at p = 4 as at p = 2. A per-port model can only give the ratio of the bytes per rank,
2(p-1)/p, i.e. 1.5; a capacity C that all transfers share gives 2n/C against 6n/C. Why
cores: with 3 or 4 ranks on 2 cores, the per-round overhead and the adding of a round
wait for the core that runs two ranks (ceil(p / cores) = 2). Why a cache: 1-4 MiB
all-reduces move several times faster per byte than 16-64 MiB ones at every p. The
cache's rate may come out below the memory's: on a VM whose two vCPUs the host places
apart, cache-sized data crosses between caches (observed here, see bench/README.md).

The fit is least squares on log times (a relative error counts alike at 8 B and at
64 MiB; soft_l1, so one disturbed size does not drag the rest) over the logs of the
parameters, with the simulator itself as the model: the TOML written predicts exactly
the fitted times. Ping-pongs are simulated without the [compute] table (they are MPI
alone, not our executor). A parameter that changes no fitted time by 1% is left out.

The shared-memory path (allreduce_train's --transport shm) is the same node with other
rates, fitted alike by `fit_shared_memory` from the ring through shared memory that the
probe times beside the message ring (`allreduce_shm`), and written as a second topology
(netsim.calibration.choose.shm_file), so that the simulator needs no other kind of link: a
transfer inside the node is a read of the peer's slice, latency + bytes / rate, and its
add is fused with the read, so reduce_gbyte_per_s is what adding costs on top of reading
(infinite, left out, where it costs nothing measurable). The same keys mean:

    intra_node.latency_us                   a counter's trip between     SHM_LATENCY_S, set:
                                            cores (no MPI)               no ping-pong pins it
    intra_node.bandwidth_gbit_per_s, aggregate_..., cache_...   one rank's and the node's
                                            read rates                   all-reduces, as above
    compute.message_overhead_us             a round's counters, waits and NumPy calls
    compute.reduce_gbyte_per_s              the fused add, on top of the read

(Past 300 lines: one fit of two paths and the text that shows its residuals, kept whole.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netsim.algorithms import RING, busbw
from netsim.cluster import topology
from netsim.report.text import ms, nbytes
from netsim.sim import predict

from .machine import DIGITS, PARAMETERS, Model, topology_spec
from .measure import MIN_CPU_SHARE, CalibrationError, disturbed_rounds, measured_report, pooled

# the shared-memory path's latency, set rather than fitted (the ring's all-reduces cannot
# tell it from the cost per round): a cache line's trip between two cores, about 0.1-0.2 us
# on x86; what a round costs beyond it (counters, waits, NumPy calls) is its overhead
SHM_LATENCY_S = 0.2e-6


@dataclass(frozen=True)
class Fit:
    spec: dict  # the topology, as written
    parameters: dict  # SI units, unrounded
    rows: list  # per measured point: kind, world_size, nbytes, measured_s, fitted_s, error, spread
    facts: dict
    # (rounds left out: another process had part of the cores, all rounds)
    disturbed: tuple[int, int]
    transport: str = "mpi"  # the path fitted: mpi (messages) or shm (shared memory)

    @property
    def median_abs_error(self) -> float:
        return float(np.median([abs(r["error"]) for r in self.rows]))

    def worst(self) -> dict:
        return max(self.rows, key=lambda r: abs(r["error"]))


def fit(measurements: dict, name: str = "this machine") -> Fit:
    """The topology of one node that predicts the measurements best (see the docstring)."""
    pingpong, allreduce = pooled(measurements)
    if not allreduce:
        raise CalibrationError("the measurements hold no all-reduce: nothing to fit a node to")
    return _fit(measurements, pingpong, allreduce, name, {})


def fit_shared_memory(measurements: dict, name: str = "this machine") -> Fit | None:
    """The node's shared-memory path (see the docstring) fitted to the ring through shared
    memory; None where the measurements hold none (an older probe's)."""
    _, allreduce = pooled(measurements, kind="allreduce_shm")
    if not allreduce:
        return None
    fit = _fit(measurements, {}, allreduce, f"{name} (shared memory)", {"latency_s": SHM_LATENCY_S})
    # transfers read the peer's buffer: a pairwise exchange costs one more round there
    # (netsim.sim.shared_memory; the ring fitted has none, so its fitted times stand)
    spec = {**fit.spec, "compute": {**fit.spec["compute"], "shared_memory": True}}
    return Fit(spec, fit.parameters, fit.rows, fit.facts, fit.disturbed, "shm")


def _fit(measurements: dict, pingpong: dict, allreduce: dict, name: str, fixed: dict) -> Fit:
    facts = {"cores": None, "cache_bytes": None, **measurements.get("machine", {})}
    if not facts["cores"]:
        raise CalibrationError(
            "the measurements do not say how many cores the machine has (machine.cores)"
        )
    model = Model(list(pingpong), list(allreduce), max(p for p, _ in allreduce), facts)
    measured = np.array([np.median(t) for t in [*pingpong.values(), *allreduce.values()]])
    names = [n for n in _fitted(allreduce, facts) if n not in fixed]
    params = _least_squares(model, measured, names, pingpong, allreduce, fixed)
    params = _simplified(model, params)
    spec = topology_spec(params, model.gpus, facts, name)
    return Fit(
        spec,
        params,
        _rows(spec, params, pingpong, allreduce, model),
        facts,
        disturbed_rounds(measurements),
    )


def _least_squares(
    model: Model,
    measured: np.ndarray,
    names: list[str],
    pingpong: dict,
    allreduce: dict,
    fixed: dict,
) -> dict:
    from scipy.optimize import least_squares

    x0 = np.log([_initial(name, pingpong, allreduce) for name in names])
    # three decades either side of the first guess keep parameters the data cannot pin
    # finite; the cache's speed-up over memory stays within 1/20 .. 20
    lo, hi = x0 - 7, x0 + 7
    if "cache_speedup" in names:
        lo[-1], hi[-1] = -np.log(20), np.log(20)

    def residuals(x):  # log times: relative errors, alike at 8 B and at 64 MiB
        return np.log(model.times({**fixed, **_physical(names, x)}) / measured)

    # soft_l1: beyond ~10% (0.1 in log) a residual counts linearly, so one disturbed size
    # (a burst of load on a shared host) cannot drag every parameter after it. The cost is
    # not convex in the parameters (min() of rates, regimes): a few steps from the cache
    # faster than, as fast as and slower than memory, then on from the best of the three.
    def solve(x, **limit):
        return least_squares(residuals, x, bounds=(lo, hi), loss="soft_l1", f_scale=0.1, **limit)

    starts = (
        [x0]
        if "cache_speedup" not in names
        else [np.r_[x0[:-1], v] for v in np.log([2.0, 1.0, 0.5])]
    )
    if len(starts) > 1:
        starts = [min((solve(x, max_nfev=12) for x in starts), key=lambda r: r.cost).x]
    return {**fixed, **_physical(names, solve(starts[0]).x)}


def _simplified(model: Model, params: dict) -> dict:
    """Say no more than the data does. A cost or a regime that changes no measured time by
    1% is left out (adding is free, the cache is memory) rather than written as a wild
    value; a port faster than the fabric, which every route crosses, never binds and is
    written as the fabric's rate (no prediction changes)."""
    fitted = model.times(params)
    for optional in ("reduce_bytes_per_s", "cache_bandwidth_bytes_per_s"):
        fewer = {k: v for k, v in params.items() if k != optional}
        if optional in params and np.max(np.abs(model.times(fewer) / fitted - 1)) < 0.01:
            params = fewer
    fabric = max(
        params["aggregate_bandwidth_bytes_per_s"], params.get("cache_bandwidth_bytes_per_s", 0)
    )
    return {**params, "bandwidth_bytes_per_s": min(params["bandwidth_bytes_per_s"], fabric)}


def _physical(names: list[str], x) -> dict:
    """Fitted logs -> parameters in SI units (the cache's bandwidth is fitted as a speed-up
    over the aggregate bandwidth, so that its bounds follow the aggregate)."""
    params = dict(zip(names, np.exp(x).tolist()))
    if "cache_speedup" in params:
        params["cache_bandwidth_bytes_per_s"] = (
            params.pop("cache_speedup") * params["aggregate_bandwidth_bytes_per_s"]
        )
    return params


def _fitted(allreduce: dict, facts: dict) -> list[str]:
    """All parameters, less the cache when its size is unknown or no measured all-reduce
    falls on one side of it (nothing would pin its bandwidth)."""
    names = [n for n in PARAMETERS if n != "cache_bandwidth_bytes_per_s"]
    cache = facts.get("cache_bytes")
    # the ring holds its buffer and a scratch of n/p
    inside = {(p + 1) * n <= cache for p, n in allreduce} if cache else set()
    return names + ["cache_speedup"] if inside == {True, False} else names


def _initial(param: str, pingpong: dict, allreduce: dict) -> float:
    """First guesses read off the data: the smallest ping-pong for the latency, the largest
    for the bandwidth (or the largest all-reduce at the fewest ranks, without ping-pongs)."""
    if pingpong:
        latency = float(np.median(next(iter(pingpong.values()))))
        n, t = list(pingpong.items())[-1]
        bandwidth = n / float(np.median(t))
    else:
        (p, n), t = min(allreduce.items(), key=lambda kv: (kv[0][0], -kv[0][1]))
        latency, bandwidth = 2e-6, busbw(n / float(np.median(t)), p)
    return {
        "latency_s": latency,
        "bandwidth_bytes_per_s": bandwidth,
        "aggregate_bandwidth_bytes_per_s": 1.5 * bandwidth,
        "cache_speedup": 2.0,
        "message_overhead_s": 5e-6,
        "reduce_bytes_per_s": 2 * bandwidth,
    }[param]


def _rows(spec: dict, params: dict, pingpong: dict, allreduce: dict, model: Model) -> list[dict]:
    """The residuals of the written topology (rounded as written): all-reduces through
    predict.predict and predict.errors (the schema measured and predicted share),
    ping-pongs by the simulator."""
    topo = topology.parse(spec, "calibrate")
    fitted = model.times(params, digits=DIGITS)
    rows = [
        {
            "kind": "ping-pong",
            "world_size": 2,
            "nbytes": n,
            "measured_s": float(np.median(t)),
            "fitted_s": float(f),
            "error": float(f / np.median(t) - 1),
            "spread": _spread(t),
        }
        for (n, t), f in zip(pingpong.items(), fitted)
    ]
    for (p, n), t in allreduce.items():
        measured = measured_report(p, n, t)
        predicted = predict.predict(topo, RING, p, n // 4, 4)
        rows.append(
            {
                "kind": "all-reduce",
                "world_size": p,
                "nbytes": n,
                "measured_s": measured["allreduce_time_s_median"],
                "fitted_s": predicted["allreduce_time_s_median"],
                "error": predict.errors(measured, predicted)["allreduce_time_s_median"],
                "spread": measured["spread"],
            }
        )
    return rows


def _spread(times) -> float:
    return float((max(times) - min(times)) / np.median(times))


# ---------------------------------------------------------------- writing it down


def toml_text(result: Fit, measurements: dict) -> str:
    f = result.facts
    cache = f" and {nbytes(f['cache_bytes'])} of last-level cache" if f.get("cache_bytes") else ""
    worst = result.worst()
    name = " ".join(str(result.spec["name"]).split())  # a comment is one line
    sweeps = (
        "sweeps of the ring all-reduce through shared memory (--transport shm)"
        if result.transport == "shm"
        else "ping-pong and ring all-reduce sweeps"
    )
    head = [
        f"# {name}: written by `python -m netsim calibrate` on {measurements.get('date', '?')}",
        f"# from {sweeps} on {f.get('host') or 'this host'} ({f['cores']} cores{cache});",
        f"# {_library(measurements)}. Ranks play GPUs. Fit: median |error| "
        f"{result.median_abs_error:.1%},",
        f"# worst {worst['error']:+.0%} ({worst['kind']}, p = {worst['world_size']}, "
        f"{nbytes(worst['nbytes'])}).",
        "",
    ]
    return "\n".join(head) + topology.to_toml(result.spec)


def _library(measurements: dict) -> str:
    runs = measurements.get("runs") or [{}]
    return runs[0].get("mpi_library", "MPI library unknown")


def text(result: Fit) -> str:
    p, shm = result.parameters, result.transport == "shm"
    latency = "latency (set, not fitted) " if shm else "latency (MPI)             "
    lines = [
        f'fitted "{result.spec["name"]}": 1 node of {result.spec["gpus_per_node"]} ranks, '
        f"{result.facts['cores']} cores",
        f"  {latency} {p['latency_s'] * 1e6:10.2f} us",
        f"  bandwidth per rank         {p['bandwidth_bytes_per_s'] / 1e9:10.2f} GB/s",
        f"  aggregate bandwidth        {p['aggregate_bandwidth_bytes_per_s'] / 1e9:10.2f} GB/s",
    ]
    if "cache_bandwidth_bytes_per_s" in p:
        lines.append(
            f"  aggregate, in cache        {p['cache_bandwidth_bytes_per_s'] / 1e9:10.2f} GB/s"
            f"   (while the buffers fit in {nbytes(result.facts['cache_bytes'])})"
        )
    else:
        lines.append(
            "  aggregate, in cache                  -   (no faster, or not measured on both sides)"
        )
    reduce = (
        f"{p['reduce_bytes_per_s'] / 1e9:10.2f} GB/s per rank"
        if "reduce_bytes_per_s" in p
        else "         -   (too fast to resolve: free)"
    )
    executor = "(counters, waits, NumPy calls)" if shm else "(our executor, on top of MPI)"
    lines += [
        f"  overhead per round         {p['message_overhead_s'] * 1e6:10.2f} us   {executor}",
        f"  reduction (adding)         {reduce}{' (fused with the read)' * shm}",
        "",
        f"{'':<11} {'p':>2} {'size':>10} {'measured':>11} {'fitted':>11} {'error':>7} "
        f"{'spread':>7}",
    ]
    for r in result.rows:
        lines.append(
            f"{r['kind']:<11} {r['world_size']:>2} {nbytes(r['nbytes']):>10} "
            f"{ms(r['measured_s']):>11} {ms(r['fitted_s']):>11} {r['error']:>+7.1%} "
            f"{r['spread']:>7.0%}"
        )
    worst = result.worst()
    lines.append(
        f"median |error| {result.median_abs_error:.1%}; worst {worst['error']:+.1%} "
        f"({worst['kind']}, p = {worst['world_size']}, {nbytes(worst['nbytes'])}); spread = (max "
        "- min) / median of the rounds"
    )
    lines.append(
        f"rounds left out as disturbed (ranks had < {MIN_CPU_SHARE:.0%} of the cores): "
        f"{result.disturbed[0]} of {result.disturbed[1]}"
    )
    return "\n".join(lines)
