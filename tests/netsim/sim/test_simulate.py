"""The simulator against its oracle, the closed forms, and against contention it must show."""

import numpy as np
import pytest

from netsim import algorithms
from netsim.algorithms import RING, Round, Schedule
from netsim.cluster import topology
from netsim.sim import predict, simulate

BW, LAT = 12.5e9, 1.5e-6
ALGORITHMS = list(algorithms.SCHEDULED)


def fully_connected_node(gpus):
    return topology.single_switch(gpus, BW, LAT)


def nodes_on_one_switch(nodes, gpus_per_node=1):
    """Nodes with one NIC per GPU on one non-blocking switch: no link is ever shared."""
    return topology.parse(
        {
            "name": "switch",
            "nodes": nodes,
            "gpus_per_node": gpus_per_node,
            "placement": "block",
            "intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": 400, "latency_us": 0.5},
            "nic": {"count": gpus_per_node, "bandwidth_gbit_per_s": 100, "latency_us": 1.0},
            "network": {"kind": "switch", "latency_us": 0.5},
        }
    )


def closed_form(algorithm, topo, p, nbytes):
    return algorithms.get(algorithm).time_s(topo, p, nbytes)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("p", [2, 4, 8])
@pytest.mark.parametrize("where", ["fully connected node", "single switch"])
def test_simulator_equals_closed_form_without_contention(algorithm, p, where):
    topo = fully_connected_node(p) if where == "fully connected node" else nodes_on_one_switch(p)
    nelems = p * 3000  # even chunks
    sched = algorithms.get(algorithm).schedule(p, nelems, node_of_rank=topo.node_of_rank(p))
    sim = simulate.simulate(sched, topo, itemsize=4)
    expected = closed_form(algorithm, topo, p, nelems * 4)
    assert sim.time_s == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("nodes,per_node", [(2, 4), (4, 2), (3, 4)])
def test_hierarchical_ring_equals_closed_form_across_nodes(nodes, per_node):
    topo = nodes_on_one_switch(nodes, per_node)
    p = nodes * per_node
    sched = algorithms.get("hierarchical-ring").schedule(
        p, p * 1000, node_of_rank=topo.node_of_rank(p)
    )
    assert simulate.simulate(sched, topo).time_s == pytest.approx(
        closed_form("hierarchical-ring", topo, p, p * 4000), rel=1e-9
    )


def one_round(p, src, dst, nelems):
    r = Round(
        "x",
        0,
        True,
        np.array(src),
        np.array(dst),
        np.zeros(len(src), np.int64),
        np.full(len(src), nelems),
    )
    return Schedule("test", p, nelems, (r,))


def test_two_flows_sharing_a_link_take_twice_as_long():
    topo = topology.single_switch(3, BW, 0.0)
    alone = simulate.simulate(one_round(3, [0], [2], 10**6), topo).time_s
    shared = simulate.simulate(one_round(3, [0, 1], [2, 2], 10**6), topo)  # both into GPU 2's port
    assert shared.time_s == pytest.approx(2 * alone, rel=1e-12)
    assert alone == pytest.approx(4e6 / BW, rel=1e-12)
    down = topo.link_names[shared.bottleneck_link]
    assert shared.utilisation[shared.bottleneck_link] == pytest.approx(1.0) and "2" in down


def test_flows_speed_up_when_a_sharer_finishes():
    topo = topology.single_switch(3, BW, 0.0)
    r = Round(
        "x",
        0,
        True,
        np.array([0, 1]),
        np.array([2, 2]),
        np.zeros(2, np.int64),
        np.array([1000, 3000]),
    )
    sim = simulate.simulate(Schedule("t", 3, 3000, (r,)), topo)
    # both at BW/2 until the small one ends at 2*4000/BW; then the big one alone: 8000 bytes more
    assert sim.time_s == pytest.approx((2 * 4000 + 8000) / BW, rel=1e-12)


def fat_tree(oversubscription, nodes=8):
    """One node per leaf, so that every inter-node flow crosses the spine; no latency, so
    that times are bandwidth alone."""
    return topology.parse(
        {
            "name": f"fat-tree {oversubscription}:1",
            "nodes": nodes,
            "gpus_per_node": 8,
            "placement": "block",
            "intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": 3600, "latency_us": 0},
            "nic": {"count": 8, "bandwidth_gbit_per_s": 400, "latency_us": 0},
            "network": {
                "kind": "fat-tree",
                "latency_us": 0,
                "nodes_per_leaf": 1,
                "oversubscription": oversubscription,
            },
        }
    )


