"""The async role, Downpour SGD (Dean et al. 2012): model replicas and parameter servers
(ranks: who is what and their steps; the push and fetch rule is netsim.algorithms.downpour's),
the cuts every rank agrees on for checkpoints and stops (cuts), through the run's
lifecycle (role).
May import: exits, comm, config, maths, guard, run, netsim.algorithms, netsim.record.
"""
