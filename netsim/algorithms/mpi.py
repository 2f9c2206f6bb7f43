"""The libraries' own all-reduces: MPI_Allreduce, the naive sibling the schedules are tested
against (one call, and the library chooses its algorithm by size and rank count), and
NCCL's ncclAllReduce on GPU buffers (CuPy's bindings), the GPU reference.

Their messages are the library's business: they have no schedule of ours, so their bytes are not
observable (a report that claimed them would put invented numbers into a report about real
traffic) and they cannot be simulated (netsim.sim.nccl models NCCL's
algorithms on clusters). Their stalls and their time still are measured.
"""

from __future__ import annotations

from .base import Algorithm


class Mpi(Algorithm):
    name, label, formula = "mpi", "MPI_Allreduce", None
    scheduled = False

    def channel_schedule(self, world_size, nelems, node_of_rank=None, segments=None) -> None:
        return None

    def channel_elements_sent(self, world_size, nelems, node_of_rank=None, segments=None) -> None:
        return None

    def closed_form_s(
        self, topology, world_size, nbytes, segments=None, itemsize=1, channels=1
    ) -> None:
        return None


class Nccl(Mpi):
    name, label = "nccl", "ncclAllReduce"
    needs_gpu = True  # on the GPU buffers themselves, one GPU per rank


MPI = Mpi()
NCCL = Nccl()
