"""The gradient path: how a rank's gradient is summed over every rank each step. One
interface for every executor (protocol), the schedule executor and MPI_Allreduce beside it
(schedule), a GPU gradient staged through host memory or handed to a CUDA-aware MPI
(staging), NCCL (nccl), the one factory that picks and checks (factory), --allreduce
auto's choice (autoselect), the gradient in buckets, all-reduced during backward
(buckets), each bucket compressed before it travels, --compress (compress), and a node's
gradients summed through its shared-memory window, --transport shm (shm).
May import: exits, config, maths, netsim.algorithms, netsim's choose (autoselect) and
netsim's bucket plan (workload.buckets).
"""
