"""Gradient compression's collectives as pure data (netsim.algorithms.compression): the
methods parsed, each method's collectives for a bucket, the ring all-gather's schedule and
count, and bytes per rank and per link equal to the schedules' counts for every algorithm."""

import numpy as np
import pytest

from netsim import algorithms
from netsim.algorithms import compression as c
from netsim.errors import InputError

from cases import NAMES, lengths

# The default model, 64-128-128-10, as DDP sees its tensors (a weight (out, in)), in the
# order of the flat gradient: W0, b0, W1, b1, W2, b2
DEFAULT = [(8192, (128, 64)), (128, (128,)), (16384, (128, 128)), (128, (128,)),
           (1280, (10, 128)), (10, (10,))]  # fmt: skip


def test_parse_takes_each_method_and_refuses_the_rest_in_one_line():
    assert c.parse("none") == c.Compression()
    assert c.parse("FP16") == c.Compression("fp16")
    assert c.parse("bf16") == c.Compression("bf16")
    assert c.parse("topk:0.01") == c.Compression("topk", 0.01)
    assert str(c.parse("topk:1")) == "topk:1.0"
    assert c.parse("powersgd:4") == c.Compression("powersgd", 4)
    for bad in ("fp8", "topk", "topk:0", "topk:1.5", "topk:nan", "topk:x", "powersgd",
                "powersgd:0", "powersgd:2.5", "powersgd:2000", "fp16:2", ""):  # fmt: skip
        with pytest.raises(InputError, match="compression wants none, fp16") as err:
            c.parse(bad)
        assert "\n" not in str(err.value)


def test_topk_count_is_the_ceiling_of_the_ratio_as_written():
    assert c.topk_count(0.1, 30) == 3  # 0.1 x 30 in floating point is 3.0000000000000004
    assert c.topk_count(0.01, 26122) == 262
    assert c.topk_count(0.001, 10) == 1  # at least one
    assert c.topk_count(1.0, 7) == 7
    assert c.topk_count(0.5, 0) == 0


def test_powersgd_compresses_where_the_hook_does():
    """torch's _should_compress with min_compression_rate 2: (n + m) r x 2 < n m; the rank
    is min(n, m, r); vectors are (n, 1)."""
    assert c.low_rank(DEFAULT, 4) == [4, None, 4, None, 4, None]
    # 10 x 128 at rank 8: (138) x 8 x 2 = 2208 >= 1280, left as it is
    assert c.low_rank(DEFAULT, 8) == [8, None, 8, None, None, None]
    assert c.low_rank([(6, (3, 2))], 4) == [None]  # r = 2: (5) x 2 x 2 >= 6


def test_each_methods_collectives_on_the_default_model():
    n = sum(count for count, _ in DEFAULT)
    assert n == 26122
    none = c.collectives(c.Compression(), DEFAULT, 4, np.float32)
    assert [(x.kind, x.nelems, x.nbytes) for x in none] == [("all-reduce", n, 4 * n)]
    fp16 = c.collectives(c.parse("fp16"), DEFAULT, 4, np.float32)
    assert [(x.dtype, x.nbytes) for x in fp16] == [("float16", 2 * n)]
    bf16 = c.collectives(c.parse("bf16"), DEFAULT, 4, np.float64)
    assert [(x.dtype, x.nbytes) for x in bf16] == [("bfloat16", 2 * n)]
    topk = c.collectives(c.parse("topk:0.01"), DEFAULT, 4, np.float32)
    assert [(x.kind, x.dtype, x.nbytes) for x in topk] == [("all-gather", "uint8", 4 * 262 * 8)]
    power = c.collectives(c.parse("powersgd:4"), DEFAULT, 4, np.float32)
    assert [(x.what, x.nelems) for x in power] == [
        ("uncompressed", 128 + 128 + 10),
        ("P", (128 + 128 + 10) * 4),  # rows: each weight's outputs
        ("Q", (64 + 128 + 128) * 4),  # cols: its inputs
    ]
    # nothing uncompressed: no collective of it
    only = c.collectives(c.parse("powersgd:1"), [(8192, (128, 64))], 2, np.float32)
    assert [x.what for x in only] == ["P", "Q"]


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 8])
def test_the_ring_all_gather_gives_every_rank_every_block_by_copies(p):
    for n in lengths(p):
        sched = c.all_gather_schedule(p, n)
        assert len(sched.rounds) == max(p - 1, 0)
        assert not any(r.any_adds for r in sched.rounds)
        bounds = algorithms.chunk_bounds(n, p)
        own = [np.full(n, np.nan) for _ in range(p)]
        for r in range(p):
            own[r][bounds[r] : bounds[r + 1]] = np.arange(bounds[r], bounds[r + 1])
        for out in algorithms.execute(sched, own):
            np.testing.assert_array_equal(out, np.arange(n))
        np.testing.assert_array_equal(sched.elements_sent(), c.all_gather_elements_sent(p, n))
        if p > 1 and n % p == 0:  # equal blocks: (p - 1) n / p each
            assert (c.all_gather_elements_sent(p, n) == (p - 1) * n // p).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("p", [1, 2, 3, 4])
@pytest.mark.parametrize("method", ["none", "fp16", "bf16", "topk:0.05", "powersgd:2"])
def test_bytes_per_rank_and_per_link_are_the_schedules_counts(name, p, method):
    """bytes_sent (each algorithm's own count) equals the schedules' messages, per rank, and
    link_bytes (from the schedules) adds up to it, for every algorithm."""
    tensors = [(12 * 7, (12, 7)), (12, (12,)), (7 * 3, (7, 3)), (7, (7,))]
    algorithm = algorithms.get(name)
    context = {"node_of_rank": [r // 2 for r in range(p)] if p % 2 == 0 else None}
    plan = c.collectives(c.parse(method), tensors, p, np.float32)
    sent = c.bytes_sent(plan, algorithm, p, **context)
    from_schedules = sum(
        s.elements_sent() * x.itemsize
        for s, x in zip(c.schedules(plan, algorithm, p, **context), plan)
    )
    np.testing.assert_array_equal(sent, from_schedules)
    links = c.link_bytes(plan, algorithm, p, **context)
    per_rank = np.zeros(p, dtype=np.int64)
    for (src, _), nbytes in links.items():
        per_rank[src] += nbytes
    np.testing.assert_array_equal(per_rank, sent)


def test_the_ring_all_gather_sends_to_the_next_rank_only():
    plan = c.collectives(c.parse("topk:0.01"), DEFAULT, 4, np.float32)
    links = c.link_bytes(plan, algorithms.get("tree"), 4)  # the all-gather is the ring's
    block = 262 * 8
    assert links == {(r, (r + 1) % 4): 3 * block for r in range(4)}
