"""Asynchronous Downpour SGD (DistBelief, Dean et al. 2012) on a modelled cluster: of W ranks
the last S are parameter servers, ranks 0..R-1 (R = W - S) model replicas. Shard s of the
n elements, [b[s], b[s+1]) with b = chunk_bounds(n, S), lives on rank R + s. A replica runs
its n_r steps without a barrier; after the gradient of its step k it pushes if (k+1) %
n_push == 0 or k == n_r - 1 (shard s of its accumulated gradient to server s, one message
per server), then fetches if (k+1) % n_fetch == 0 and k != n_r - 1 (a 0-byte request to
every server, each of which replies with its shard).

- link_bytes, pushes, fetches: the bytes and messages of every directed link of a run,
  exactly (netsim.algorithms.downpour's, the one definition, which training is held to).
- incast: every replica pushing at once, then fetching at once (the hot spot of
  parameter_server's docstring): a 2-round schedule (exchange) simulated, beside its closed
  form, a round's farthest latency plus its busiest link's bytes over its bandwidth, routed
  on the topology's links; on one switch alpha + max(max_s R shard_s / B_in(s), n /
  B_out(replica)) bytes, B_in(s) the server's down-link (fetch: its up-link). Exact to a
  relative 1 / shard (shards differ by an element) while the slowest flow is the farthest.
- predict: the steady state. Replicas are out of step, so the links are time-shared:
      T = max(compute + push_alone / n_push + fetch_alone / n_fetch,
              max over links of (push bytes / n_push + fetch bytes / n_fetch) / bandwidth)
  the bytes those of one exchange of all R replicas (one switch: max_s R shard_s / (n_push
  B_in(s)), max_s R shard_s / (n_fetch B_out(s))); push_alone, fetch_alone: the slowest
  replica's on an idle network (a fetch after its request's latency). The bound is
  "compute-bound" or a link: "server s in-link", "server s out-link", "link NAME" (a port
  replicas share). As in the simulator, a server's adding costs one shard's gamma a push.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import numpy as np

from netsim.algorithms.downpour import fetches, link_bytes, pushes  # noqa: F401 (the counts)
from netsim.algorithms.rounds import PULL, PUSH, Schedule, chunk_bounds, make_round
from netsim.errors import InputError
from netsim.report.text import gbps, ms, nbytes

from . import simulate

NAME = "downpour"
SHOWN = 8  # servers listed in the text; the JSON has them all


def _count(name: str, value, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise InputError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def shards(nelems: int, servers: int) -> np.ndarray:
    """Elements of each server's shard (chunk_bounds: they differ by at most one)."""
    return np.diff(chunk_bounds(nelems, _count("servers", servers)))


def exchange(replicas: int, servers: int, nelems: int) -> Schedule:
    """Every replica pushes its shards to the servers (reduce), then every server sends its
    shard back to every replica (copy): the incast of all replicas at once."""
    bounds = chunk_bounds(nelems, _count("servers", servers))
    rep = np.repeat(np.arange(_count("replicas", replicas)), servers)
    srv = np.tile(np.arange(servers), replicas)
    start, count = bounds[srv], np.diff(bounds)[srv]
    push = make_round(PUSH, 0, True, rep, replicas + srv, start, count)
    fetch = make_round(PULL, 0, False, replicas + srv, rep, start, count)
    return Schedule(NAME, replicas + servers, nelems, (push, fetch))


class _Flows(NamedTuple):  # one direction of the exchange, flow r * S + s: replica r, server s
    links: np.ndarray
    lengths: np.ndarray
    latency_s: np.ndarray
    load: np.ndarray  # bytes per link
    ends: np.ndarray  # (R, S): each flow's link at the server (in: its last, out: its first)


