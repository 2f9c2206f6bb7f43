"""Downpour SGD on a modelled cluster (netsim.sim.downpour): the bytes of every link of a run
from its definition, the incast simulated against its closed form, the steady state's bound
as the replicas grow, and `python -m netsim predict --algorithm downpour`."""

import json
import math
import re

import numpy as np
import pytest

from netsim import __main__ as cli
from netsim import algorithms
from netsim.algorithms import chunk_bounds, execute
from netsim.algorithms import downpour as counts
from netsim.cluster import topology
from netsim.errors import InputError
from netsim.sim import downpour

BW, LAT = 1e9, 2e-6  # slow enough that a shard's bytes, not the latency, set the time


def switch(gpus=16):
    return topology.single_switch(gpus, BW, LAT)


def by_definition(steps: int, every: int, push: bool) -> int:
    """Pushes or fetches of a replica, step by step as the brief's rule says."""
    last = steps - 1
    if push:
        return sum((k + 1) % every == 0 or k == last for k in range(steps))
    return sum((k + 1) % every == 0 and k != last for k in range(steps))


@pytest.mark.parametrize("every", [1, 2, 3, 5])
def test_pushes_and_fetches_count_the_definition(every):
    for steps in range(0, 21):
        assert downpour.pushes(steps, every) == by_definition(steps, every, push=True)
        assert downpour.fetches(steps, every) == by_definition(steps, every, push=False)


def test_link_bytes_of_a_small_awkward_run_by_hand():
    # n = 10 on 3 servers: shards 3, 3, 4. 5 steps, push every 3 (k = 2 and the last, k = 4),
    # fetch every 2 (k = 1, 3): 2 pushes and 2 requests up, 2 replies down.
    assert downpour.shards(10, 3).tolist() == [3, 3, 4]
    assert downpour.link_bytes(10, 4, 3, [5], 2, 3) == {
        (0, 1): (24, 4),
        (0, 2): (24, 4),
        (0, 3): (32, 4),
        (1, 0): (24, 2),
        (2, 0): (24, 2),
        (3, 0): (32, 2),
    }


def test_link_bytes_of_replicas_of_different_lengths():
    # 4 replicas, servers ranks 4 and 5; float64, n = 7: shards 3 and 4 (24 and 32 bytes).
    # 5 steps push at k = 2, 4 and fetch at k = 1, 3; 6 steps push at k = 2, 5 and fetch at
    # k = 1, 3; 1 step pushes once (its last) and never fetches; 0 steps send nothing (every
    # link of the job is listed, those without a message as (0, 0)).
    got = downpour.link_bytes(7, 8, 2, [5, 1, 0, 6], 2, 3)
    assert got == {
        (0, 4): (2 * 24, 4),
        (0, 5): (2 * 32, 4),
        (4, 0): (2 * 24, 2),
        (5, 0): (2 * 32, 2),
        (1, 4): (24, 1),
        (1, 5): (32, 1),
        (4, 1): (0, 0),
        (5, 1): (0, 0),
        (2, 4): (0, 0),
        (2, 5): (0, 0),
        (4, 2): (0, 0),
        (5, 2): (0, 0),
        (3, 4): (2 * 24, 4),
        (3, 5): (2 * 32, 4),
        (4, 3): (2 * 24, 2),
        (5, 3): (2 * 32, 2),
    }


def test_link_bytes_total_the_buffer_once_per_push_and_fetch():
    steps, n, servers = [7, 3, 12], 1001, 3
    got = downpour.link_bytes(n, 4, servers, steps, 3, 2)
    up = sum(downpour.pushes(s, 2) for s in steps)
    down = sum(downpour.fetches(s, 3) for s in steps)
    assert sum(b for b, _ in got.values()) == 4 * n * (up + down)
    assert sum(m for _, m in got.values()) == servers * (up + 2 * down)  # requests and replies


def test_an_empty_shard_is_a_message_of_no_bytes():
    got = downpour.link_bytes(2, 4, 3, [1], 1, 1)  # shards 0, 1, 1; one step: no fetch
    assert got == {(0, 1): (0, 1), (0, 2): (4, 1), (0, 3): (4, 1)} | {
        (s, 0): (0, 0) for s in (1, 2, 3)
    }


