"""NCCL's own constants, as its tuning model uses them: copied, not fitted.

Source: NVIDIA/nccl src/graph/tuning.cc (ncclTunerConstantsDefaults, nvlsEfficiency,
treeCorrectionFactor, ncclTopoTuneModel), src/graph/topo.h (the *_NVLINK_BW figures) and
src/graph/search.cc (the per-channel speed steps), at v2.30.7 (commit 5067397). The same
values stand in v2.26.2 and v2.29.7; v2.21.5 differs in the tree's Simple latencies (base
0, 28 us a hop) and NVLSTree's network hop (14 us). Rows are indexed by GPU generation
(GEN: volta, ampere, hopper, blackwell); protocols are (LL, LL128, Simple); latencies are
in microseconds, bandwidths in GB/s (1e9 bytes/s).
"""

from __future__ import annotations

GEN = {"volta": 0, "ampere": 1, "hopper": 2, "blackwell": 3}
PROTOCOLS = ("LL", "LL128", "Simple")
LL, LL128, SIMPLE = range(3)

# tuning.cc baseLatencies: per algorithm, the fixed cost of a collective
BASE_US = {
    "tree": (6.8, 14.0, 8.4),
    "ring": (6.6, 14.0, 8.4),
    "collnet": (0.0, 0.0, 0.0),
    "nvls": (0.0, 0.0, 0.0),
    "nvls-tree": (0.0, 0.0, 0.0),
}

# tuning.cc hwLatencies: per hop, by what the hop crosses (NVLINK, PCI, NET)
HW_US = {
    "nvlink": {
        "tree": (0.6, 1.25, 4.0),
        "ring": (0.6, 1.9, 3.4),
        "collnet": (0.0, 0.0, 3.7),
        "nvls": (0.0, 0.0, 25.0),
        "nvls-tree": (0.0, 0.0, 25.0),
    },
    "pci": {
        "tree": (1.0, 1.9, 4.0),
        "ring": (1.0, 2.5, 5.7),
        "collnet": (0.0, 0.0, 3.7),
        "nvls": (0.0, 0.0, 0.0),
        "nvls-tree": (0.0, 0.0, 0.0),
    },
    "net": {
        "tree": (5.0, 8.5, 14.0),
        "ring": (2.7, 4.0, 14.0),
        "collnet": (0.0, 0.0, 31.0),
        "nvls": (0.0, 0.0, 18.0),
        "nvls-tree": (0.0, 0.0, 20.9),
    },
}

# tuning.cc llMaxBws: the LL protocol's ceiling. One node: by GPU generation, column 0;
# more nodes: by CPU vendor (row 0 Intel, row 1 AMD), column 1 for two nodes, 2 for more.
LL_MAX_BW = (
    (39.0, 39.0, 20.4),
    (87.7, 22.5, 19.0),
    (141.0, 45.0, 35.0),
    (2 * 141.0, 2 * 45.0, 2 * 35.0),
)
# tuning.cc per-channel ceilings by generation, columns as LL_MAX_BW's (1, 2, more nodes)
PER_CHANNEL_RING_LL128 = ((20.0,) * 3, (20.0,) * 3, (36.7,) * 3, (40.0,) * 3)
PER_CHANNEL_TREE_LL128 = ((20.0,) * 3, (20.0,) * 3, (36.7, 36.7, 29.0), (55.6, 31.67, 20.0))
PER_CHANNEL_TREE = ((26.5, 18.5, 10.0), (24.0, 23.6, 17.8), (38.7, 41.4, 36.0), (70.0, 42.8, 24.0))
PER_CHANNEL_NVLS_TREE = (
    (26.5, 18.5, 10.0),
    (24.0, 23.6, 17.8),
    (0.0, 57.7, 45.5),
    (0.0, 96.0, 80.0),
)
NVLS_EFFICIENCY = (0.0, 0.0, 0.85, 0.74)

# tuning.cc treeCorrectionFactor[protocol][log2(bytes / 64)] for 0 <= index < 23
TREE_CORRECTION = (
    (1.0, 1.0, 1.0, 1.0, 0.9, 0.8, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5)
    + (0.4, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0),
    (1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.8, 0.8, 0.8, 0.7, 0.6, 0.6)
    + (0.6, 0.6, 0.6, 0.6, 0.8, 0.9, 0.9, 0.9, 0.9, 1.0, 1.0, 1.0),
    (0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.7, 0.6, 0.6, 0.5)
    + (0.5, 0.5, 0.5, 0.6, 0.7, 0.8, 0.7, 0.7, 0.8, 0.9, 0.9, 0.9),
)

# topo.h SM70/SM80/SM90/SM100_NVLINK_BW: what NCCL counts one NVLink at, of its 25 GB/s
# (50 GB/s for NVLink 5) each way: the presets' intra_node.efficiency is this over the rate
NVLINK_BW = (20.0, 20.0, 20.6, 40.1)

# search.cc speedArrayIntra/Inter (sm90..., sm100...): the per-channel bandwidths the graph
# search tries, highest first; a channel runs at the first that fits the path
SPEEDS_INTRA = (
    (40.0, 30.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0),
    (40.0, 30.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0),
    (60.0, 50.0, 40.0, 30.0, 24.0, 20.0, 15.0, 12.0, 11.0, 6.0, 3.0),
    (90.0, 80.0, 70.0, 60.0, 50.0, 45.0, 40.0, 30.0, 24.0, 20.0, 19.0, 18.0),
)
_INTER = (48.0, 30.0, 28.0, 24.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0)
_LOW = (2.4, 1.2, 0.24, 0.12)
SPEEDS_INTER = (
    _INTER + _LOW,
    _INTER + _LOW,
    (48.0, 45.0, 42.0, 40.0, 30.0, 24.0, 22.0, 20.0, 17.5, 15.0, 12.0, 6.0, 3.0) + _LOW,
    (96.0, 86.0, 80.0, 48.0, 45.1, 42.0, 40.0, 30.0, 24.0, 22.0, 20.0, 17.5, 15.0, 12.0)
    + (6.0, 3.0)
    + _LOW,
)

# tuning.cc getNetOverhead: host cost of posting a network operation, by CPU vendor; x3 for
# Simple. Rings between nodes pay it on every step.
NET_OVERHEAD_US = {"intel": 1.0, "amd": 2.0, "arm": 1.0}

# Host cost of launching one kernel: about 4 us (Volkov & Demmel, "Benchmarking GPUs to tune
# dense linear algebra", SC08, as quoted on forums.developer.nvidia.com/t/18347). A thread
# that drives G GPUs (nccl-tests -g G) launches G kernels per collective, back to back.
LAUNCH_US = 4.0

# src/include/device.h NCCL_LL_MAX_NTHREADS 512, NCCL_LL128_MAX_NTHREADS 640,
# NCCL_SIMPLE_MAX_NTHREADS 512 (tuning.cc: maxThreads per protocol), and src/include/comm.h
# NCCL_{LL,LL128,SIMPLE}_THREAD_THRESHOLD 8, 8, 64 (bytes per thread before NCCL adds a
# channel; ring LL's is x nRanks, tuning.cc). enqueue.cc topoGetAlgoInfo takes a channel
# away while nBytes < nc x nt x threshold, down to one, then halves the threads.
MAX_THREADS = (512, 640, 512)
THREAD_THRESHOLD = (8, 8, 64)

# src/include/device.h MAXCHANNELS: the most channels a communicator has
MAX_CHANNELS = 64
