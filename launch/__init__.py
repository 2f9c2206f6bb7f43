"""How runs are started: finding the MPI launcher, building its argv, and running it with a
hard timeout that kills every rank. The one copy that netsim's calibration, the benchmarks
and the tests use. Imports nothing of ours (the
standard library only), so everything may import it. Argv builders are pure functions,
tested by asserting the argv they return.
"""

from .local import mpiexec, mpirun_argv, run  # noqa: F401
