"""RCCL's own constants for AMD Instinct, as its tuning model uses them: copied, not fitted.

Source: ROCm/rccl src/graph/tuning.cc (baseLat, tuning_model_5, the HIP branch of
ncclTopoTuneModel and ncclTopoGetAlgoTime), src/graph/rome_models.cc (the 8-GPU all-to-all
xGMI models, 7 links per GPU, rome_model_79/80/84: "tuning=5"), src/graph/topo.h
(GFX94X_XGMI_WIDTH) and src/include/device.h (NCCL_MAX_NTHREADS 256 under HIP), at commit
0cbce2a7. MI300X and MI325X are gfx942 (cdna3); MI355X is gfx950 (cdna4), which RCCL runs
with the same 8-GPU xGMI models and table. Layout as netsim.sim.nccl_tables: protocols
(LL, LL128, Simple); latencies in us, bandwidths in GB/s.

Where RCCL differs from NCCL's model (netsim.sim.nccl reads both):
- the bus bandwidth is cut by a measured ratio per algorithm and protocol (bwRatio: two
  nodes, more nodes) instead of NCCL's protocol shares and per-channel ceilings;
- a ring between nodes counts 2 x nodes network steps (NCCL: 2 x (nodes - 1));
- LL128 is off on gfx942/gfx950 (enabled by default only on gfx90a with ll128Enabled);
- Tree/Simple is off inside one gfx94 node; no NVLS and no CollNet on these GPUs;
- ranking multiplies bandwidth by jagged per-size correction factors for tree and for rings
  between nodes (tuning_model_5 treeCorrectionFactor / ringCorrectionFactor, 27 sizes);
  netsim uses them to pick as RCCL picks, not for the time it predicts.
"""

from __future__ import annotations

# tuning.cc baseLat (the same table for every tuning model)
BASE_US = {
    "tree": (12.0, 12.0, 17.0),
    "ring": (12.0, 12.0, 17.0),
    "collnet": (12.0, 12.0, 17.0),
    "nvls": (0.0, 0.0, 0.0),
    "nvls-tree": (0.0, 0.0, 0.0),
}

# tuning_model_5 hwLat: NVLINK is RCCL's name for xGMI
HW_US = {
    "nvlink": {"tree": (0.9, 0.0, 2.3), "ring": (0.8, 0.0, 2.1), "collnet": (0.0, 0.0, 0.9)},
    "pci": {"tree": (2.2, 2.2, 5.7), "ring": (2.2, 2.2, 5.7), "collnet": (0.0, 0.0, 5.7)},
    "net": {"tree": (10.5, 0.0, 25.0), "ring": (9.5, 0.0, 320.0), "collnet": (0.0, 0.0, 10.5)},
}

# tuning_model_5 bwRatio: [nodes <= 2, more][algorithm][protocol]
BW_RATIO = (
    {"tree": (0.06, 0.0, 0.11), "ring": (0.08, 0.0, 1.00)},
    {"tree": (0.06, 0.0, 0.59), "ring": (0.08, 0.0, 1.00)},
)

# tuning_model_5 treeCorrectionFactor / ringCorrectionFactor[protocol][log2(bytes / 64)],
# index capped at 26
TREE_CORRECTION = (
    (0.1,) * 6 + (1.0,) * 5 + (0.6, 1.0, 0.9, 1.0, 1.0) + (0.1,) * 11,
    (0.0,) * 27,
    (0.1,) * 15 + (0.7,) + (1.0,) * 10 + (0.8,),
)
RING_CORRECTION = (
    (0.1,) * 11 + (1.0, 0.2, 1.0, 0.4, 0.4, 0.1, 0.2, 0.2) + (0.1,) * 8,
    (0.0,) * 27,
    (0.1,) * 23 + (0.8, 1.0, 1.0, 1.0),
)

# topo.h GFX94X_XGMI_WIDTH: what RCCL counts one xGMI link at, GB/s (of 64 GB/s each way:
# MI300X datasheet, 7 links, "896 GB/s" peer-to-peer both ways); the presets' efficiency
XGMI_BW = 48.0
# search.cc speedArrayIntra/Inter under HIP (one list for both)
SPEEDS = (48.0, 24.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.4, 1.2)

# device.h NCCL_MAX_NTHREADS (256 under HIP), comm.h thread thresholds as NCCL's
MAX_THREADS = (256, 256, 256)
THREAD_THRESHOLD = (8, 8, 64)
