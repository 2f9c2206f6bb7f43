"""The run's one configuration: the frozen Config, validated once and fingerprinted (config),
the command line that builds it (options), the options that are little languages (specs),
and the memory a configuration needs, checked before anything is made (budget).
May import: exits, maths (the names it validates), guard (the faults it parses),
netsim.algorithms.
"""