class _Exchange:
    """One push and one fetch of every replica, routed once, with the simulator's costs."""

    def __init__(self, topology, world_size, servers, nelems, itemsize, gamma_s_per_byte):
        if not 1 <= servers < world_size:
            raise InputError(
                f"--servers must be at least 1 and less than --ranks ({world_size}): one rank "
                f"at least is a replica; got {servers}"
            )
        if nelems < 1:
            raise InputError(f"nelems must be >= 1, got {nelems}")
        self.R, self.S, self.topology = world_size - servers, servers, topology
        self.shard = shards(nelems, servers)
        sharing = topology.core_sharing(world_size)  # Downpour's are messages, never shm
        gamma = topology.reduce_s_per_byte if gamma_s_per_byte is None else gamma_s_per_byte
        self.add_s = float(self.shard.max()) * itemsize * gamma * sharing
        self.overhead_s = topology.message_overhead_s * sharing
        held = (nelems + np.concatenate([np.zeros(self.R), self.R * self.shard])) * itemsize
        nodes = np.bincount(topology.node_of_rank(world_size), held, topology.nodes)
        self.bandwidth = np.asarray(topology.bandwidth_for(nodes), dtype=float)
        rep, srv = np.repeat(np.arange(self.R), servers), np.tile(np.arange(servers), self.R)
        self.flow_bytes = (self.shard[srv] * itemsize).astype(float)
        self.data = self.flow_bytes > 0
        gpu = topology.gpu_of_rank(world_size)
        self.push = self._route(gpu[rep], gpu[self.R + srv], last=True)
        self.fetch = self._route(gpu[self.R + srv], gpu[rep], last=False)

    def _route(self, src, dst, last: bool) -> _Flows:
        indptr, links = self.topology.routes(src, dst)
        lengths = np.diff(indptr)
        load = np.bincount(links, np.repeat(self.flow_bytes, lengths), len(self.bandwidth))
        ends = links[indptr[1:] - 1 if last else indptr[:-1]]  # ranks on distinct GPUs
        latency = self.topology.path_latency_s(src, dst)
        return _Flows(links, lengths, latency, load, ends.reshape(self.R, self.S))

    def round_s(self, flows: _Flows, adds: bool) -> float:
        """The closed form of a round of every replica at once."""
        busiest = float((flows.load / self.bandwidth).max())
        return self.alpha(flows).max() + self.overhead_s + busiest + (self.add_s if adds else 0)

    def alpha(self, flows: _Flows) -> np.ndarray:  # per replica, its farthest data path
        return np.where(self.data, flows.latency_s, 0.0).reshape(self.R, self.S).max(axis=1)

    def alone_s(self, flows: _Flows) -> np.ndarray:
        """Per replica, its round on an idle network: its own busiest link."""
        n = len(self.bandwidth)
        owner = np.repeat(np.repeat(np.arange(self.R), self.S), flows.lengths)
        keys, where = np.unique(owner * n + flows.links, return_inverse=True)
        on = np.bincount(where, np.repeat(self.flow_bytes, flows.lengths))
        busy = on / self.bandwidth[keys % n]
        busiest = np.zeros(self.R)
        np.maximum.at(busiest, keys // n, busy)
        return self.alpha(flows) + self.overhead_s + busiest

    def server_link(self, flows: _Flows, s: int, load: np.ndarray) -> int:
        """The busiest of the links by which server s's flows arrive (in) or leave (out)."""
        ends = np.unique(flows.ends[:, s])
        return int(ends[np.argmax(load[ends] / self.bandwidth[ends])])

    def role(self, link: int) -> str:
        for flows, side in ((self.push, "in"), (self.fetch, "out")):
            mine = [s for s in range(self.S) if (flows.ends[:, s] == link).any()]
            if mine:
                who = f"server {mine[0]}" if len(mine) == 1 else f"servers {mine[0]}..{mine[-1]}"
                return f"{who} {side}-link"
        return f"link {self.topology.link_names[link]}"


def incast(topology, world_size, servers, nelems, itemsize=4, gamma_s_per_byte=None) -> dict:
    """Every replica pushes at once, then fetches at once: the simulated rounds, their closed
    forms, and per server the bytes into and out of it and the links that carry them."""
    x = _Exchange(topology, world_size, servers, nelems, itemsize, gamma_s_per_byte)
    schedule = exchange(x.R, servers, nelems)
    run = functools.partial(
        simulate.simulate, topology=topology, itemsize=itemsize, gamma_s_per_byte=gamma_s_per_byte
    )
    push, both = run(dataclasses.replace(schedule, rounds=schedule.rounds[:1])), run(schedule)
    rows = []
    for s in range(x.S):
        row = {"server": s, "rank": x.R + s, "shard_elements": int(x.shard[s])}
        for flows, side in ((x.push, "in"), (x.fetch, "out")):
            i = x.server_link(flows, s, flows.load)
            row[f"bytes_{side}"] = int(x.R * x.shard[s] * itemsize)
            row[f"{side}_link"] = topology.link_names[i]
            row[f"{side}_link_bytes"] = float(flows.load[i])
            row[f"{side}_link_bandwidth_bytes_per_s"] = float(x.bandwidth[i])
            row[f"{side}_link_s"] = float(flows.load[i] / x.bandwidth[i])
        row["push_done_s"] = float(push.finish_s[x.R + s])
        row["exchange_done_s"] = float(both.finish_s[x.R + s])
        rows.append(row)
    return {
        "push_s": push.time_s,
        "fetch_s": both.time_s - push.time_s,
        "exchange_s": both.time_s,
        "push_closed_form_s": x.round_s(x.push, adds=True),
        "fetch_closed_form_s": x.round_s(x.fetch, adds=False),
        "bottleneck_link": topology.link_names[both.bottleneck_link],
        "servers": rows,
    }


def predict(
    topology, world_size, servers, nelems, itemsize=4, compute_s=0.0, n_fetch=1, n_push=1
) -> dict:
    """Downpour on W = world_size ranks, the last `servers` of them servers: the incast, and
    the steady state's step period, the bound that sets it, the load of each server's links
    and the rate of steps and of updates (pushes the servers apply)."""
    n_fetch, n_push = _count("--fetch-every", n_fetch), _count("--push-every", n_push)
    x = _Exchange(topology, world_size, servers, nelems, itemsize, None)
    push_alone = x.alone_s(x.push) + x.add_s
    fetch_alone = x.alpha(x.push) + x.overhead_s + x.alone_s(x.fetch)  # the request first
    own = push_alone / n_push + fetch_alone / n_fetch
    slowest = int(np.argmax(own))
    own_s = float(compute_s + own[slowest])
    per_step = x.push.load / n_push + x.fetch.load / n_fetch  # bytes on a link per period
    busy = per_step / x.bandwidth
    binding = int(np.argmax(busy))
    link_s = float(busy[binding])
    period = max(own_s, link_s)
    links = []
    for s in range(servers):
        row = {"server": s, "rank": x.R + s}
        for flows, side in ((x.push, "in"), (x.fetch, "out")):
            i = x.server_link(flows, s, per_step)
            row[f"{side}_link"] = topology.link_names[i]
            row[f"{side}_bytes_per_s"] = float(per_step[i] / period)
            row[f"{side}_utilisation"] = float(busy[i] / period)
        links.append(row)
    return {
        "algorithm": NAME,
        "topology": topology.name,
        "world_size": world_size,
        "replicas": x.R,
        "servers": servers,
        "buffer_bytes": nelems * itemsize,
        "fetch_every": n_fetch,
        "push_every": n_push,
        "compute_s": float(compute_s),
        "incast": incast(topology, world_size, servers, nelems, itemsize),
        "push_alone_s": float(push_alone[slowest]),
        "fetch_alone_s": float(fetch_alone[slowest]),
        "replica_bound_s": own_s,
        "link_bound_s": link_s,
        "step_time_s": period,
        "bound": "compute-bound" if own_s >= link_s else x.role(binding),
        "bound_link": None if own_s >= link_s else topology.link_names[binding],
        "steps_per_s": x.R / period,
        "updates_per_s": x.R / (n_push * period),
        "server_links": links,
    }


def text(o: dict) -> str:
    inc, r, s = o["incast"], o["replicas"], o["servers"]
    lines = [
        f"downpour SGD of {nbytes(o['buffer_bytes'])} on {o['world_size']} ranks of "
        f'"{o["topology"]}": {r} replica{"s" if r > 1 else ""}, {s} server{"s" if s > 1 else ""}'
        f"; push every {o['push_every']}, fetch every {o['fetch_every']} steps",
        f"  incast, every replica at once: push {ms(inc['push_s'])} (closed form "
        f"{ms(inc['push_closed_form_s'])}), fetch {ms(inc['fetch_s'])} (closed form "
        f"{ms(inc['fetch_closed_form_s'])})",
        *(
            f"    server {v['server']} (rank {v['rank']}): {nbytes(v['bytes_in'])} in by "
            f"{v['in_link']} {ms(v['in_link_s'])}, {nbytes(v['bytes_out'])} out by "
            f"{v['out_link']} {ms(v['out_link_s'])}"
            for v in inc["servers"][:SHOWN]
        ),
        f"  one replica alone: push {ms(o['push_alone_s'])}, fetch {ms(o['fetch_alone_s'])} "
        "(after its request)",
        f"  asynchronous step {ms(o['step_time_s'])}, {o['bound']}: compute and own exchange "
        f"{ms(o['replica_bound_s'])}, links {ms(o['link_bound_s'])}",
        *(
            f"    server {v['server']}  in {v['in_link']:<16} {gbps(v['in_bytes_per_s']):>11} "
            f"{v['in_utilisation']:>5.0%} busy   out {v['out_link']:<16} "
            f"{gbps(v['out_bytes_per_s']):>11} {v['out_utilisation']:>5.0%} busy"
            for v in o["server_links"][:SHOWN]
        ),
        *([f"    ... and {s - SHOWN} more servers"] if s > SHOWN else []),
        f"  {o['steps_per_s']:,.0f} replica steps/s, {o['updates_per_s']:,.0f} updates/s "
        "applied by the servers",
    ]
    return "\n".join(lines)