@pytest.mark.parametrize("replicas, servers, n", [(1, 1, 10), (3, 2, 1001), (8, 3, 1001)])
def test_one_exchange_leaves_every_replica_with_the_sum(replicas, servers, n):
    schedule = downpour.exchange(replicas, servers, n)
    rng = np.random.default_rng(0)
    grads = [rng.integers(-9, 9, n).astype(float) for _ in range(replicas)]
    out = execute(schedule, grads + [np.zeros(n)] * servers)
    for r in range(replicas):
        np.testing.assert_array_equal(out[r], sum(grads))
    shard = np.diff(chunk_bounds(n, servers))
    sent = schedule.elements_sent()
    assert sent[:replicas].tolist() == [n] * replicas
    assert sent[replicas:].tolist() == (replicas * shard).tolist()


TOPOLOGIES = {
    "one switch": switch,
    "v100-4node (one NIC per node)": lambda: topology.load("v100-4node"),
    "dgx-h100 (fat-tree)": lambda: topology.load("dgx-h100"),
    "ethernet-100g (PCIe tree, one NIC)": lambda: topology.load("ethernet-100g"),
}


@pytest.mark.parametrize("where", sorted(TOPOLOGIES))
@pytest.mark.parametrize("replicas", [1, 3, 8])
@pytest.mark.parametrize("servers", [1, 2, 3])
def test_the_simulated_incast_is_its_closed_form(where, replicas, servers):
    topo = TOPOLOGIES[where]()
    for n in (1001, 250_001):
        o = downpour.incast(topo, replicas + servers, servers, n)
        assert o["push_s"] == pytest.approx(o["push_closed_form_s"], rel=1e-2)
        assert o["fetch_s"] == pytest.approx(o["fetch_closed_form_s"], rel=1e-2)
        assert o["exchange_s"] == pytest.approx(o["push_s"] + o["fetch_s"], rel=1e-9)
        shard = np.diff(chunk_bounds(n, servers))
        for row, size in zip(o["servers"], shard):
            assert row["bytes_in"] == row["bytes_out"] == replicas * size * 4
            assert row["in_link_bytes"] <= replicas * n * 4


@pytest.mark.parametrize("replicas", [1, 3, 8])
@pytest.mark.parametrize("servers", [1, 2, 3])
def test_on_one_switch_the_incast_is_the_servers_ports_or_the_replicas(replicas, servers):
    """alpha + max(max_s R shard_s / B_in(s), n / B_out(replica)), every port at BW."""
    n, p = 1001, replicas + servers
    o = downpour.incast(switch(), p, servers, n)
    busiest = max(replicas * math.ceil(n / servers), n) * 4 / BW
    for key in ("push", "fetch"):
        assert o[f"{key}_closed_form_s"] == pytest.approx(LAT + busiest, rel=1e-12)
        assert o[f"{key}_s"] == pytest.approx(LAT + busiest, rel=1e-2)
    for s, row in enumerate(o["servers"]):
        assert row["in_link"] == f"node0.gpu{replicas + s}.down"
        assert row["out_link"] == f"node0.gpu{replicas + s}.up"
        assert row["in_link_bytes"] == row["bytes_in"]
        assert row["in_link_s"] == pytest.approx(row["bytes_in"] / BW)


def test_the_steady_state_turns_server_bound_as_replicas_grow():
    n, compute, push_every, fetch_every = 1_000_000, 5e-3, 2, 3
    nbytes = n * 4
    own = compute + (LAT + nbytes / BW) / push_every + (2 * LAT + nbytes / BW) / fetch_every
    bounds = []
    for replicas in range(1, 15):
        o = downpour.predict(
            switch(), replicas + 1, 1, n, 4, compute, n_fetch=fetch_every, n_push=push_every
        )
        links = replicas * nbytes / (push_every * BW)  # the server's down-link binds first
        period = max(own, links)
        assert o["replica_bound_s"] == pytest.approx(own, rel=1e-9)
        assert o["link_bound_s"] == pytest.approx(links, rel=1e-9)
        assert o["step_time_s"] == pytest.approx(period, rel=1e-9)
        server = o["server_links"][0]
        assert server["in_link"] == f"node0.gpu{replicas}.down"
        assert server["in_bytes_per_s"] == pytest.approx(replicas * nbytes / (push_every * period))
        assert server["in_utilisation"] == pytest.approx(server["in_bytes_per_s"] / BW)
        assert server["out_bytes_per_s"] == pytest.approx(
            replicas * nbytes / (fetch_every * period)
        )
        assert o["steps_per_s"] == pytest.approx(replicas / period)
        assert o["updates_per_s"] == pytest.approx(replicas / (push_every * period))
        bounds.append(o["bound"])
    switch_at = bounds.index("server 0 in-link")
    assert 1 < switch_at and set(bounds[:switch_at]) == {"compute-bound"}
    assert set(bounds[switch_at:]) == {"server 0 in-link"}
    assert o["server_links"][0]["in_utilisation"] == pytest.approx(1.0)  # saturated


