"""Every all-reduce algorithm, checked as pure data: exact sums against NumPy for awkward
rank counts, lengths, node layouts and segment splits; each algorithm's own count of the
elements its ranks send against what its schedule sends; and the byte, message and round
counts their docstrings promise, written here from the algorithms' definitions."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from netsim import algorithms
from netsim.algorithms import HALVING_DOUBLING, HIERARCHICAL_RING, PARAMETER_SERVER, RING, TREE
from netsim.errors import InputError

from cases import NAMES, contexts, integer_inputs, lengths, uneven_segments


def assert_sums(schedule, inputs):
    expected = np.sum(inputs, axis=0)
    for rank, buf in enumerate(algorithms.execute(schedule, inputs)):
        np.testing.assert_array_equal(buf, expected, err_msg=f"rank {rank}")


# --- sums ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def awkward():
    """awkward(name, p): [(n, context, schedule)] of every awkward case, built once for both
    tests of them all, their sums and their count of elements sent (most of either's time)."""
    built = {}

    def cases(name, p):
        if (name, p) not in built:
            make = algorithms.get(name).schedule
            built[name, p] = [(n, c, make(p, n, **c)) for n in lengths(p) for c in contexts(p, n)]
        return built[name, p]

    return cases


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("p", range(1, 10))
def test_every_algorithm_sums_exactly_for_awkward_lengths(name, p, awkward):
    for n, _, schedule in awkward(name, p):
        assert_sums(schedule, integer_inputs(p, n))


@pytest.mark.parametrize("name", NAMES)
def test_every_algorithm_leaves_ranks_bit_identical_in_float32(name):
    """Each piece's sum is formed on one rank and copied: no rank may round differently."""
    for p in (3, 4, 6, 7):
        n = 1001
        rng = np.random.default_rng(p)
        inputs = [rng.standard_normal(n).astype(np.float32) for _ in range(p)]
        for context in contexts(p, n):
            out = algorithms.execute(algorithms.get(name).schedule(p, n, **context), inputs)
            assert len({buf.tobytes() for buf in out}) == 1


@given(
    name=st.sampled_from(NAMES),
    p=st.integers(1, 16),
    n=st.integers(0, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_sums_property(name, p, n, seed):
    assert_sums(algorithms.get(name).schedule(p, n), integer_inputs(p, n, seed))


@given(nodes=st.integers(1, 4), per_node=st.integers(1, 4), n=st.integers(0, 300), data=st.data())
def test_hierarchical_ring_sums_for_any_node_layout_property(nodes, per_node, n, data):
    """Nodes given in any order, ranks of a node anywhere, node ids any distinct numbers."""
    ids = data.draw(st.lists(st.integers(-50, 50), min_size=nodes, max_size=nodes, unique=True))
    node_of_rank = data.draw(st.permutations([i for i in ids for _ in range(per_node)]))
    p = nodes * per_node
    sched = HIERARCHICAL_RING.schedule(p, n, node_of_rank)
    assert_sums(sched, integer_inputs(p, n))
    assert len(sched.rounds) == 2 * (per_node - 1) + 2 * (nodes - 1)


@given(p=st.integers(1, 8), n=st.integers(0, 300), data=st.data())
def test_parameter_server_sums_for_any_segment_split_property(p, n, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=12)))
    bounds = [0, *cuts, n]
    segments = data.draw(st.permutations([(a, b - a) for a, b in zip(bounds, bounds[1:])]))
    assert_sums(PARAMETER_SERVER.schedule(p, n, segments=segments), integer_inputs(p, n))


# --- byte, message and round counts --------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2, 4, 8, 16])
def test_ring_and_halving_doubling_send_2_p_minus_1_over_p_n_for_powers_of_two(p):
    n = 48 * p
    for name, nrounds in (("ring", 2 * (p - 1)), ("halving-doubling", 2 * (p.bit_length() - 1))):
        sched = algorithms.get(name).schedule(p, n)
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
    sched = HALVING_DOUBLING.schedule(p, n)
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
    sched = TREE.schedule(p, n)
    assert list(sched.elements_sent()) == expected
    assert list(sched.elements_received()) == expected
    assert list(sched.messages_sent()) == [e // n for e in expected]
    assert sum(expected) == 2 * (p - 1) * n
    assert len(sched.rounds) == 2 * int(np.floor(np.log2(p)))


def test_tree_parent_of_two_receives_both_in_one_round():
    up = TREE.schedule(3, 5).rounds[0]
    assert up.reduce and sorted(zip(up.src, up.dst)) == [(1, 0), (2, 0)]


@pytest.mark.parametrize("nodes", [1, 2, 3, 4])
@pytest.mark.parametrize("per_node", [1, 2, 3, 4])
def test_hierarchical_ring_bytes_split_into_intra_and_inter_node(nodes, per_node):
    """Per rank: 2(L-1)/L n inside its node, 2(N-1)/N n/L to other nodes; whatever the layout."""
    p, n = nodes * per_node, 60 * nodes * per_node
    for node_of_rank in ([r // per_node for r in range(p)], [r % nodes for r in range(p)]):
        sched = HIERARCHICAL_RING.schedule(p, n, node_of_rank)
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
    ring = RING.schedule(p, n)
    for node_of_rank in ([7] * p, list(range(p))):
        sched = HIERARCHICAL_RING.schedule(p, n, node_of_rank)
        assert len(sched.rounds) == len(ring.rounds)
        for a, b in zip(sched.rounds, ring.rounds):
            assert a.reduce == b.reduce
            for field in ("src", "dst", "start", "count"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("p", [1, 2, 3, 4, 8])
def test_parameter_server_even_shards_send_2_p_minus_1_over_p_n(p):
    n = 12 * p
    sched = PARAMETER_SERVER.schedule(p, n)
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
    sched = PARAMETER_SERVER.schedule(p, n, segments=segments)
    expected = [n - s + (p - 1) * s for s in served]
    assert list(sched.elements_sent()) == expected
    assert list(sched.elements_received()) == expected
    assert list(sched.messages_sent()) == [total_nonempty - k + (p - 1) * k for k in nonempty]


@pytest.mark.parametrize("name", NAMES)
def test_rounds_depend_on_ranks_not_on_length(name):
    """Rounds model time steps: empty transfers go, the rounds stay."""
    for p in (2, 5, 8):
        shapes = {
            tuple((r.phase, r.index, r.reduce) for r in algorithms.get(name).schedule(p, n).rounds)
            for n in (0, 1, 1000)
        }
        assert len(shapes) == 1
        assert all((r.count > 0).all() for r in algorithms.get(name).schedule(p, 1).rounds)


# --- each algorithm's own count of its bytes ------------------------------------------------


@pytest.mark.slow
def test_every_algorithms_count_of_its_elements_is_what_its_schedule_sends(awkward):
    """Counted from the definition (each module's elements_sent), against the schedule's
    transfers summed: two computations of one figure, which the reports print."""
    for name in NAMES:
        algorithm = algorithms.get(name)
        for p in range(1, 10):
            for n, context, schedule in awkward(name, p):
                counted = algorithm.elements_sent(p, n, **context)
                assert counted.dtype.kind == "i" and counted.shape == (p,)
                np.testing.assert_array_equal(
                    counted, schedule.elements_sent(), err_msg=f"{name} p={p} n={n} {context}"
                )


def test_mpi_allreduce_is_an_algorithm_without_a_schedule():
    mpi = algorithms.get("mpi")
    assert not mpi.scheduled and mpi.label == "MPI_Allreduce" and "mpi" not in algorithms.SCHEDULED
    assert mpi.schedule(4, 10) is None and mpi.elements_sent(4, 10) is None
    assert mpi.time_s(None, 4, 40) is None


# --- the registry and bad input ---------------------------------------------------------------


def test_every_algorithm_is_listed_by_its_name():
    assert list(algorithms.ALGORITHMS) == [*NAMES, "mpi", "nccl", "nvls", "nvls-tree", "collnet"]
    assert NAMES == [
        "ring",
        "halving-doubling",
        "recursive-doubling",
        "tree",
        "double-binary-tree",
        "hierarchical-ring",
        "parameter-server",
    ]
    for name, algorithm in algorithms.ALGORITHMS.items():
        assert (
            algorithm.name == name
            and algorithm.label
            and (algorithm.formula or not algorithm.scheduled)
        )
    with pytest.raises(
        InputError,
        match="choose one of ring, halving-doubling, recursive-doubling, tree, double-binary-tree, "
        "hierarchical-ring, parameter-server, mpi",
    ):
        algorithms.get("butterfly")


def test_each_algorithm_takes_only_the_context_it_uses():
    kwargs = {"node_of_rank": [0, 0, 1, 1], "segments": [(0, 3), (3, 7)]}
    ring = RING.schedule(4, 10, **kwargs)
    assert ring.elements_sent().tolist() == RING.schedule(4, 10).elements_sent().tolist()
    hier = HIERARCHICAL_RING.schedule(4, 10, **kwargs)
    assert {r.phase for r in hier.rounds} >= {"inter-reduce-scatter", "intra-all-gather"}
    ps = PARAMETER_SERVER.schedule(4, 10, **kwargs)
    assert ps.elements_received().tolist() == [3 * 3 + 7, 3 * 7 + 3, 10, 10]


@pytest.mark.parametrize("node_of_rank", [[0, 0, 0, 1], [0, 1, 1, 2, 2, 0, 3]])
def test_hierarchical_ring_rejects_uneven_nodes(node_of_rank):
    with pytest.raises(InputError, match="same number of ranks on every node.*node 0: "):
        HIERARCHICAL_RING.schedule(len(node_of_rank), 10, node_of_rank)


def test_hierarchical_ring_rejects_a_layout_of_the_wrong_length():
    with pytest.raises(InputError, match="3 entries for 4 ranks"):
        HIERARCHICAL_RING.schedule(4, 10, node_of_rank=[0, 0, 1])


@pytest.mark.parametrize(
    "segments",
    [[(0, 4)], [(0, 6), (5, 5)], [(0, 5), (6, 4)], [(0, 12), (12, -2)], [(1, 9), (0, 1), (10, 1)]],
)
def test_parameter_server_rejects_segments_that_do_not_tile_the_buffer(segments):
    with pytest.raises(InputError, match=r"tiling \[0, 10\)"):
        PARAMETER_SERVER.schedule(3, 10, segments=segments)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [(0, 10), (-1, 10), (2, -1)])
def test_every_algorithm_rejects_bad_arguments(name, bad):
    with pytest.raises(InputError):
        algorithms.get(name).schedule(*bad)
    with pytest.raises(InputError):
        algorithms.get(name).elements_sent(*bad)
