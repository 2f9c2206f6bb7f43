"""Clusters of GPUs as directed links: described in TOML, validated once, routed in bulk.

A topology is `nodes` nodes of `gpus_per_node` GPUs. Every link is one direction of a
cable or switch port, with a bandwidth and a latency; a flow's route is the list of links
it crosses. Inside a node the GPUs meet on an all-to-all switch (NVLink/NVSwitch) or on a
PCIe tree; GPU g of a node uses NIC g * count // gpus_per_node; the NICs meet on one
switch, a two-level fat-tree, or a ring/torus of nodes. The links of one route:

    same node:  GPU -gpu.up-> [pcie.up -> pcie.down] -gpu.down-> GPU
    two nodes:  GPU -gpu.up-> nic.up -> [network links] -> nic.down -gpu.down-> GPU

    network      links between nic.up and nic.down                 switches crossed
    switch       none (nic.up ends at the switch, nic.down leaves it)      1
    fat-tree     leafA.spine.up, leafB.spine.down if the leaves differ     3 (1 in one leaf)
    ring, torus  nodeN.dimD+ / nodeN.dimD-: node N to its next / previous  one per hop
                 node along dimension D (C order, dimensions of size 1 dropped)

Latency is charged once per thing crossed, on one link of it, so a path's latency is the
sum over its links: gpu.up carries the intra-node fabric's latency (its switch; a PCIe
tree charges one latency per PCIe switch or root complex crossed: pcie.up and pcie.down
each carry one more), gpu.down carries 0. nic.up carries the NIC latency (sending and
receiving NIC together), nic.down the last network switch (0 on a ring/torus, whose hop
links each carry the network latency), spine.up and spine.down one switch each. So an
all-to-all pair costs exactly intra_node.latency_us, and a fat-tree pair in two leaves
intra + nic + 3 network latencies.

Optional, for a node whose GPUs are really processes sharing one memory (calibrated
machines, `python -m netsim calibrate`): `intra_node.aggregate_bandwidth_gbit_per_s` (all-
to-all only) adds one link nodeN.fabric (latency 0) that every GPU->GPU route inside the
node crosses between gpu.up and gpu.down, so all transfers of a node share that capacity
(a shared-memory MPI copies through the CPUs and memory of the machine: two ranks may each
copy at the port rate, four cannot). `intra_node.cache_bytes` with
`intra_node.cache_bandwidth_gbit_per_s` gives the fabric a second capacity, used while the
buffers of the collective on that node fit in the cache (Topology.bandwidth_for). A
`[compute]` table (all keys optional) describes the processors that run the schedule:
`reduce_gbyte_per_s`, the rate at which a rank adds received bytes into its buffer;
`message_overhead_us`, the processor time a rank spends per round on top of the link
latency (LogP's o); `cores`, how many the ranks of a node share, so that with more ranks
than cores both of those take ceil(ranks / cores) times as long (netsim.simulate).

Simplifications, on purpose: a NIC is reached by its GPU's up link alone (GPUDirect RDMA
through the GPU's own PCIe switch, never the root complex); a fat-tree's spine is one up
and one down link per leaf of capacity NIC bandwidth * NICs under the leaf /
oversubscription (no per-spine-switch hashing); ring/torus links have one NIC's bandwidth
and routes are dimension-ordered shortest paths (ties at half the ring go the + way).
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import numbers
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

PRESETS_DIR = Path(__file__).with_name("presets")
PLACEMENTS = ("block", "round-robin")


class TopologyError(ValueError):
    """A bad topology description or request: one line, naming the key at fault."""


# ---------------------------------------------------------------- validation


def _show(value) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(path: str, problem: str, value) -> TopologyError:
    return TopologyError(f"{path} {problem}, got {_show(value)}")


def _number(problem: str, ok):
    def check(path, value):
        # bool is an int to Python; in a topology True is a typo, never a number
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not isinstance(value, numbers.Integral) and not math.isfinite(value):
            raise _bad(path, "must be a finite number", value)
        if not ok(value):
            raise _bad(path, problem, value)
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    return check


_positive = _number("must be positive", lambda v: v > 0)
_non_negative = _number("must be >= 0", lambda v: v >= 0)
_oversubscription = _number("must be >= 1", lambda v: v >= 1)


def _count(path, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise _bad(path, "must be a positive integer", value)
    return int(value)


def _text(path, value) -> str:
    if not isinstance(value, str):
        raise _bad(path, "must be a string", value)
    return value


def _placement(path, value) -> str:
    if value not in PLACEMENTS:
        raise _bad(path, f"must be one of {', '.join(PLACEMENTS)}", value)
    return value


def _dims(path, value) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value:
        raise _bad(path, "must be a non-empty list of positive integers", value)
    return [_count(f"{path}[{i}]", d) for i, d in enumerate(value)]


# table -> (keys of every kind, {kind: keys of that kind only}); key -> checker
_TABLES = {
    "intra_node": ({"bandwidth_gbit_per_s": _positive, "latency_us": _non_negative},
                   {"all-to-all": {},
                    "pcie-tree": {"gpus_per_switch": _count, "uplink_bandwidth_gbit_per_s": _positive}}),
    "nic": ({"count": _count, "bandwidth_gbit_per_s": _positive, "latency_us": _non_negative}, None),
    "network": ({"latency_us": _non_negative},
                {"switch": {}, "fat-tree": {"nodes_per_leaf": _count, "oversubscription": _oversubscription},
                 "ring": {}, "torus": {"dims": _dims}}),
    "compute": ({}, None),  # optional table, all its keys optional (_OPTIONAL)
}
_TOP = {"name": _text, "nodes": _count, "gpus_per_node": _count, "placement": _placement}
# table -> (optional keys of every kind, {kind: optional keys of that kind only})
_OPTIONAL = {
    "intra_node": ({}, {"all-to-all": {"aggregate_bandwidth_gbit_per_s": _positive, "cache_bytes": _count,
                                       "cache_bandwidth_gbit_per_s": _positive}}),
    "compute": ({"cores": _count, "message_overhead_us": _non_negative, "reduce_gbyte_per_s": _positive}, None),
}


def _unknown(path: str, key: str, known) -> TopologyError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
    return TopologyError(f"{path}{key} is not a known key{hint}")


def _check_keys(data: dict, checks: dict, path: str = "", why: str = "") -> dict:
    out = {}
    for key, check in checks.items():
        if key not in data:
            raise TopologyError(f"{path}{key} is missing{why}")
        out[key] = check(path + key, data[key])
    return out


def _check_table(name: str, data) -> dict:
    """Unknown keys first (so a misspelt key is named as such, not as a missing one), then
    the kind, then every key the kind needs, then the optional keys given."""
    if not isinstance(data, dict):
        raise _bad(name, "must be a table", data)
    common, kinds = _TABLES[name]
    optional, optional_kinds = _OPTIONAL.get(name, ({}, None))
    kinds, optional_kinds = kinds or {}, optional_kinds or {}
    kind = data.get("kind")
    own = kinds.get(kind) if isinstance(kind, str) else None  # None: no kind, or a bad one
    may = {**optional, **(optional_kinds.get(kind, {}) if own is not None else {})}
    every_kind = {key for keys in (*kinds.values(), *optional_kinds.values()) for key in keys}
    allowed = {*common, *may, *(every_kind if own is None else own), *(("kind",) if kinds else ())}
    for key in data:
        if key in every_kind and key not in allowed:
            raise TopologyError(f"{name}.{key} does not apply to {name}.kind = {kind!r}")
        if key not in allowed:
            raise _unknown(f"{name}.", key, allowed)
    if kinds and "kind" not in data:
        raise TopologyError(f"{name}.kind is missing (one of {', '.join(kinds)})")
    if kinds and own is None:
        raise _bad(f"{name}.kind", f"must be one of {', '.join(kinds)}", kind)
    out = {"kind": kind} if kinds else {}
    out.update(_check_keys(data, common, name + "."))
    out.update(_check_keys(data, own or {}, name + ".", f" (needed by {name}.kind = {kind!r})"))
    return {**out, **{key: check(f"{name}.{key}", data[key]) for key, check in may.items() if key in data}}


def _check(data) -> dict:
    if not isinstance(data, dict):
        raise _bad("the topology", "must be a table", data)
    for key in data:
        if key not in _TOP and key not in _TABLES:
            raise _unknown("", key, set(_TOP) | set(_TABLES))
    spec = _check_keys(data, _TOP)
    nodes, gpn = spec["nodes"], spec["gpus_per_node"]
    for name in _TABLES:
        if name in data:
            spec[name] = _check_table(name, data[name])
        elif name == "intra_node" or name in ("nic", "network") and nodes > 1:
            needed = "" if name == "intra_node" else " (needed when nodes > 1)"
            raise TopologyError(f"{name} is missing{needed}")
    intra, nic, net = spec["intra_node"], spec.get("nic"), spec.get("network", {})
    if intra["kind"] == "pcie-tree" and gpn % intra["gpus_per_switch"]:
        raise _bad("intra_node.gpus_per_switch", f"must divide gpus_per_node = {gpn}",
                   intra["gpus_per_switch"])
    # the cache is a second capacity of the fabric: it needs the fabric, and both halves
    cache = [k for k in ("cache_bytes", "cache_bandwidth_gbit_per_s") if k in intra]
    for key in ("cache_bytes", "cache_bandwidth_gbit_per_s", "aggregate_bandwidth_gbit_per_s"):
        if cache and key not in intra:
            raise TopologyError(f"intra_node.{key} is missing (needed by intra_node.{cache[0]})")
    if nic and nic["count"] > gpn:
        raise _bad("nic.count", f"must be <= gpus_per_node = {gpn}", nic["count"])
    if net.get("kind") == "fat-tree" and nodes % net["nodes_per_leaf"]:
        raise _bad("network.nodes_per_leaf", f"must divide nodes = {nodes}", net["nodes_per_leaf"])
    if net.get("kind") == "torus" and math.prod(net["dims"]) != nodes:
        raise _bad("network.dims", f"must multiply to nodes = {nodes}", net["dims"])
    return spec


# ---------------------------------------------------------------- links and routes


class Routes(NamedTuple):
    """CSR: the links of flow i are links[indptr[i]:indptr[i+1]], in the order crossed."""

    indptr: np.ndarray  # (flows + 1,) int64
    links: np.ndarray  # (total links,) int64


@dataclass(frozen=True)
class _Layout:
    """Link ids as arithmetic: each kind of link is one contiguous block, indexed by
    (node, port), so routing many flows is a few array expressions."""

    nodes: int
    gpn: int
    per_switch: int  # GPUs per PCIe switch; 0: all-to-all
    nics: int  # NICs per node; 0: no network
    per_leaf: int  # nodes per fat-tree leaf; 0: not a fat-tree
    dims: tuple[int, ...]  # ring/torus sizes longer than 1, C order (last fastest)
    fabric: bool  # a shared nodeN.fabric link inside every node

    @classmethod
    def of(cls, spec: dict) -> _Layout:
        intra, nic, net = spec["intra_node"], spec.get("nic"), spec.get("network", {})
        kind = net.get("kind")
        dims = [spec["nodes"]] if kind == "ring" else net.get("dims", []) if kind == "torus" else []
        return cls(spec["nodes"], spec["gpus_per_node"], intra.get("gpus_per_switch", 0),
                   nic["count"] if nic else 0, net.get("nodes_per_leaf", 0) if kind == "fat-tree" else 0,
                   tuple(d for d in dims if d > 1), "aggregate_bandwidth_gbit_per_s" in intra)

    @functools.cached_property
    def blocks(self) -> dict[str, int]:
        """First id of each block; 'end' is the number of links."""
        sizes = {"gpu.up": self.nodes * self.gpn, "gpu.down": self.nodes * self.gpn}
        if self.per_switch:
            sizes["pcie.up"] = sizes["pcie.down"] = self.nodes * (self.gpn // self.per_switch)
        sizes["nic.up"] = sizes["nic.down"] = self.nodes * self.nics
        if self.per_leaf:
            sizes["spine.up"] = sizes["spine.down"] = self.nodes // self.per_leaf
        sizes["hop"] = self.nodes * len(self.dims) * 2 if self.nics else 0
        sizes["fabric"] = self.nodes if self.fabric else 0
        starts = np.cumsum([0, *sizes.values()])
        return {**dict(zip(sizes, starts[:-1].tolist())), "end": int(starts[-1])}

    def names(self) -> list[str]:
        nodes, gpn = range(self.nodes), range(self.gpn)
        out = [f"node{n}.gpu{g}.{d}" for d in ("up", "down") for n in nodes for g in gpn]
        if self.per_switch:
            out += [f"node{n}.pcie{s}.{d}" for d in ("up", "down") for n in nodes
                    for s in range(self.gpn // self.per_switch)]
        out += [f"node{n}.nic{k}.{d}" for d in ("up", "down") for n in nodes for k in range(self.nics)]
        if self.per_leaf:
            out += [f"leaf{x}.spine.{d}" for d in ("up", "down") for x in range(self.nodes // self.per_leaf)]
        if self.nics:
            out += [f"node{n}.dim{i}{s}" for n in nodes for i in range(len(self.dims)) for s in "+-"]
        if self.fabric:
            out += [f"node{n}.fabric" for n in nodes]
        return out

    def properties(self, spec: dict) -> tuple[np.ndarray, np.ndarray]:
        """(bandwidth_bytes_per_s, latency_s) of every link, by the conventions above."""
        intra, nic, net = spec["intra_node"], spec.get("nic", {}), spec.get("network", {})
        bw, lat = np.empty(self.blocks["end"]), np.empty(self.blocks["end"])
        gbit, us = 1e9 / 8, 1e-6
        nic_bw = nic.get("bandwidth_gbit_per_s", 0) * gbit
        spine_bw = nic_bw * self.nics * self.per_leaf / net.get("oversubscription", 1)
        hop_lat = net.get("latency_us", 0) * us
        values = {"gpu.up": (intra["bandwidth_gbit_per_s"] * gbit, intra["latency_us"] * us),
                  "gpu.down": (intra["bandwidth_gbit_per_s"] * gbit, 0.0),
                  "pcie.up": (intra.get("uplink_bandwidth_gbit_per_s", 0) * gbit, intra["latency_us"] * us),
                  "pcie.down": (intra.get("uplink_bandwidth_gbit_per_s", 0) * gbit, intra["latency_us"] * us),
                  "nic.up": (nic_bw, nic.get("latency_us", 0) * us),
                  "nic.down": (nic_bw, 0.0 if net.get("kind") in ("ring", "torus") else hop_lat),
                  "spine.up": (spine_bw, hop_lat), "spine.down": (spine_bw, hop_lat),
                  "hop": (nic_bw, hop_lat),
                  "fabric": (intra.get("aggregate_bandwidth_gbit_per_s", 0) * gbit, 0.0)}
        ends = list(self.blocks.values())[1:]
        for (block, start), end in zip(self.blocks.items(), ends):
            bw[start:end], lat[start:end] = values[block]
        return bw, lat

    def route(self, src: np.ndarray, dst: np.ndarray) -> Routes:
        """One column per link a route may cross, -1 where this flow does not; dropping the
        -1s row by row leaves every route in order."""
        b, gpn = self.blocks, self.gpn
        src_node, dst_node = src // gpn, dst // gpn
        moving, remote = src != dst, src_node != dst_node
        local = moving & ~remote
        cols = [np.where(moving, b["gpu.up"] + src, -1)]
        tail = [np.where(moving, b["gpu.down"] + dst, -1)]
        if self.fabric:
            cols.append(np.where(local, b["fabric"] + src_node, -1))
        if self.per_switch:
            switches = gpn // self.per_switch
            src_sw, dst_sw = src % gpn // self.per_switch, dst % gpn // self.per_switch
            cross = local & (src_sw != dst_sw)
            cols.append(np.where(cross, b["pcie.up"] + src_node * switches + src_sw, -1))
            tail.insert(0, np.where(cross, b["pcie.down"] + dst_node * switches + dst_sw, -1))
        if self.nics:
            src_nic = src_node * self.nics + src % gpn * self.nics // gpn
            dst_nic = dst_node * self.nics + dst % gpn * self.nics // gpn
            cols.append(np.where(remote, b["nic.up"] + src_nic, -1))
            tail.insert(0, np.where(remote, b["nic.down"] + dst_nic, -1))
            if self.per_leaf:
                src_leaf, dst_leaf = src_node // self.per_leaf, dst_node // self.per_leaf
                spine = src_leaf != dst_leaf
                cols += [np.where(spine, b["spine.up"] + src_leaf, -1),
                         np.where(spine, b["spine.down"] + dst_leaf, -1)]
            cols += self._torus_hops(src_node, dst_node)
        table = np.column_stack([c if c.ndim == 2 else c[:, None] for c in cols + tail])
        used = table >= 0
        indptr = np.zeros(len(src) + 1, dtype=np.int64)
        np.cumsum(used.sum(axis=1), out=indptr[1:])
        return Routes(indptr, table[used].astype(np.int64, copy=False))

    def _torus_hops(self, src_node: np.ndarray, dst_node: np.ndarray) -> list[np.ndarray]:
        """Dimension-ordered: finish dimension 0, then 1, ...; per dimension the shorter way
        round, one (flows, most steps) block of hop links, -1 past a flow's last hop."""
        blocks, cur = [], src_node.copy()
        strides = np.cumprod([1, *self.dims[:0:-1]])[::-1]
        for i, (size, stride) in enumerate(zip(self.dims, strides)):
            here, there = cur // stride % size, dst_node // stride % size
            ahead = (there - here) % size
            plus = 2 * ahead <= size
            steps, way = np.where(plus, ahead, size - ahead), np.where(plus, 1, -1)
            k = np.arange(steps.max(initial=0))  # at most size // 2; 1 for neighbour traffic
            at = cur[:, None] + ((here[:, None] + way[:, None] * k) % size - here[:, None]) * stride
            link = self.blocks["hop"] + (at * len(self.dims) + i) * 2 + np.where(plus, 0, 1)[:, None]
            blocks.append(np.where(k < steps[:, None], link, -1))
            cur = cur + (there - here) * stride
        return blocks


