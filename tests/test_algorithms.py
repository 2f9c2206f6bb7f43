"""Every all-reduce schedule, checked as pure data: exact sums against NumPy for awkward rank
counts, lengths, node layouts and segment splits; the byte, message and round counts their
docstrings promise, written here from the algorithms' definitions, not from the code; the
executor's rule for copy rounds; and the executor itself running every schedule for all
ranks at once, in one process, over an in-memory transport."""

import threading
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, strategies as st

from allreduce_train import collectives
from netsim import schedules
from test_schedules import execute_in_memory, lengths

NAMES = list(schedules.ALGORITHMS)


def integer_inputs(p, n, seed=0):
    """Integers in float64: every summation order gives the exact sum."""
    rng = np.random.default_rng([p, n, seed])
    return [rng.integers(-1000, 1000, n).astype(np.float64) for _ in range(p)]


def assert_sums(schedule, inputs):
    expected = np.sum(inputs, axis=0)
    for rank, buf in enumerate(execute_in_memory(schedule, inputs)):
        np.testing.assert_array_equal(buf, expected, err_msg=f"rank {rank}")


def layouts(p):
    """Every equal split of p ranks into nodes: consecutive ranks per node, and round-robin."""
    for per_node in (d for d in range(1, p + 1) if p % d == 0):
        yield [r // per_node for r in range(p)]
        yield [r % (p // per_node) for r in range(p)]


def uneven_segments(n, p):
    """Layer-like segments: one big, one tiny, one empty, and a last one, out of order."""
    cuts = [0, n // 2, (3 * n) // 5, (3 * n) // 5, (19 * n) // 20, n]
    segments = [(a, b - a) for a, b in zip(cuts, cuts[1:])]
    return segments[p % len(segments):] + segments[:p % len(segments)]


def contexts(name, p, n):
    """The context each algorithm is checked under: the default, and the ones it takes."""
    yield {}
    if name == "hierarchical-ring":
        yield from ({"node_of_rank": layout} for layout in layouts(p))
    if name == "parameter-server":
        yield {"segments": uneven_segments(n, p)}


# --- sums ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("p", range(1, 10))
def test_every_algorithm_sums_exactly_for_awkward_lengths(name, p):
    for n in lengths(p):
        for context in contexts(name, p, n):
            assert_sums(schedules.build(name, p, n, **context), integer_inputs(p, n))


@pytest.mark.parametrize("name", NAMES)
def test_every_algorithm_leaves_ranks_bit_identical_in_float32(name):
    """Each piece's sum is formed on one rank and copied: no rank may round differently."""
    for p in (3, 4, 6, 7):
        n = 1001
        rng = np.random.default_rng(p)
        inputs = [rng.standard_normal(n).astype(np.float32) for _ in range(p)]
        for context in contexts(name, p, n):
            out = execute_in_memory(schedules.build(name, p, n, **context), inputs)
            assert len({buf.tobytes() for buf in out}) == 1


@given(name=st.sampled_from(NAMES), p=st.integers(1, 16), n=st.integers(0, 300),
       seed=st.integers(0, 2**32 - 1))
def test_sums_property(name, p, n, seed):
    assert_sums(schedules.build(name, p, n), integer_inputs(p, n, seed))


@given(nodes=st.integers(1, 4), per_node=st.integers(1, 4), n=st.integers(0, 300),
       data=st.data())
def test_hierarchical_ring_sums_for_any_node_layout_property(nodes, per_node, n, data):
    """Nodes given in any order, ranks of a node anywhere, node ids any distinct numbers."""
    ids = data.draw(st.lists(st.integers(-50, 50), min_size=nodes, max_size=nodes, unique=True))
    node_of_rank = data.draw(st.permutations([i for i in ids for _ in range(per_node)]))
    p = nodes * per_node
    sched = schedules.hierarchical_ring(p, n, node_of_rank)
    assert_sums(sched, integer_inputs(p, n))
    assert len(sched.rounds) == 2 * (per_node - 1) + 2 * (nodes - 1)


@given(p=st.integers(1, 8), n=st.integers(0, 300), data=st.data())
def test_parameter_server_sums_for_any_segment_split_property(p, n, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=12)))
    bounds = [0, *cuts, n]
    segments = data.draw(st.permutations([(a, b - a) for a, b in zip(bounds, bounds[1:])]))
    assert_sums(schedules.parameter_server(p, n, segments), integer_inputs(p, n))


# --- byte, message and round counts --------------------------------------------------------

@pytest.mark.parametrize("p", [1, 2, 4, 8, 16])
def test_ring_and_halving_doubling_send_2_p_minus_1_over_p_n_for_powers_of_two(p):
    n = 48 * p
    for name, nrounds in (("ring", 2 * (p - 1)), ("halving-doubling", 2 * (p.bit_length() - 1))):
        sched = schedules.build(name, p, n)
        assert list(sched.elements_sent()) == [2 * (p - 1) * n // p] * p
        assert list(sched.elements_received()) == [2 * (p - 1) * n // p] * p
        assert len(sched.rounds) == nrounds
        assert list(sched.messages_sent()) == [nrounds] * p  # one message per rank per round


@pytest.mark.parametrize("p", [3, 5, 6, 7, 9, 12, 13])
def test_halving_doubling_folds_other_rank_counts(p):
    """q = largest power of two <= p, r = p - q: ranks 2i+1 (i < r) fold into 2i and get the
    result back; partners carry n more each way than the 2(q-1)/q n of the others."""
    q = 2 ** int(np.log2(p))
    n = 16 * q
    core = 2 * (q - 1) * n // q
    folded, partners = range(1, 2 * (p - q), 2), range(0, 2 * (p - q), 2)
    expected = [n if r in folded else core + n if r in partners else core for r in range(p)]
    sched = schedules.halving_doubling(p, n)
    assert list(sched.elements_sent()) == expected
    assert list(sched.elements_received()) == expected
    assert len(sched.rounds) == 2 * int(np.log2(q)) + 2
    assert (sched.rounds[0].phase, sched.rounds[-1].phase) == ("fold", "unfold")


@pytest.mark.parametrize("p", range(1, 18))
def test_tree_sends_whole_buffers_along_tree_edges(p):
    """Heap tree: rank r > 0 sends n up and receives n down; each child adds n each way."""
    n = 10
    children = [sum(c < p for c in (2 * r + 1, 2 * r + 2)) for r in range(p)]
    expected = [n * ((r > 0) + children[r]) for r in range(p)]
    sched = schedules.binary_tree(p, n)
    assert list(sched.elements_sent()) == expected
    assert list(sched.elements_received()) == expected
    assert list(sched.messages_sent()) == [e // n for e in expected]
    assert sum(expected) == 2 * (p - 1) * n
    assert len(sched.rounds) == 2 * int(np.floor(np.log2(p)))


def test_tree_parent_of_two_receives_both_in_one_round():
    up = schedules.binary_tree(3, 5).rounds[0]
    assert up.reduce and sorted(zip(up.src, up.dst)) == [(1, 0), (2, 0)]


@pytest.mark.parametrize("nodes", [1, 2, 3, 4])
@pytest.mark.parametrize("per_node", [1, 2, 3, 4])
def test_hierarchical_ring_bytes_split_into_intra_and_inter_node(nodes, per_node):
    """Per rank: 2(L-1)/L n inside its node, 2(N-1)/N n/L to other nodes; whatever the layout."""
    p, n = nodes * per_node, 60 * nodes * per_node
    for node_of_rank in ([r // per_node for r in range(p)], [r % nodes for r in range(p)]):
        sched = schedules.hierarchical_ring(p, n, node_of_rank)
        node = np.array(node_of_rank)
        intra, inter = np.zeros(p, dtype=np.int64), np.zeros(p, dtype=np.int64)
        for rnd in sched.rounds:
            same = node[rnd.src] == node[rnd.dst]
            np.add.at(intra, rnd.src[same], rnd.count[same])
            np.add.at(inter, rnd.src[~same], rnd.count[~same])
        assert list(intra) == [2 * (per_node - 1) * n // per_node] * p
        assert list(inter) == [2 * (nodes - 1) * n // (nodes * per_node)] * p
        assert list(sched.elements_sent()) == [2 * (p - 1) * n // p] * p
        assert list(sched.elements_received()) == [2 * (p - 1) * n // p] * p
        assert len(sched.rounds) == 2 * (per_node - 1) + 2 * (nodes - 1)


@pytest.mark.parametrize("p", range(1, 8))
@pytest.mark.parametrize("n", [0, 1, 5, 97])
def test_hierarchical_ring_on_one_node_or_one_rank_per_node_is_the_ring(p, n):
    ring = schedules.ring(p, n)
    for node_of_rank in ([7] * p, list(range(p))):
        sched = schedules.hierarchical_ring(p, n, node_of_rank)
        assert len(sched.rounds) == len(ring.rounds)
        for a, b in zip(sched.rounds, ring.rounds):
            assert a.reduce == b.reduce
            for field in ("src", "dst", "start", "count"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("p", [1, 2, 3, 4, 8])
def test_parameter_server_even_shards_send_2_p_minus_1_over_p_n(p):
    n = 12 * p
    sched = schedules.parameter_server(p, n)
    assert list(sched.elements_sent()) == [2 * (p - 1) * n // p] * p
    assert list(sched.elements_received()) == [2 * (p - 1) * n // p] * p
    assert list(sched.messages_sent()) == [2 * (p - 1)] * p
    assert [r.phase for r in sched.rounds] == (["push", "pull"] if p > 1 else [])


@pytest.mark.parametrize("p", [2, 3, 4, 5])
def test_parameter_server_uneven_segments_load_their_servers(p):
    """Rank r pushes what it does not serve (n - S_r) and pulls it back; it receives (p-1) S_r
    and sends S_r to each of the p-1 others."""
    n = 1000
    segments = uneven_segments(n, p)
    served = [sum(c for i, (_, c) in enumerate(segments) if i % p == r) for r in range(p)]
    nonempty = [sum(1 for i, (_, c) in enumerate(segments) if i % p == r and c) for r in range(p)]
    total_nonempty = sum(1 for _, c in segments if c)
    sched = schedules.parameter_server(p, n, segments)
    expected = [n - s + (p - 1) * s for s in served]
    assert list(sched.elements_sent()) == expected
    assert list(sched.elements_received()) == expected
    assert list(sched.messages_sent()) == [total_nonempty - k + (p - 1) * k for k in nonempty]


@pytest.mark.parametrize("name", NAMES)
def test_rounds_depend_on_ranks_not_on_length(name):
    """Rounds model time steps: empty transfers go, the rounds stay."""
    for p in (2, 5, 8):
        shapes = {tuple((r.phase, r.index, r.reduce) for r in schedules.build(name, p, n).rounds)
                  for n in (0, 1, 1000)}
        assert len(shapes) == 1
        assert all((r.count > 0).all() for r in schedules.build(name, p, 1).rounds)


# --- build and bad input ---------------------------------------------------------------------

def test_build_names_every_algorithm_and_mpi_is_a_choice():
    assert NAMES == ["ring", "halving-doubling", "tree", "hierarchical-ring", "parameter-server"]
    assert collectives.CHOICES == (*NAMES, "mpi")
    with pytest.raises(ValueError, match="choose one of ring, halving-doubling, tree, "
                                         "hierarchical-ring, parameter-server"):
        schedules.build("butterfly", 4, 10)


def test_build_passes_each_algorithm_only_the_context_it_takes():
    kwargs = {"node_of_rank": [0, 0, 1, 1], "segments": [(0, 3), (3, 7)]}
    ring = schedules.build("ring", 4, 10, **kwargs)
    assert ring.elements_sent().tolist() == schedules.ring(4, 10).elements_sent().tolist()
    hier = schedules.build("hierarchical-ring", 4, 10, **kwargs)
    assert {r.phase for r in hier.rounds} >= {"inter-reduce-scatter", "intra-all-gather"}
    ps = schedules.build("parameter-server", 4, 10, **kwargs)
    assert ps.elements_received().tolist() == [3 * 3 + 7, 3 * 7 + 3, 10, 10]


@pytest.mark.parametrize("node_of_rank", [[0, 0, 0, 1], [0, 1, 1, 2, 2, 0, 3]])
def test_hierarchical_ring_rejects_uneven_nodes(node_of_rank):
    with pytest.raises(ValueError, match="same number of ranks on every node.*node 0: "):
        schedules.hierarchical_ring(len(node_of_rank), 10, node_of_rank)


def test_hierarchical_ring_rejects_a_layout_of_the_wrong_length():
    with pytest.raises(ValueError, match="3 entries for 4 ranks"):
        schedules.build("hierarchical-ring", 4, 10, node_of_rank=[0, 0, 1])


@pytest.mark.parametrize("segments", [[(0, 4)], [(0, 6), (5, 5)], [(0, 5), (6, 4)],
                                      [(0, 12), (12, -2)], [(1, 9), (0, 1), (10, 1)]])
def test_parameter_server_rejects_segments_that_do_not_tile_the_buffer(segments):
    with pytest.raises(ValueError, match=r"tiling \[0, 10\)"):
        schedules.parameter_server(3, 10, segments)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [(0, 10), (-1, 10), (2, -1)])
def test_every_algorithm_rejects_bad_arguments(name, bad):
    with pytest.raises(ValueError):
        schedules.build(name, *bad)


def test_make_allreduce_rejects_unknown_algorithm():
    with pytest.raises(ValueError, match="unknown all-reduce algorithm 'butterfly'"):
        collectives.make_allreduce("butterfly", 2, 0, 10, None, np, np.float64)


# --- the executor's rules ------------------------------------------------------------------------

def all_schedules():
    for name in NAMES:
        for p in range(1, 10):
            for n in lengths(p):
                for context in contexts(name, p, n):
                    yield schedules.build(name, p, n, **context)


def test_copy_rounds_never_receive_into_a_slice_sent_in_the_same_round():
    """Checked twice: on the schedule's data here, and by compiling every rank's executor
    (which refuses such a round)."""
    for sched in all_schedules():
        for rnd in (r for r in sched.rounds if not r.reduce):
            for rank in range(sched.world_size):
                out, into = rnd.src == rank, rnd.dst == rank
                sent = [(s, s + c) for s, c in zip(rnd.start[out], rnd.count[out])]
                got = sorted((s, s + c) for s, c in zip(rnd.start[into], rnd.count[into]))
                assert all(a[1] <= b[0] for a, b in zip(got, got[1:])), "overlapping receives"
                assert not any(lo < rhi and rlo < hi for lo, hi in sent for rlo, rhi in got)
        for rank in range(sched.world_size):
            collectives.ScheduleAllreduce(sched, rank, None, np, np.float64)


def test_executor_refuses_a_copy_round_that_overwrites_what_it_sends():
    bad = schedules.Round("all-gather", 0, False, np.array([0, 1]), np.array([1, 0]),
                          np.array([0, 2]), np.array([4, 4]))  # rank 1 sends [2, 6), gets [0, 4)
    sched = schedules.Schedule("bad", 2, 8, (bad,))
    with pytest.raises(ValueError, match="all-gather round 0 receives into a slice it is sending"):
        collectives.ScheduleAllreduce(sched, 1, None, np, np.float64)
    twice = schedules.Round("all-gather", 0, False, np.array([1, 2]), np.array([0, 0]),
                            np.array([0, 2]), np.array([4, 4]))
    with pytest.raises(ValueError, match="receives twice into one slice"):
        collectives.ScheduleAllreduce(schedules.Schedule("bad", 3, 8, (twice,)), 0, None, np,
                                      np.float64)


class MemoryTransport:
    """The Transport contract for p threads in one process: a round's sends are copied out
    when posted (MPI may read them until the round ends), every rank waits until all have
    posted, then takes its messages in posting order (MPI's non-overtaking rule)."""

    def __init__(self, rank, mailbox, lock, barrier):
        self.rank, self.mailbox, self.lock, self.barrier = rank, mailbox, lock, barrier
        self.calls = []

    def exchange(self, sends, recvs, tag=0, label=None):
        with self.lock:
            for dst, view in sends:
                self.mailbox[self.rank, dst, tag].append(view.copy())
        self.barrier.wait()
        with self.lock:
            for src, view in recvs:
                data = self.mailbox[src, self.rank, tag].pop(0)
                assert data.shape == view.shape
                view[...] = data
        self.barrier.wait()
        self.calls.append((label, len(sends), len(recvs)))


def run_threads(sched, inputs):
    p = sched.world_size
    mailbox, lock, barrier = defaultdict(list), threading.Lock(), threading.Barrier(p, timeout=20)
    transports = [MemoryTransport(r, mailbox, lock, barrier) for r in range(p)]
    bufs = [x.copy() for x in inputs]
    errors = []

    def rank_main(r):
        try:
            collectives.ScheduleAllreduce(sched, r, transports[r], np, bufs[r].dtype)(bufs[r])
        except Exception as exc:  # noqa: BLE001 - reported below, and frees the other ranks
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(p)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert not any(mailbox.values()), "messages sent but never received"
    return bufs, transports


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("p", [1, 2, 3, 5, 6, 7])
def test_executor_runs_every_schedule_on_every_rank(name, p):
    """One exchange per round on every rank, whatever the rank does in it: several receives
    into one slice (tree parents), only sends or only receives (tree, fold, pull)."""
    for n in (0, 1, p + 1, 97):
        for context in contexts(name, p, n):
            sched = schedules.build(name, p, n, **context)
            inputs = integer_inputs(p, n)
            bufs, transports = run_threads(sched, inputs)
            for buf in bufs:
                np.testing.assert_array_equal(buf, np.sum(inputs, axis=0))
            for t in transports:
                assert [label for label, _, _ in t.calls] == list(sched.rounds)
            if name == "tree" and p >= 3 and n:
                depth = int(np.log2(p))
                # (round, sends, receives) on the root: last reduce round, first broadcast
                assert transports[0].calls[depth - 1][1:] == (0, 2)
                assert transports[0].calls[depth][1:] == (2, 0)
