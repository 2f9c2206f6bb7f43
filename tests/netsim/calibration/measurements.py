"""Measurement files as `netsim calibrate` writes them, made by the simulator from known
parameters: the oracle the fit is tested against."""

import pytest

from netsim.calibration import fitting, machine, measure

FACTS = {"cores": 2, "cache_bytes": 32 << 20, "host": "test"}
TRUE = {
    "latency_s": 2e-6,
    "bandwidth_bytes_per_s": 10e9,
    "aggregate_bandwidth_bytes_per_s": 14e9,
    "cache_bandwidth_bytes_per_s": 24e9,
    "message_overhead_s": 10e-6,
    "reduce_bytes_per_s": 20e9,
}
# the shared-memory path: its latency is set (fitting.SHM_LATENCY_S), the rest fitted
TRUE_SHM = {
    "latency_s": 0.2e-6,
    "bandwidth_bytes_per_s": 16e9,
    "aggregate_bandwidth_bytes_per_s": 22e9,
    "cache_bandwidth_bytes_per_s": 40e9,
    "message_overhead_s": 3e-6,
    "reduce_bytes_per_s": 60e9,
}
MIB = 1 << 20


def synthetic(params=TRUE, ranks=(2, 3, 4), facts=FACTS, disturb=None, shm=None):
    """A measurement file as `measure.measure` writes it, with times made by the simulator
    from known parameters; rounds scattered around them, so their median is the exact time.
    disturb: {(p, nbytes): factor} multiplies those medians (a busy spell of the machine).
    shm: the shared-memory path's parameters (its `allreduce_shm` points), or None."""
    points = [(p, n) for p in ranks for n in measure.ALLREDUCE_SIZES]
    through_shm = (
        dict(zip(points, machine.Model((), points, max(ranks), facts).times(shm))) if shm else {}
    )
    times = machine.Model(measure.PINGPONG_SIZES, points, max(ranks), facts).times(params)
    pp, ar = (
        times[: len(measure.PINGPONG_SIZES)],
        dict(zip(points, times[len(measure.PINGPONG_SIZES) :])),
    )
    disturb = disturb or {}

    def rounds(t, key=None):
        t *= disturb.get(key, 1.0)
        return [t * 1.04, t, t * 0.97]

    runs = [
        {
            "world_size": p,
            "mpi_library": "test MPI",
            "pingpong": [
                {"nbytes": n, "one_way_s": rounds(t)} for n, t in zip(measure.PINGPONG_SIZES, pp)
            ]
            if p == ranks[0]
            else [],
            "allreduce": [
                {"nbytes": n, "times_s": rounds(ar[p, n], (p, n))} for n in measure.ALLREDUCE_SIZES
            ],
            **(
                {
                    "allreduce_shm": [
                        {"nbytes": n, "times_s": rounds(through_shm[p, n])}
                        for n in measure.ALLREDUCE_SIZES
                    ]
                }
                if shm
                else {}
            ),
        }
        for p in ranks
    ]
    return {"machine": facts, "date": "2026-01-01T00:00:00", "runs": runs}


# The probe's sizes that pin each parameter (measurements.synthetic has all 34 points): the
# smallest ping-pong the latency and the largest the bandwidth; all-reduces of 4 KiB the cost
# per round, 256 KiB and 4 MiB (inside the cache at every p) against 64 MiB (outside) the
# cache's rate and the memory's, each at p = 2 (the adding) and 3, 4 (the aggregate). A fit
# of these 14 points takes half the time, and recovers the same parameters.
PINGPONG = (8, 64 * MIB)
ALLREDUCE = (4 << 10, 256 << 10, 4 * MIB, 64 * MIB)


def few(measurements, pingpong=PINGPONG, allreduce=ALLREDUCE):
    """The measurement file with only those sizes (its ping-pongs, both all-reduces)."""
    for run in measurements["runs"]:
        run["pingpong"] = [e for e in run["pingpong"] if e["nbytes"] in pingpong]
        for kind in ("allreduce", "allreduce_shm"):
            if kind in run:
                run[kind] = [e for e in run[kind] if e["nbytes"] in allreduce]
    return measurements


SOLVED = {}  # the least-squares solutions found so far, by their whole problem


@pytest.fixture
def solved_once(monkeypatch):
    """The fit's least squares, solved once per problem: a problem met before (the same
    measured medians at the same points, the same facts, parameters and fixed values) gets
    the parameters found then. The solver is deterministic, so a fit gives what it gave;
    only the time differs. Everything around it (pooling, leaving rounds out, simplifying,
    the spec and its residuals) runs each time, and a fit that hands the solver other
    points (rounds it should have left out) is a new problem, solved afresh."""
    solve = fitting._least_squares

    def once(model, measured, names, pingpong, allreduce, fixed):
        key = repr(
            (model.gpus, sorted(model.facts.items()), measured.tolist(), names)
            + (sorted(pingpong.items()), sorted(allreduce.items()), sorted(fixed.items()))
        )
        if key not in SOLVED:
            SOLVED[key] = solve(model, measured, names, pingpong, allreduce, fixed)
        return dict(SOLVED[key])

    monkeypatch.setattr(fitting, "_least_squares", once)
