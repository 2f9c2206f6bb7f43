"""How runs are started: finding the MPI launcher, building its argv, and running it with a
hard timeout that kills every rank. The one copy that netsim's calibration, the benchmarks
and the tests use. Every module but the emulator imports nothing of ours, the standard
library only, so everything may import them. The emulator (emulate.py) imports one thing
of ours, netsim's topology loader (netsim.cluster.topology): what it emulates is a netsim
topology, and reading the TOML again with keys and defaults of its own could only drift
from the cluster netsim models. netsim.cluster imports nothing of launch (only
netsim.calibration does, and not the emulator), so there is no cycle;
tests/test_architecture.py holds both. Argv builders are pure functions, tested by
asserting the argv they return.

local.py starts ranks on this machine; clusters.py builds the argv (and the environment it
needs) that starts N nodes x G ranks per node on real hosts through MPICH's mpiexec, Open
MPI's mpirun or Slurm's srun, and reads and writes their hostfiles. `python -m launch`
(__main__.py) prints or runs those, each rank under rank.py's watch (`python -m
launch.rank`), which names a rank killed by a signal; examples/ holds a hostfile and a
Slurm batch script.
emulate.py (`python -m launch.emulate`) runs a job on a cluster emulated on this machine:
netns.py builds its network (namespaces, bridges, veth links capped by tc), hop.py is what
MPICH's Hydra runs instead of ssh to start a rank inside a node's namespace.
"""

from .clusters import (  # noqa: F401
    Launch,
    mpich_argv,
    openmpi_argv,
    read_hostfile,
    srun_argv,
    write_hostfile,
)
from .local import mpiexec, mpirun_argv, run  # noqa: F401