def test_oversubscribed_fat_tree_slows_the_inter_node_phase_by_its_ratio():
    p, nelems = 64, 2**26  # large enough that latency is negligible
    t = {}
    for ratio in (1.0, 2.0, 4.0):
        topo = fat_tree(ratio)
        sched = algorithms.get("hierarchical-ring").schedule(
            p, nelems, node_of_rank=topo.node_of_rank(p)
        )
        phases = {}
        for inter in (False, True):
            rounds = tuple(r for r in sched.rounds if ("inter" in r.phase) == inter)
            phases[inter] = simulate.simulate(Schedule("part", p, nelems, rounds), topo).time_s
        t[ratio] = phases
    for ratio in (2.0, 4.0):
        assert t[ratio][True] / t[1.0][True] == pytest.approx(ratio, rel=1e-9)
        assert t[ratio][False] == pytest.approx(t[1.0][False], rel=1e-12)  # inside nodes: untouched


def test_stragglers_delay_the_collective_by_their_lateness():
    topo = fully_connected_node(4)
    sched = RING.schedule(4, 4000)
    on_time = simulate.simulate(sched, topo).time_s
    late = simulate.simulate(sched, topo, start_s=[0, 0, 0.01, 0])
    assert late.finish_s.max() == pytest.approx(0.01 + on_time, rel=1e-9)


def test_bytes_per_link_equal_the_schedule():
    topo = fully_connected_node(4)
    sched = RING.schedule(4, 4000)
    sim = simulate.simulate(sched, topo)
    # each message crosses two links, up and down
    assert sim.link_bytes.sum() == 2 * sched.elements_sent().sum() * 4


def test_predict_and_errors_share_the_measured_schema():
    topo = topology.load("single-node-8gpu")
    out = predict.predict(topo, algorithms.get("ring"), 8, 10**6, compute_s=0.002, channels=1)
    assert out["allreduce_time_s_median"] == pytest.approx(out["closed_form_s"], rel=1e-9)
    assert out["busbw_bytes_per_s"] == pytest.approx(out["algbw_bytes_per_s"] * 2 * 7 / 8)
    assert out["bytes_sent_per_step_by_rank"] == [2 * 7 * 10**6 // 8 * 4] * 8
    err = predict.errors({"allreduce_time_s_median": out["allreduce_time_s_median"] / 2}, out)
    assert err == {"allreduce_time_s_median": pytest.approx(1.0)}


@pytest.mark.slow
def test_sweep_scaling_efficiency_falls_with_communication():
    """One channel (the textbook rings): the hierarchical ring wins at scale, since only 1/L
    of its bytes leave a node. NCCL's channels (16 here, two per rail): the flat ring uses
    every NIC and streams NVLink and NIC traffic at once, and beats the hierarchical ring
    whose phases run one after the other, as NCCL's rings beat hierarchical schemes; even
    pipelined (its phases overlap), the hierarchical ring stays behind. The pipelined ring
    is simulated on 8 nodes: each of its steps is followed flow by flow, and on 32 nodes
    in 16 chunks it took 20 s to show the same."""
    dgx = topology.load("dgx-h100")
    algos = [algorithms.get("ring"), algorithms.get("hierarchical-ring")]
    rows = predict.sweep(dgx, algos, [8, 64, 256], 10**8, compute_s=0.05, channels=1)
    eff = {(r["world_size"], r["algorithm"]): r["scaling_efficiency"] for r in rows}
    assert all(0 < e <= 1 for e in eff.values())
    assert eff[(64, "ring")] < eff[(8, "ring")]
    assert eff[(256, "hierarchical-ring")] > eff[(256, "ring")]  # fewer slow inter-node rounds
    rows = predict.sweep(dgx, algos, [64, 256], 10**8, compute_s=0.05)
    assert {r["channels"] for r in rows} == {16}
    nccl = {(r["world_size"], r["algorithm"]): r["allreduce_time_s_median"] for r in rows}
    for p in (64, 256):
        assert nccl[(p, "ring")] < 0.9 * nccl[(p, "hierarchical-ring")]
    piped = predict.predict(dgx, algos[1], 64, 10**8, chunks=8)["allreduce_time_s_median"]
    assert nccl[(64, "ring")] < piped < 0.95 * nccl[(64, "hierarchical-ring")]


def test_ranks_that_part_ways_are_followed_one_by_one_and_agree_with_lockstep_when_they_meet():
    """A straggler makes the simulator follow every rank (it may then be faster than the
    closed form, never slower than it would be from the straggler's start); on time, the
    same ring runs in lockstep and equals the closed form."""
    topo = nodes_on_one_switch(8)
    sched = RING.schedule(8, 8 * 1000 + 3)  # chunks of 1000 and 1001 elements
    on_time = simulate.simulate(sched, topo).time_s
    closed = algorithms.get("ring").time_s(topo, 8, (8 * 1000 + 3) * 4, itemsize=4)
    assert on_time == pytest.approx(closed, rel=1e-12)
    late = simulate.simulate(sched, topo, start_s=[0, 0, 0, 1e-3, 0, 0, 0, 0])
    assert 1e-3 < late.time_s <= 1e-3 + on_time * (1 + 1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("name,nodes", [("ring", 512), ("hierarchical-ring", 512)])
def test_4096_rank_rings_are_simulated_and_equal_their_closed_forms(name, nodes):
    """Thousands of ranks (the flat ring in 8,190 rounds), 100 M elements (a prime): the bytes
    summed over the ranks pass 2**31, and a step quadratic in the ranks (16.8 M pairs) would
    show in the time. The large counts have their benchmark (bench/simulate_speed.py:
    32,768 and 131,072 ranks against its targets of time and memory); 32,768 here took 15 s
    of the suite to prove no more."""
    topo = topology.parse(
        {
            "name": "big",
            "nodes": nodes,
            "gpus_per_node": 8,
            "placement": "block",
            "intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": 3600, "latency_us": 0.7},
            "nic": {"count": 8, "bandwidth_gbit_per_s": 400, "latency_us": 1.2},
            "network": {"kind": "switch", "latency_us": 0.5},
        }
    )
    p, nelems = topo.gpus, 100_000_007  # a prime: chunks differ by one element
    out = predict.predict(topo, algorithms.get(name), p, nelems)
    assert out["allreduce_time_s_median"] == pytest.approx(out["closed_form_s"], rel=1e-9)
    assert sum(out["bytes_sent_per_step_by_rank"]) == pytest.approx(
        algorithms.get(name).elements_sent(p, nelems, topo.node_of_rank(p)).sum() * 4
    )


def rail_cluster(nodes=4, kind="rails"):
    return topology.parse(
        {
            "name": "rails",
            "nodes": nodes,
            "gpus_per_node": 8,
            "placement": "block",
            "intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": 3600, "latency_us": 0},
            "nic": {"count": 8, "bandwidth_gbit_per_s": 400, "latency_us": 0},
            "network": {"kind": kind, "latency_us": 0},
        }
    )


