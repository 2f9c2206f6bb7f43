"""The sync role: every rank a replica (trainer: the step, its all-reduce, its checks), all
stepping together through the run's lifecycle (role: the loop, evaluations, checkpoints).
May import: exits, comm, config, maths, guard, exchange, run, netsim.record.
"""
