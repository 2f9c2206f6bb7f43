"""Rank program: every schedule's all-reduce of a "device" buffer staged through a host
mirror (allreduce_train.staging) against the same all-reduce on the host buffer itself.

    staged_allreduce.py OUT NELEMS

NumPy stands in for the device. The copier is lazy: a piece reaches the host only when its
mark is waited for, as an asynchronous copy may land at the last moment, so a round that
ran before its wait would sum stale host data. Rank r writes OUT.<r>: per algorithm and
channel count, whether the staged sum equals the plain one to the bit, the elements copied
each way, (the test's teeth) whether the sum is wrong when the executor does not wait, and
the step records of both, recorded: the network bytes and the copies' bytes and times. And
the same all-reduce on the "device" buffer itself (staging.DirectAllreduce, CUDA-aware
MPI's path): its sum, and how often it synchronised the stream.
"""

import contextlib
import functools
import json
import os
import sys
import time

import numpy as np

from allreduce_train.comm import MpiTransport, World, install_abort_hook
from allreduce_train.exchange import staging
from allreduce_train.exchange.schedule import make_allreduce
from netsim import algorithms
from netsim.record import stepfile
from netsim.record.recorder import Recorder


class LazyCopier:
    def __init__(self):
        self.pending, self.done = {}, set()
        self.to_host_elems = self.to_device_elems = 0

    def begin(self, device, host):
        self.device, self.host, self.queue, self.pending, self.done = device, host, [], {}, set()
        host[...] = np.nan  # what an unwritten pinned buffer may hold
        self.clock = [time.perf_counter_ns()] * 4

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
        self.clock[1] = time.perf_counter_ns()

    def to_device(self):
        self.clock[2] = time.perf_counter_ns()
        self.device[...] = self.host
        self.to_device_elems += self.host.size
        self.clock[3] = time.perf_counter_ns()

    def times_ns(self):
        return self.clock[1] - self.clock[0], self.clock[3] - self.clock[2]


def recorded(allreduce, buf, name):
    """The step record of one all-reduce of buf, recorded as training records it."""
    path = f"{out}.{rank}.{name}.bin"
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    recorder = Recorder(path, rank, 1, 1)
    allreduce.record_into(recorder)
    t0 = recorder.clock()
    allreduce(buf)
    t1 = recorder.clock()
    recorder.commit(0, 0.0, t0, t0, t1, t1)
    recorder.close()
    (record,) = stepfile.read(path)
    keys = ("bytes_sent", "bytes_recv", "messages", "d2h_bytes", "h2d_bytes", "d2h_s", "h2d_s")
    return {k: record[k] for k in keys}


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
        plain_record = recorded(make(), plain, "plain")
        device, host, copier = grad.copy(), np.empty(n, np.float32), LazyCopier()
        staged = staging.StagedAllreduce(make(), copier, device, host)
        staged_record = recorded(staged, host, "staged")
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
        syncs = []
        direct_buf = grad.copy()
        direct = staging.DirectAllreduce(make(), functools.partial(syncs.append, 1))
        direct(direct_buf)
        report[f"{name} x{channels}"] = {
            "direct_same": bool(np.array_equal(direct_buf, plain)),
            "direct_syncs": len(syncs),
            "rounds": len(make().schedule.rounds) if name != "mpi" else 0,
            "same": same,
            "moved": moved,
            "wrong_unwaited": wrong,
            "records": [plain_record, staged_record],
        }
with open(f"{out}.{rank}", "w") as f:
    json.dump(report, f)
