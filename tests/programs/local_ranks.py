"""Rank program: each rank's local rank (from splitting the communicator by shared memory),
the device it would bind among 2, its backend's description and the UCX_MEM_EVENTS it ran
with, to OUT.<rank> as JSON.

    local_ranks.py OUT
"""

import json
import os
import sys

from allreduce_train.comm import World, install_abort_hook
from allreduce_train.maths import backend

install_abort_hook()
world = World.create()
dev = backend.select("auto", world.local_rank, world.local_size)
with open(f"{sys.argv[1]}.{world.rank}", "w") as f:
    json.dump(
        {
            "local_rank": world.local_rank,
            "local_size": world.local_size,
            "gpu_of_2": backend.gpu_for(world.local_rank, 2),
            "device": dev.description,
            "ucx_mem_events": os.environ.get("UCX_MEM_EVENTS"),
        },
        f,
    )
