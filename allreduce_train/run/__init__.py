"""One run's lifecycle, whatever trains in it: the order of a run and the services a role
gets while it trains (lifecycle), the one writer of the run directory (outputs), checkpoints
(checkpoint) and what rank 0 prints (console).
May import: exits, comm, config, maths, guard, netsim.algorithms, netsim.record, netsim.report.
"""
