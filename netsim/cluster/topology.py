"""Clusters of GPUs as directed links: described in TOML, validated once, routed in bulk.

A topology is `nodes` nodes of `gpus_per_node` GPUs joined by directed links, each with a
bandwidth and a latency. How the links are named, laid out and routed, and what latency
each one carries, is cluster.links; the TOML format and its validation are cluster.topofile.
"""

from __future__ import annotations

import functools
import numbers
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import topofile
from .links import Layout, Routes
from .topofile import PLACEMENTS, TopologyError, to_toml  # noqa: F401 (part of this module's API)

PRESETS_DIR = Path(__file__).with_name("presets")


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
        return (
            f"Topology({self.name!r}: {self.nodes} nodes x {self.gpus_per_node} GPUs, "
            f"{len(self.link_names)} links)"
        )

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @functools.cached_property
    def _layout(self) -> Layout:
        return Layout.of(self.spec)

    def gpu_of_rank(self, world_size: int) -> np.ndarray:
        """block: rank r on GPU r (fills node 0 first); round-robin: rank r on node
        r % nodes (as `mpirun --map-by node`), so a small job spreads over many nodes."""
        if (
            isinstance(world_size, bool)
            or not isinstance(world_size, numbers.Integral)
            or not 1 <= world_size <= self.gpus
        ):
            raise topofile.bad(
                "world_size",
                f"must be an integer from 1 to the {self.gpus} GPUs of {self.name!r}",
                world_size,
            )
        rank = np.arange(world_size, dtype=np.int64)
        if self.placement == "block":
            return rank
        return rank % self.nodes * self.gpus_per_node + rank // self.nodes

    def node_of_rank(self, world_size: int) -> np.ndarray:
        return self.gpu_of_rank(world_size) // self.gpus_per_node

    def _flows(self, src_gpu, dst_gpu) -> tuple[np.ndarray, np.ndarray]:
        src, dst = np.broadcast_arrays(np.atleast_1d(src_gpu), np.atleast_1d(dst_gpu))
        if src.ndim != 1:
            raise topofile.bad("src_gpu/dst_gpu", "must be one-dimensional", src.shape)
        if src.size == 0:
            return src.astype(np.int64), dst.astype(np.int64)
        for what, gpu in (("src_gpu", src), ("dst_gpu", dst)):
            if gpu.dtype.kind not in "iu":
                raise topofile.bad(what, "must be integer GPU ids", gpu.dtype)
            if gpu.min() < 0 or gpu.max() >= self.gpus:
                raise topofile.bad(
                    what, f"must be GPU ids in [0, {self.gpus})", (int(gpu.min()), int(gpu.max()))
                )
        return src.astype(np.int64, copy=False), dst.astype(np.int64, copy=False)

    def routes(self, src_gpu: np.ndarray, dst_gpu: np.ndarray) -> Routes:
        """Vectorised routing of many flows at once, CSR form: the links of flow i are
        links[indptr[i]:indptr[i+1]] (indptr has len(src)+1 entries). src == dst gives an
        empty route. Returns (indptr, links), also as .indptr and .links."""
        return self._layout.route(*self._flows(src_gpu, dst_gpu))

    def _per_flow(
        self, src_gpu, dst_gpu, values: np.ndarray, reduce: np.ufunc, empty: float
    ) -> np.ndarray:
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

    @property
    def shared_memory(self) -> bool:
        """[compute] shared_memory: transfers inside a node are reads of the peer's buffer
        (netsim.sim.shared_memory says what that costs beyond messages)."""
        return bool(self.spec.get("compute", {}).get("shared_memory", False))

    def core_sharing(self, world_size: int) -> int:
        """How many ranks share a core on the busiest node (core_sharing_by_node's most)."""
        return int(self.core_sharing_by_node(world_size).max())

    def core_sharing_by_node(self, world_size: int) -> np.ndarray:
        """Per node, how many ranks share a core: ceil(ranks there / [compute] cores), 1
        when the topology does not say how many cores there are."""
        ranks = np.bincount(self.node_of_rank(world_size))
        cores = self.spec.get("compute", {}).get("cores")
        return np.maximum(-(-ranks // cores), 1) if cores else np.ones_like(ranks)


# ---------------------------------------------------------------- reading and writing


def parse(data: dict, source: str = "<dict>") -> Topology:
    """Validate a topology description (the TOML format as a dict) and build its links."""
    try:
        spec = topofile.check(data)
    except TopologyError as err:
        raise TopologyError(f"{source}: {err}") from None
    layout = Layout.of(spec)
    bandwidth, latency = layout.properties(spec)
    return Topology(
        spec["name"],
        spec["nodes"],
        spec["gpus_per_node"],
        spec["placement"],
        tuple(layout.names()),
        bandwidth,
        latency,
        spec,
    )


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def resolve(path_or_preset: str) -> Path:
    """The file a topology's name stands for: a .toml file, or a preset's (see presets())."""
    path = Path(path_or_preset)
    if not path.is_file() and path.suffix != ".toml":
        if str(path_or_preset) not in presets():
            raise TopologyError(
                f"{path_or_preset!r} is neither a .toml file nor a preset ({', '.join(presets())})"
            )
        path = PRESETS_DIR / f"{path_or_preset}.toml"
    return path


def load(path_or_preset: str) -> Topology:
    """A .toml file, or the name of a preset (see presets())."""
    path = resolve(path_or_preset)
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
    intra = {
        "kind": "all-to-all",
        "bandwidth_gbit_per_s": bandwidth_bytes_per_s * 8 / 1e9,
        "latency_us": latency_s * 1e6,
    }
    topo = parse(
        {
            "name": f"{gpus} GPUs on one switch",
            "nodes": 1,
            "gpus_per_node": gpus,
            "placement": "block",
            "intra_node": intra,
        },
        "single_switch()",
    )
    return replace(
        topo,
        bandwidth_bytes_per_s=np.full(2 * gpus, float(bandwidth_bytes_per_s)),
        latency_s=np.repeat([float(latency_s), 0.0], gpus),
    )