def test_a_ring_of_8_channels_on_8_rails_moves_8_times_the_bytes_of_one():
    """One channel leaves each node through one NIC; eight leave through all eight, one per
    rail: 8x the busbw, and the simulator equals the closed form."""
    topo, n = rail_cluster(), 8 * 32 * 2**16
    busbw = {}
    for channels in (1, 8):
        sched = RING.schedule(32, n, node_of_rank=topo.node_of_rank(32), channels=channels)
        sim = simulate.simulate(sched, topo)
        closed = RING.time_s(topo, 32, n * 4, itemsize=4, channels=channels)
        assert sim.time_s == pytest.approx(closed, rel=1e-9)
        busbw[channels] = sim.busbw_bytes_per_s
        nic_up = [
            i for i, name in enumerate(topo.link_names) if ".nic" in name and name.endswith(".up")
        ]
        used = np.count_nonzero(sim.link_bytes[nic_up])
        assert used == 4 * channels  # every node sends through `channels` NICs
    assert busbw[8] == pytest.approx(8 * busbw[1], rel=1e-9)
    assert busbw[1] == pytest.approx(50e9, rel=1e-9)  # one 400 Gb/s NIC per boundary


def test_a_pipelined_hierarchical_ring_overlaps_its_nvlink_and_nic_phases():
    """Where the intra-node rings and the inter-node rings take about as long (NVLink 4x a
    NIC: 1.5 n through a GPU's port, 0.375 n through a NIC), running them chunk by chunk
    overlaps them: well under the serial time, and never faster than the busiest link's
    bytes allow."""
    topo = topology.parse(
        {
            "name": "balanced",
            "nodes": 4,
            "gpus_per_node": 4,
            "placement": "block",
            "intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": 400, "latency_us": 0},
            "nic": {"count": 4, "bandwidth_gbit_per_s": 100, "latency_us": 0},
            "network": {"kind": "rails", "latency_us": 0},
        }
    )
    hier, n = algorithms.get("hierarchical-ring"), 16 * 4096
    nodes = topo.node_of_rank(16)
    serial = simulate.simulate(hier.schedule(16, n, node_of_rank=nodes), topo)
    piped = simulate.simulate(hier.schedule(16, n, node_of_rank=nodes, chunks=32), topo)
    assert piped.time_s < 0.7 * serial.time_s
    assert piped.time_s >= (piped.link_busy_s.max()) * (1 - 1e-9)
    assert piped.link_bytes.sum() == pytest.approx(serial.link_bytes.sum())
