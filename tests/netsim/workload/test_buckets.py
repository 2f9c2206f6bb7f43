"""The bucket plan is PyTorch DDP's (reducer.cpp, compute_bucket_assignment_by_size): a tensor
joins the open bucket, which closes once it reaches its limit; the first limit is 1 MiB,
the rest bucket_cap_mb. Hand-made layer lists, sizes in bytes."""

import pytest

from netsim.workload import buckets

MIB = 1 << 20


def sizes_of(plan, sizes):
    return [sum(sizes[i] for i in bucket) for bucket in plan]


def test_the_first_bucket_closes_at_one_mib_and_the_rest_at_the_cap():
    sizes = [MIB // 2] * 2 + [10 * MIB] * 6
    plan = buckets.plan(sizes, cap_bytes=25 * MIB)
    assert plan == [[0, 1], [2, 3, 4], [5, 6, 7]]
    assert sizes_of(plan, sizes) == [MIB, 30 * MIB, 30 * MIB]  # >= the limit closes it


def test_a_bucket_overshoots_by_its_last_tensor_and_stays_under_until_it_reaches_the_cap():
    sizes = [4 * MIB] * 12
    plan = buckets.plan(sizes, cap_bytes=25 * MIB)
    assert sizes_of(plan, sizes) == [4 * MIB, 28 * MIB, 16 * MIB]


def test_a_tensor_larger_than_the_cap_closes_the_bucket_it_joins_alone_when_it_is_empty():
    sizes = [2 * MIB, 100 * MIB, 1 * MIB, 3 * MIB, 100 * MIB, 1]
    plan = buckets.plan(sizes, cap_bytes=25 * MIB)
    # 2 MiB fills the first bucket; 100 MiB alone; 1 + 3 + 100 MiB close together: DDP adds
    # first and compares after, so a large tensor does not start a bucket of its own
    assert plan == [[0], [1], [2, 3, 4], [5]]


def test_everything_under_the_cap_is_one_bucket_without_a_first_cap():
    sizes = [1000] * 50
    assert buckets.plan(sizes, cap_bytes=25 * MIB, first_cap_bytes=None) == [list(range(50))]
    assert buckets.plan(sizes, cap_bytes=1 << 40) == [list(range(50))]  # the first cap: 1 MiB


def test_every_tensor_once_in_order():
    sizes = [(i * 7919) % 3_000_001 for i in range(500)]
    plan = buckets.plan(sizes, cap_bytes=5 * MIB)
    assert [i for b in plan for i in b] == list(range(500))
    assert all(sum(sizes[i] for i in b[:-1]) < 5 * MIB for b in plan[1:])


def test_gradients_are_ready_last_layer_first_and_in_reverse_within_a_layer():
    assert buckets.ready_order([[6, 2], [3], [4, 1]]) == [(2, 1), (2, 0), (1, 0), (0, 1), (0, 0)]


@pytest.mark.parametrize("caps", [(0, MIB), (MIB, 0), (-1, None)])
def test_caps_must_be_positive(caps):
    with pytest.raises(ValueError):
        buckets.plan([1, 2], *caps)


def test_the_mlps_segments_are_its_flat_buffers_weights_and_biases_in_order():
    """Training's MLP holds layer l's W (widths[l] x widths[l+1]) then its b in one flat
    buffer (allreduce_train.maths.model); a run directory's workload has the same tensors in
    the same order, so the plan over them is the plan training makes of its buffer."""
    from allreduce_train.maths.model import layer_segments

    widths = (784, 1024, 1024, 10)
    segments = layer_segments(widths)
    layers = [(a * b, b) for a, b in zip(widths, widths[1:])]
    assert [(start, count) for start, count in segments] == [
        (sum(map(sum, layers[:i])), sum(layers[i])) for i in range(len(layers))
    ]
    order = buckets.ready_order(layers)
    sizes = [layers[i][k] * 4 for i, k in order]
    plan = buckets.plan(sizes, cap_bytes=2 * MIB)
    # b2, W2 (40 KiB) and b1 reach no MiB; W1 (4 MiB) closes the first bucket; then b0 and
    # W0 (3 MiB) the second
    assert [[order[i] for i in b] for b in plan] == [
        [(2, 1), (2, 0), (1, 1), (1, 0)],
        [(0, 1), (0, 0)],
    ]