def test_fetching_more_often_than_pushing_binds_the_servers_out_links():
    o = downpour.predict(switch(), 14, 2, 1001 * 1000, 4, 0.0, n_fetch=1, n_push=4)
    assert o["bound"].endswith("out-link") and o["bound_link"].endswith(".up")


def test_a_port_servers_share_is_named_as_theirs():
    # v100-4node: 8 GPUs behind one NIC per node; servers 0 and 1 are GPUs 30, 31 of node 3,
    # reached by 24 of the 30 replicas through that node's one NIC.
    o = downpour.predict(topology.load("v100-4node"), 32, 2, 10**6, n_fetch=4, n_push=1)
    assert o["bound"] == "servers 0..1 in-link" and o["bound_link"] == "node3.nic0.down"


@pytest.mark.parametrize(
    "call, words",
    [
        (dict(world_size=10, servers=10), "less than --ranks (10)"),
        (dict(world_size=10, servers=0), "--servers must be at least 1"),
        (dict(nelems=0), "nelems must be >= 1"),
        (dict(world_size=99), "world_size"),
        (dict(n_fetch=0), "--fetch-every must be an integer >= 1"),
        (dict(n_push=1.5), "--push-every must be an integer >= 1"),
    ],
)
def test_bad_arguments_are_input_errors(call, words):
    good = dict(world_size=10, servers=2, nelems=1000)
    with pytest.raises(InputError, match=re.escape(words)):
        downpour.predict(switch(), **(good | call))


def test_downpour_is_not_an_all_reduce_and_counts_its_bytes_in_one_place():
    assert downpour.link_bytes is counts.link_bytes and downpour.pushes is counts.pushes
    assert "downpour" not in algorithms.ALGORITHMS and "downpour" not in algorithms.SCHEDULED


PREDICT = ["predict", "--topology", "v100-4node", "--params", "1000000", "--ranks", "26"]
DOWNPOUR = PREDICT + ["--algorithm", "downpour", "--servers", "1"]


def test_the_cli_prints_the_incast_and_the_steady_state(capsys):
    assert cli.main(DOWNPOUR + ["--compute-ms", "5", "--push-every", "2"]) == 0
    out = capsys.readouterr().out
    assert "downpour SGD of 3.8 MiB on 26 ranks" in out and "25 replicas, 1 server;" in out
    assert "incast, every replica at once: push" in out and "closed form" in out
    assert "asynchronous step" in out and "updates/s applied by the servers" in out
    assert cli.main(DOWNPOUR + ["--fetch-every", "3", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["algorithm"] == "downpour" and figures["replicas"] == 25
    assert figures["servers"] == 1 and figures["fetch_every"] == 3
    assert figures["incast"]["servers"][0]["bytes_in"] == 25 * 4_000_000
    assert figures["steps_per_s"] == pytest.approx(25 / figures["step_time_s"])


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--algorithm", "downpour", "--servers", "0"], "--servers: must be at least 1, got 0"),
        (["--algorithm", "downpour", "--servers", "26"], "less than --ranks (26)"),
        (["--algorithm", "downpour", "--servers", "30"], "less than --ranks (26)"),
        (["--algorithm", "downpour", "--fetch-every", "0"], "--fetch-every: must be at least 1"),
        (["--algorithm", "downpour", "--push-every", "x"], "--push-every: not an integer"),
        (["--servers", "2"], "are for --algorithm downpour"),
        (["--algorithm", "downpour", "--channels", "2"], "downpour has neither"),
        (["--algorithm", "downpour", "--ranks", "1"], "less than --ranks (1)"),
    ],
)
def test_bad_cli_input_is_one_line_and_exit_2(capsys, extra, words):
    assert cli.main(PREDICT + extra) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("netsim: error: ")
    assert words in err, err
