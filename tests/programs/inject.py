"""Rank program: the real training CLI with a fault injected on one rank.

inject.py raise RANK STEP -- CLI ARGS    rank RANK raises in its STEP-th optimizer step
inject.py perturb RANK STEP -- CLI ARGS  rank RANK nudges one weight after step STEP
"""

import sys

from mpi4py import MPI

from allreduce_train import __main__ as cli
from allreduce_train.maths import optim

mode, target, at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
args = sys.argv[sys.argv.index("--") + 1 :]
original = optim.SGD.step
calls = 0


def faulty_step(self):
    global calls
    original(self)
    calls += 1
    if MPI.COMM_WORLD.rank == target and calls == at:
        if mode == "raise":
            raise RuntimeError("injected fault")
        self.params[0] += 1e-3


optim.SGD.step = faulty_step
sys.exit(cli.main(args))
