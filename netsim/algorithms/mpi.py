"""MPI_Allreduce: the library's own all-reduce, the naive sibling the schedules are tested
against (one call, and the library chooses its algorithm by size and rank count).

Its messages are the library's business: it has no schedule of ours, so its bytes are not
observable (a report that claimed them would put invented numbers into a report about real
traffic) and it cannot be simulated. Its stalls and its time still are measured.
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


MPI = Mpi()
