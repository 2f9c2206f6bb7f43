"""The topology file format: a TOML description checked once (one line naming the key on
any error) and written back (`to_toml`). netsim.cluster.topology turns a checked description
into links and routes; the keys are described there and in the preset files. (It runs
past 300 lines: every key's check is here, in one place, as the format is one idea.)

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
than cores both of those take ceil(ranks / cores) times as long (netsim.sim.simulate);
`shared_memory = true`, that a transfer inside a node is a read of the peer's buffer, not a
message (the path `netsim calibrate` fits for allreduce_train's --transport shm): there a
pairwise exchange costs one more round, a round's overhead is a wait per peer, and a round
fewer ranks read in shares the cores less (netsim.sim.shared_memory).

For GPU clusters, as measured libraries see them: `intra_node.efficiency` and
`nic.efficiency` (0 < e <= 1) are the share of their line rates that data moves at (NCCL
counts an H100 NVLink at 20.6 of its 25 GB/s and a NIC at 96% of its rate), so a link's
bandwidth is rate x efficiency; `intra_node.multicast = true` says the NVSwitch reduces
and multicasts (NVLS), `network.in_network_reduction = true` that the switches reduce
(SHARP): the in-network algorithms need them. An all-to-all node of hopper or blackwell GPUs
has `multicast = true` unless it says false (third-generation NVSwitch and later do NVLS).
Top-level `gpu` (volta, ampere, hopper, blackwell; cdna3, cdna4 for AMD Instinct, whose
library is RCCL) and `cpu` (intel, amd, arm) choose the rows of NCCL's (or RCCL's) tables
that the NCCL model reads (netsim.sim.nccl); a topology without `gpu` has no NCCL model.
`nic.transport` (infiniband, the default; roce, efa, efa-unordered, tcpx, tcpxo, socket) is
what carries the traffic between nodes: its per-message cost and the protocols NCCL runs
over it are netsim.cluster.transports'.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers

from netsim.errors import InputError

from . import transports

PLACEMENTS = ("block", "round-robin")
# the generations NCCL's tables know, then AMD Instinct's (RCCL's tables): cdna3 is gfx942
# (MI300X, MI325X), cdna4 gfx950 (MI355X)
GPUS = ("volta", "ampere", "hopper", "blackwell", "cdna3", "cdna4")
AMD_GPUS = ("cdna3", "cdna4")
# third-generation NVSwitch and later reduce and multicast (NVLink SHARP, NCCL's NVLS): HGX
# H100/H200 and HGX B200 datasheets; an all-to-all node of these generations has it unless
# its topology says `multicast = false`
MULTICAST_GPUS = ("hopper", "blackwell")
CPUS = ("intel", "amd", "arm")
# what carries NCCL's traffic between nodes (netsim.cluster.transports: per-message cost and
# the protocols NCCL runs over each)
TRANSPORTS = tuple(transports.TRANSPORTS)
# the most GPUs in a topology: 131,072, the largest netsim is measured to simulate (seconds
# and a GiB, bench/simulate_speed.py); 10^8 would take all memory in building the links
MAX_GPUS = 2**17


class TopologyError(InputError):
    """A bad topology description or request: one line, naming the key at fault."""


# ---------------------------------------------------------------- validation


def _show(value) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def bad(path: str, problem: str, value) -> TopologyError:
    return TopologyError(f"{path} {problem}, got {_show(value)}")


def _number(problem: str, ok, least: float = 0.0):
    """A checker of a finite number that passes `ok`, at most MAX_NUMBER, and 0 or at least
    `least`: a rate (or what scales one) is divided by, and a tiny one overflows a time."""

    def check(path, value):
        # bool is an int to Python; in a topology True is a typo, never a number
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not isinstance(value, numbers.Integral)
            and not math.isfinite(value)
        ):
            raise bad(path, "must be a finite number", value)
        if not ok(value):
            raise bad(path, problem, value)
        if value > MAX_NUMBER:
            raise bad(path, f"must be at most {MAX_NUMBER:g}", value)
        if 0 < value < least:
            raise bad(path, f"must be at least {least:g}", value)
        return int(value) if isinstance(value, numbers.Integral) else float(value)

    return check


MAX_NUMBER = 1e12  # Gbit/s: 10^21 bit/s; us: 11 days
_positive = _number("must be positive", lambda v: v > 0, least=1e-9)  # a rate: 1 bit/s
_non_negative = _number("must be >= 0", lambda v: v >= 0)
_oversubscription = _number("must be >= 1", lambda v: v >= 1)
_fraction = _number("must be in (0, 1]", lambda v: 0 < v <= 1, least=1e-9)


def _flag(path, value) -> bool:
    if not isinstance(value, bool):
        raise bad(path, "must be true or false", value)
    return value


def _count(path, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise bad(path, "must be a positive integer", value)
    return int(value)


def _text(path, value) -> str:
    if not isinstance(value, str):
        raise bad(path, "must be a string", value)
    return value


def _one_of(choices):
    def check(path, value) -> str:
        if value not in choices:
            raise bad(path, f"must be one of {', '.join(choices)}", value)
        return value

    return check


_placement = _one_of(PLACEMENTS)


def _dims(path, value) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value:
        raise bad(path, "must be a non-empty list of positive integers", value)
    return [_count(f"{path}[{i}]", d) for i, d in enumerate(value)]


# table -> (keys of every kind, {kind: keys of that kind only}); key -> checker
_TABLES = {
    "intra_node": (
        {"bandwidth_gbit_per_s": _positive, "latency_us": _non_negative},
        {
            "all-to-all": {},
            "pcie-tree": {"gpus_per_switch": _count, "uplink_bandwidth_gbit_per_s": _positive},
        },
    ),
    "nic": (
        {"count": _count, "bandwidth_gbit_per_s": _positive, "latency_us": _non_negative},
        None,
    ),
    "network": (
        {"latency_us": _non_negative},
        {
            "switch": {},
            "rails": {},
            "fat-tree": {"nodes_per_leaf": _count, "oversubscription": _oversubscription},
            "ring": {},
            "torus": {"dims": _dims},
        },
    ),
    "compute": ({}, None),  # optional table, all its keys optional (_OPTIONAL)
}
_TOP = {"name": _text, "nodes": _count, "gpus_per_node": _count, "placement": _placement}
_TOP_OPTIONAL = {"gpu": _one_of(GPUS), "cpu": _one_of(CPUS)}
# table -> (optional keys of every kind, {kind: optional keys of that kind only})
_OPTIONAL = {
    "intra_node": (
        {"efficiency": _fraction},
        {
            "all-to-all": {
                "aggregate_bandwidth_gbit_per_s": _positive,
                "cache_bytes": _count,
                "cache_bandwidth_gbit_per_s": _positive,
                "multicast": _flag,
            }
        },
    ),
    "nic": ({"efficiency": _fraction, "transport": _one_of(TRANSPORTS)}, None),
    "network": ({"in_network_reduction": _flag}, None),
    "compute": (
        {
            "cores": _count,
            "message_overhead_us": _non_negative,
            "reduce_gbyte_per_s": _positive,
            "shared_memory": _flag,
        },
        None,
    ),
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
        raise bad(name, "must be a table", data)
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
        raise bad(f"{name}.kind", f"must be one of {', '.join(kinds)}", kind)
    out = {"kind": kind} if kinds else {}
    out.update(_check_keys(data, common, name + "."))
    out.update(_check_keys(data, own or {}, name + ".", f" (needed by {name}.kind = {kind!r})"))
    return {
        **out,
        **{key: check(f"{name}.{key}", data[key]) for key, check in may.items() if key in data},
    }


def check(data) -> dict:
    if not isinstance(data, dict):
        raise bad("the topology", "must be a table", data)
    for key in data:
        if key not in _TOP and key not in _TOP_OPTIONAL and key not in _TABLES:
            raise _unknown("", key, set(_TOP) | set(_TOP_OPTIONAL) | set(_TABLES))
    spec = _check_keys(data, _TOP)
    spec.update({k: check(k, data[k]) for k, check in _TOP_OPTIONAL.items() if k in data})
    nodes, gpn = spec["nodes"], spec["gpus_per_node"]
    if nodes * gpn > MAX_GPUS:
        raise TopologyError(
            f"nodes x gpus_per_node must be at most {MAX_GPUS:,} GPUs (the most netsim is "
            f"measured to simulate), got {nodes:,} x {gpn:,}"
        )
    for name in _TABLES:
        if name in data:
            spec[name] = _check_table(name, data[name])
        elif name == "intra_node" or name in ("nic", "network") and nodes > 1:
            needed = "" if name == "intra_node" else " (needed when nodes > 1)"
            raise TopologyError(f"{name} is missing{needed}")
    intra, nic, net = spec["intra_node"], spec.get("nic"), spec.get("network", {})
    if intra["kind"] == "pcie-tree" and gpn % intra["gpus_per_switch"]:
        raise bad(
            "intra_node.gpus_per_switch",
            f"must divide gpus_per_node = {gpn}",
            intra["gpus_per_switch"],
        )
    # the cache is a second capacity of the fabric: it needs the fabric, and both halves
    cache = [k for k in ("cache_bytes", "cache_bandwidth_gbit_per_s") if k in intra]
    for key in ("cache_bytes", "cache_bandwidth_gbit_per_s", "aggregate_bandwidth_gbit_per_s"):
        if cache and key not in intra:
            raise TopologyError(f"intra_node.{key} is missing (needed by intra_node.{cache[0]})")
    if "multicast" not in intra and intra["kind"] == "all-to-all":
        if spec.get("gpu") in MULTICAST_GPUS:
            intra["multicast"] = True
    if nic and nic["count"] > gpn:
        raise bad("nic.count", f"must be <= gpus_per_node = {gpn}", nic["count"])
    if net.get("kind") == "fat-tree" and nodes % net["nodes_per_leaf"]:
        raise bad("network.nodes_per_leaf", f"must divide nodes = {nodes}", net["nodes_per_leaf"])
    if net.get("kind") == "torus" and math.prod(net["dims"]) != nodes:
        raise bad("network.dims", f"must multiply to nodes = {nodes}", net["dims"])
    return spec


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
    lines = [
        f"{_toml_key(k)} = {_toml_value(v)}" for k, v in topology_dict.items() if k not in tables
    ]
    for name, table in tables.items():
        lines += ["", f"[{_toml_key(name)}]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
