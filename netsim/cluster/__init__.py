"""Clusters of GPUs as directed links: the topology TOML format (topofile), how links are laid
out and routed (links), and the Topology with its presets (presets/*.toml) and rank placement
(topology). May import NumPy and netsim.errors only: the one loader of topologies, which
netsim's models and `python -m launch.emulate` (the emulated cluster's links) both read
through. The presets are hardware anyone can buy or rent; a topology of one's own machine is
what `python -m netsim calibrate` writes.
"""
