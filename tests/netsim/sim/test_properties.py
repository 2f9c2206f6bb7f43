"""hypothesis: random small topologies, layouts and sizes. Whatever the fabric, the simulator
never beats the lower bound of the bytes it moves (the busiest link at its full rate), the
bytes it lays on links are the bytes the schedule sends along their routes, and every
algorithm's own count of the elements a rank sends is what its schedule sends."""

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from netsim import algorithms
from netsim.algorithms import cost
from netsim.cluster import topology
from netsim.errors import InputError
from netsim.sim import simulate


@st.composite
def topologies(draw):
    nodes = draw(st.integers(1, 4))
    gpn = draw(st.sampled_from([1, 2, 3, 4]))
    if draw(st.booleans()) and gpn % 2 == 0:
        intra = {"kind": "pcie-tree", "gpus_per_switch": 2, "uplink_bandwidth_gbit_per_s": 64}
    else:
        intra = {"kind": "all-to-all"}
    intra |= {"bandwidth_gbit_per_s": draw(st.sampled_from([64, 400, 3600])), "latency_us": 0.5}
    data = {
        "name": "random",
        "nodes": nodes,
        "gpus_per_node": gpn,
        "placement": draw(st.sampled_from(["block", "round-robin"])),
        "intra_node": intra,
    }
    if nodes > 1:
        data["nic"] = {
            "count": draw(st.integers(1, gpn)),
            "bandwidth_gbit_per_s": draw(st.sampled_from([100, 400])),
            "latency_us": 1.0,
        }
        kind = draw(st.sampled_from(["switch", "rails", "fat-tree", "ring"]))
        data["network"] = {"kind": kind, "latency_us": 0.3}
        if kind == "fat-tree":
            data["network"] |= {"nodes_per_leaf": 1, "oversubscription": 2.0}
    return topology.parse(data)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topo=topologies(),
    name=st.sampled_from(algorithms.SCHEDULED),
    ranks=st.integers(2, 16),
    nelems=st.integers(1, 300),
    channels=st.integers(1, 3),
    chunks=st.integers(1, 3),
)
def test_the_simulator_never_beats_the_busiest_link_and_the_bytes_add_up(
    topo, name, ranks, nelems, channels, chunks
):
    p = min(ranks, topo.gpus)
    algorithm = algorithms.get(name)
    context = {"node_of_rank": topo.node_of_rank(p), "channels": channels, "chunks": chunks}
    try:
        schedule = algorithm.schedule(p, nelems, **context)
    except InputError:  # a layout the algorithm refuses (uneven nodes, p not a power of 2)
        event("refused")
        return
    event(name)
    np.testing.assert_array_equal(
        algorithm.elements_sent(p, nelems, **context), schedule.elements_sent()
    )
    sim = simulate.simulate(schedule, topo, itemsize=4)
    loads = cost.link_bytes(schedule, topo, 4)
    assert sim.time_s >= cost.busiest_link_s(loads, topo) * (1 - 1e-9)
    # every byte sent crosses every link of its route, per link exactly (the fast path
    # totals a ring's unequal chunks per flow from its chunk table: Round.window)
    np.testing.assert_allclose(sim.link_bytes, loads, rtol=1e-12)
    gpu = topo.gpu_of_rank(p)
    hops = sum(
        float((np.diff(topo.routes(gpu[r.src], gpu[r.dst]).indptr) * r.count).sum())
        for r in schedule.rounds
    )
    assert np.isclose(loads.sum(), 4 * hops)
