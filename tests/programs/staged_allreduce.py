"""Rank program: every schedule's all-reduce of a "device" buffer staged through a host
mirror (allreduce_train.staging) against the same all-reduce on the host buffer itself.

    staged_allreduce.py OUT NELEMS

NumPy stands in for the device. The copier is lazy: a piece reaches the host only when its
mark is waited for, as an asynchronous copy may land at the last moment, so a round that
ran before its wait would sum stale host data. Rank r writes OUT.<r>: per algorithm and
channel count, whether the staged sum equals the plain one to the bit, the elements copied
each way, and (the test's teeth) whether the sum is wrong when the executor does not wait.
"""

import json
import sys

import numpy as np

from allreduce_train import staging
from allreduce_train.collectives import make_allreduce
from allreduce_train.comm import MpiTransport, World, install_abort_hook
from netsim import algorithms


class LazyCopier:
    def __init__(self):
        self.pending, self.done = {}, set()
        self.to_host_elems = self.to_device_elems = 0

    def begin(self, device, host):
        self.device, self.host, self.queue, self.pending, self.done = device, host, [], {}, set()
        host[...] = np.nan  # what an unwritten pinned buffer may hold

    def to_host(self, lo, hi):
        self.queue.append((lo, hi))

    def mark(self, k):
        self.pending[k], self.queue = self.queue, []

    def wait(self, k):
        for j in sorted(self.pending):  # a stream completes in order: every mark up to k
            if j <= k and j not in self.done:
                for lo, hi in self.pending[j]:
                    self.host[lo:hi] = self.device[lo:hi]
                    self.to_host_elems += hi - lo
                self.done.add(j)

    def to_device(self):
        self.device[...] = self.host
        self.to_device_elems += self.host.size


out, n = sys.argv[1], int(sys.argv[2])
install_abort_hook()
world = World.create()
transport = MpiTransport(world)
p, rank = world.world_size, world.rank
grad = np.random.default_rng(rank).standard_normal(n).astype(np.float32)
report = {}
for name in ["ring", "halving-doubling", "recursive-doubling", "tree", "parameter-server", "mpi"]:
    for channels in (1, 2) if name != "mpi" else (1,):

        def make(name=name, channels=channels):
            return make_allreduce(
                algorithms.get(name), p, rank, n, transport, np, np.float32, channels=channels
            )

        plain = grad.copy()
        make()(plain)
        device, host, copier = grad.copy(), np.empty(n, np.float32), LazyCopier()
        staged = staging.StagedAllreduce(make(), copier, device, host)
        staged(host)
        same = bool(np.array_equal(device, plain))
        moved = (copier.to_host_elems, copier.to_device_elems)
        careless = make()
        wrong = None
        if hasattr(careless, "stage") and p > 1:
            device2, host2 = grad.copy(), np.empty(n, np.float32)
            unwaited = staging.StagedAllreduce(careless, LazyCopier(), device2, host2)
            careless.stage(lambda k: None)  # the executor no longer waits for its pieces
            unwaited(host2)
            wrong = not np.array_equal(device2, plain)
        report[f"{name} x{channels}"] = {"same": same, "moved": moved, "wrong_unwaited": wrong}
with open(f"{out}.{rank}", "w") as f:
    json.dump(report, f)
