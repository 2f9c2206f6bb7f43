"""The gradient path: how a rank's gradient is summed over every rank each step. One
interface for every executor (protocol), the schedule executor and MPI_Allreduce beside it
(schedule), a GPU gradient staged through host memory or handed to a CUDA-aware MPI
(staging), NCCL (nccl), the one factory that picks and checks (factory), and --allreduce
auto's choice (autoselect).
May import: exits, config, maths, netsim.algorithms, and netsim's choose (autoselect).
"""
