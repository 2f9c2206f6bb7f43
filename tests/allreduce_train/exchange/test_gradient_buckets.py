"""The MLP's gradient in buckets (exchange.buckets.plan): DDP's rule over its tensors in the
order backward writes them, each bucket one span of the flat gradient, ready once its lowest
layer is done; and the exchange runs them in launch order, with or without overlap."""

import numpy as np
import pytest

from allreduce_train.exchange import buckets
from allreduce_train.exchange.factory import GradientExchange

MIB = 1 << 20
# widths 4, 3, 2: W0 (12 elements, 48 B) at 0, b0 (3, 12 B) at 12, W1 (6, 24 B) at 15,
# b1 (2, 8 B) at 21; backward writes b1, W1, then b0, W0 (DDP: reverse of registration)
WIDTHS = (4, 3, 2)


def spans(plan):
    return [(b.lo, b.hi, b.layer) for b in plan]


def test_the_first_bucket_closes_at_its_own_cap_the_rest_at_the_cap():
    # first cap 16 B: b1 (8) stays open, W1 takes it to 32 >= 16: closed; cap 32 B: b0 (12)
    # stays open, W0 takes it to 60: closed
    plan = buckets.plan(WIDTHS, 4, 32 / MIB, 16 / MIB)
    assert spans(plan) == [(15, 23, 1), (0, 15, 0)]


def test_a_tensor_larger_than_the_cap_closes_the_bucket_it_joins_alone():
    # every cap 8 B: b1 (8) closes its own; W1 (24) alone; b0 (12) alone; W0 (48) alone
    plan = buckets.plan(WIDTHS, 4, 8 / MIB, 8 / MIB)
    assert spans(plan) == [(21, 23, 1), (15, 21, 1), (12, 15, 0), (0, 12, 0)]


def test_zero_is_one_bucket_and_the_defaults_are_ddps():
    assert spans(buckets.plan(WIDTHS, 4, 0, 1)) == [(0, 23, 0)]
    assert spans(buckets.plan(WIDTHS, 4)) == [(0, 23, 0)]  # 92 B: under DDP's first 1 MiB
    # 784-1024-1024-10 float32: b2, W2, b1 and W1 (4 MiB) pass 1 MiB; b0 and W0 (3.1 MiB) stay
    # open under 25 MiB and end the plan
    big = buckets.plan((784, 1024, 1024, 10), 4)
    assert [(b.layer, b.hi - b.lo) for b in big] == [(1, 10 + 10240 + 1024 + 1024 * 1024),
                                                     (0, 1024 + 784 * 1024)]  # fmt: skip


def test_the_plan_is_netsims_on_the_tensors_in_ready_order():
    """The same buckets as netsim.workload.buckets.plan gives a workload of these tensors."""
    from netsim.workload import buckets as netsim_buckets

    widths, itemsize = (64, 37, 29, 10), 8
    tensors = [[a * b * itemsize, b * itemsize] for a, b in zip(widths, widths[1:])]
    order = netsim_buckets.ready_order(tensors)
    theirs = netsim_buckets.plan([tensors[layer][t] for layer, t in order], 5 * 1024, 1024)
    ours = buckets.plan(widths, itemsize, 5 * 1024 / MIB, 1024 / MIB)
    assert len(ours) == len(theirs) == 3
    for bucket, group in zip(ours, theirs):
        assert bucket.layer == min(order[i][0] for i in group)
        assert (bucket.hi - bucket.lo) * itemsize == sum(
            tensors[order[i][0]][order[i][1]] for i in group
        )


class Adds:
    """An executor that adds 1 to its bucket and notes its order, on the calling thread."""

    def __init__(self, b, log):
        self.b, self.log = b, log

    def record_into(self, recorder):
        if recorder is not None:
            recorder.bind(None)

    def __call__(self, view):
        self.log.append(self.b)
        view += 1


@pytest.mark.parametrize("overlap", [False, True])
def test_every_bucket_runs_once_in_launch_order_as_backward_makes_it_ready(overlap):
    plan = buckets.plan(WIDTHS, 4, 8 / MIB, 8 / MIB)
    grads, log = np.zeros(23, np.float32), []
    views = tuple(grads[b.lo : b.hi] for b in plan)
    exchange = GradientExchange(
        tuple(Adds(b, log) for b in range(len(plan))), views,
        tuple((b.lo, b.hi) for b in plan), grads,
    )  # fmt: skip
    ex = buckets.BucketedExchange(exchange, plan, overlap, lambda: 0)
    for _ in range(3):  # steps
        log.clear()
        for layer in (1, 0):  # backward
            ex.ready(layer)
        ex.wait()
        assert log == [0, 1, 2, 3]
    assert (grads == 3).all()


def test_a_failure_in_the_communication_thread_is_raised_in_the_step():
    plan = buckets.plan(WIDTHS, 4, 8 / MIB, 8 / MIB)
    grads = np.zeros(23, np.float32)

    class Fails(Adds):
        def __call__(self, view):
            raise ConnectionError("rank 1 died")

    executors = tuple(Fails(b, []) if b == 1 else Adds(b, []) for b in range(len(plan)))
    exchange = GradientExchange(
        executors, tuple(grads[b.lo : b.hi] for b in plan), tuple((b.lo, b.hi) for b in plan),
        grads,
    )  # fmt: skip
    ex = buckets.BucketedExchange(exchange, plan, True, lambda: 0)
    ex.ready(1)
    ex.ready(0)
    with pytest.raises(ConnectionError, match="rank 1 died"):
        ex.wait()