# ---------------------------------------------------------------- the topology


@dataclass(frozen=True, eq=False)
class Topology:
    name: str
    nodes: int
    gpus_per_node: int
    placement: str
    link_names: tuple[str, ...]
    bandwidth_bytes_per_s: np.ndarray  # (L,) float
    latency_s: np.ndarray  # (L,) float
    spec: dict  # the validated description; to_toml(spec) writes it back

    def __repr__(self) -> str:
        return (f"Topology({self.name!r}: {self.nodes} nodes x {self.gpus_per_node} GPUs, "
                f"{len(self.link_names)} links)")

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @functools.cached_property
    def _layout(self) -> _Layout:
        return _Layout.of(self.spec)

    def gpu_of_rank(self, world_size: int) -> np.ndarray:
        """block: rank r on GPU r (fills node 0 first); round-robin: rank r on node
        r % nodes (as `mpirun --map-by node`), so a small job spreads over many nodes."""
        if isinstance(world_size, bool) or not isinstance(world_size, numbers.Integral) \
                or not 1 <= world_size <= self.gpus:
            raise _bad("world_size", f"must be an integer from 1 to the {self.gpus} GPUs of {self.name!r}",
                       world_size)
        rank = np.arange(world_size, dtype=np.int64)
        if self.placement == "block":
            return rank
        return rank % self.nodes * self.gpus_per_node + rank // self.nodes

    def node_of_rank(self, world_size: int) -> np.ndarray:
        return self.gpu_of_rank(world_size) // self.gpus_per_node

    def _flows(self, src_gpu, dst_gpu) -> tuple[np.ndarray, np.ndarray]:
        src, dst = np.broadcast_arrays(np.atleast_1d(src_gpu), np.atleast_1d(dst_gpu))
        if src.ndim != 1:
            raise _bad("src_gpu/dst_gpu", "must be one-dimensional", src.shape)
        if src.size == 0:
            return src.astype(np.int64), dst.astype(np.int64)
        for what, gpu in (("src_gpu", src), ("dst_gpu", dst)):
            if gpu.dtype.kind not in "iu":
                raise _bad(what, "must be integer GPU ids", gpu.dtype)
            if gpu.min() < 0 or gpu.max() >= self.gpus:
                raise _bad(what, f"must be GPU ids in [0, {self.gpus})", (int(gpu.min()), int(gpu.max())))
        return src.astype(np.int64, copy=False), dst.astype(np.int64, copy=False)

    def routes(self, src_gpu: np.ndarray, dst_gpu: np.ndarray) -> Routes:
        """Vectorised routing of many flows at once, CSR form: the links of flow i are
        links[indptr[i]:indptr[i+1]] (indptr has len(src)+1 entries). src == dst gives an
        empty route. Returns (indptr, links), also as .indptr and .links."""
        return self._layout.route(*self._flows(src_gpu, dst_gpu))

    def _per_flow(self, src_gpu, dst_gpu, values: np.ndarray, reduce: np.ufunc, empty: float) -> np.ndarray:
        indptr, links = self.routes(src_gpu, dst_gpu)
        out = np.full(len(indptr) - 1, empty)
        routed = np.diff(indptr) > 0
        if routed.any():  # reduceat over the starts of non-empty rows only
            out[routed] = reduce.reduceat(values[links], indptr[:-1][routed])
        return out

    def path_latency_s(self, src_gpu, dst_gpu) -> np.ndarray:
        """Sum of link latencies per flow (0 for src == dst)."""
        return self._per_flow(src_gpu, dst_gpu, self.latency_s, np.add, 0.0)

    def path_bandwidth_bytes_per_s(self, src_gpu, dst_gpu) -> np.ndarray:
        """Narrowest link per flow, alone on the network (inf for src == dst)."""
        return self._per_flow(src_gpu, dst_gpu, self.bandwidth_bytes_per_s, np.minimum, np.inf)

    def bandwidth_for(self, resident_bytes_by_node) -> np.ndarray:
        """Link bandwidths while each node holds this many bytes of buffers: the fabric of a
        node whose bytes fit in intra_node.cache_bytes runs at the cache bandwidth."""
        intra = self.spec["intra_node"]
        if "cache_bytes" not in intra:
            return self.bandwidth_bytes_per_s
        fits = np.flatnonzero(np.asarray(resident_bytes_by_node) <= intra["cache_bytes"])
        out = self.bandwidth_bytes_per_s.copy()
        out[self._layout.blocks["fabric"] + fits] = intra["cache_bandwidth_gbit_per_s"] * 1e9 / 8
        return out

    @property
    def reduce_s_per_byte(self) -> float:
        """[compute] reduce_gbyte_per_s as seconds per byte added (0: adding is free)."""
        rate = self.spec.get("compute", {}).get("reduce_gbyte_per_s")
        return 1 / (rate * 1e9) if rate else 0.0

    @property
    def message_overhead_s(self) -> float:
        return self.spec.get("compute", {}).get("message_overhead_us", 0) * 1e-6

    def core_sharing(self, world_size: int) -> int:
        """How many ranks share a core on the busiest node: ceil(ranks there / [compute] cores),
        1 when the topology does not say how many cores there are."""
        cores = self.spec.get("compute", {}).get("cores")
        busiest = int(np.bincount(self.node_of_rank(world_size)).max())
        return -(-busiest // cores) if cores else 1


# ---------------------------------------------------------------- reading and writing


def parse(data: dict, source: str = "<dict>") -> Topology:
    """Validate a topology description (the TOML format as a dict) and build its links."""
    try:
        spec = _check(data)
    except TopologyError as err:
        raise TopologyError(f"{source}: {err}") from None
    layout = _Layout.of(spec)
    bandwidth, latency = layout.properties(spec)
    return Topology(spec["name"], spec["nodes"], spec["gpus_per_node"], spec["placement"],
                    tuple(layout.names()), bandwidth, latency, spec)


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load(path_or_preset: str) -> Topology:
    """A .toml file, or the name of a preset (see presets())."""
    path = Path(path_or_preset)
    if not path.is_file() and path.suffix != ".toml":
        if str(path_or_preset) not in presets():
            raise TopologyError(f"{path_or_preset!r} is neither a .toml file nor a preset "
                                f"({', '.join(presets())})")
        path = PRESETS_DIR / f"{path_or_preset}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise TopologyError(f"{path}: cannot read: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise TopologyError(f"{path}: not valid TOML: {str(err).splitlines()[0]}") from None
    return parse(data, str(path))


def single_switch(gpus: int, bandwidth_bytes_per_s: float, latency_s: float) -> Topology:
    """One node of `gpus` GPUs on a non-blocking switch: every GPU pair gets exactly this
    bandwidth and latency (the arrays are set from the arguments, not rounded via Gbit/us)."""
    intra = {"kind": "all-to-all", "bandwidth_gbit_per_s": bandwidth_bytes_per_s * 8 / 1e9,
             "latency_us": latency_s * 1e6}
    topo = parse({"name": f"{gpus} GPUs on one switch", "nodes": 1, "gpus_per_node": gpus,
                  "placement": "block", "intra_node": intra}, "single_switch()")
    return replace(topo, bandwidth_bytes_per_s=np.full(2 * gpus, float(bandwidth_bytes_per_s)),
                   latency_s=np.repeat([float(latency_s), 0.0], gpus))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))  # TOML spells floats as Python does, inf and nan included
    if isinstance(value, str):
        # JSON's string escapes are TOML's too; TOML also wants DEL escaped
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"to_toml cannot write {type(value).__name__} {_show(value)}")


def _toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else json.dumps(key, ensure_ascii=False)


def to_toml(topology_dict: dict) -> str:
    """Top-level scalars, then one [table] per dict value: the format of the presets."""
    tables = {k: v for k, v in topology_dict.items() if isinstance(v, dict)}
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in topology_dict.items() if k not in tables]
    for name, table in tables.items():
        lines += ["", f"[{_toml_key(name)}]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
