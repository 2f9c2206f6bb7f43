"""NCCL's double binary tree: its trees as trees.cc builds them, chains inside the nodes,
each half of the buffer on one tree, and pipelining that lets reduce and broadcast overlap."""

import numpy as np
import pytest

from netsim import algorithms
from netsim.algorithms import DOUBLE_BINARY_TREE
from netsim.algorithms.double_tree import btree_parent, node_parent, parents

from cases import integer_inputs


def test_the_binary_tree_is_nccls():
    """ncclGetBtree on 8 ranks: 0 <- 4; 4 <- 2, 6; 2 <- 1, 3; 6 <- 5, 7."""
    assert [btree_parent(8, r) for r in range(8)] == [-1, 2, 4, 2, 0, 6, 4, 6]
    assert [btree_parent(5, r) for r in range(5)] == [-1, 2, 4, 2, 0]  # 4: no 8, so 4 ^ 4


@pytest.mark.parametrize("nodes", [2, 4, 6, 8, 16])
def test_on_an_even_count_of_nodes_no_node_is_inner_in_both_trees(nodes):
    """The mirror makes the leaves of one tree the inner nodes of the other (the point of a
    double tree: every node's links carry the same load)."""
    children = [
        np.bincount(
            [u for m in range(nodes) if (u := node_parent(nodes, m, t)) >= 0], minlength=nodes
        )
        for t in (False, True)
    ]
    assert not ((children[0] > 0) & (children[1] > 0)).any()
    assert [m for m in range(nodes) if node_parent(nodes, m, True) < 0] == [nodes - 1]


def test_heads_meet_in_the_tree_and_chains_lead_to_their_heads():
    chains = np.arange(8).reshape(4, 2)  # 4 nodes of 2 ranks; heads 0, 2, 4, 6
    tree0, tree1 = parents(chains)
    assert tree0.tolist() == [-1, 0, 4, 2, 0, 4, 4, 6]  # nodes: 0 <- 2 <- 1, 3
    assert tree1.tolist() == [2, 0, 6, 2, 2, 4, -1, 6]  # the mirror: 3 <- 1 <- 2, 0


@pytest.mark.parametrize("p,per_node", [(4, 1), (8, 2), (12, 3), (6, 6), (10, 2)])
def test_each_half_goes_up_one_tree_and_down_again(p, per_node):
    n = 50 * p + 3
    nodes = [r // per_node for r in range(p)]
    inputs = integer_inputs(p, n)
    for chunks in (1, 4):
        sched = DOUBLE_BINARY_TREE.schedule(p, n, node_of_rank=nodes, chunks=chunks)
        for buf in algorithms.execute(sched, inputs):
            np.testing.assert_array_equal(buf, np.sum(inputs, axis=0))
        np.testing.assert_array_equal(
            DOUBLE_BINARY_TREE.elements_sent(p, n, node_of_rank=nodes, chunks=chunks),
            sched.elements_sent(),
        )
    # every rank but the two roots sends each of its halves once up and once per child down
    assert sched.elements_sent().sum() == 2 * (p - 1) * n


def test_pipelined_steps_move_a_chunk_up_while_an_earlier_one_comes_down():
    p, n = 8, 8000
    plain = DOUBLE_BINARY_TREE.schedule(p, n, node_of_rank=[r // 2 for r in range(p)])
    piped = DOUBLE_BINARY_TREE.schedule(p, n, node_of_rank=[r // 2 for r in range(p)], chunks=10)
    assert len(piped.rounds) == len(plain.rounds) + 10 - 1
    middle = piped.rounds[len(piped.rounds) // 2]
    assert middle.adds.any() and not middle.adds.all()  # reduces and copies in one step
