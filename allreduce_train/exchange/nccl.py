"""--allreduce nccl: ncclAllReduce on the GPU gradient itself, through CuPy's NCCL bindings (no
host staging). The one module of the exchange room that imports CuPy (cupy.cuda.nccl)."""

from __future__ import annotations


class NcclAllreduce:
    """ncclAllReduce (sum, in place) of a GPU buffer over every rank, through CuPy's NCCL
    bindings: rank 0 makes the unique id, MPI broadcasts it. Its messages are NCCL's, so
    they are not observable: steps are recorded, their bytes hidden (as MPI_Allreduce's)."""

    def __init__(self, world, xp, dtype):
        from cupy.cuda import nccl

        uid = world.bcast(nccl.get_unique_id() if world.is_root else None)
        self.comm = nccl.NcclCommunicator(world.world_size, uid, world.rank)
        self.xp, self.sum = xp, nccl.NCCL_SUM
        self.dtype = {4: nccl.NCCL_FLOAT32, 8: nccl.NCCL_FLOAT64}[xp.dtype(dtype).itemsize]

    def record_into(self, recorder) -> None:
        if recorder is not None:
            recorder.bind(None)

    def __call__(self, buf) -> None:
        stream = self.xp.cuda.get_current_stream()
        ptr = buf.data.ptr
        self.comm.allReduce(ptr, ptr, buf.size, self.dtype, self.sum, stream.ptr)
        stream.synchronize()  # the step's times mean the sum is there
