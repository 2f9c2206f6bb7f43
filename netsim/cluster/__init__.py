"""Clusters of GPUs as directed links: the topology TOML format (topofile), how links are laid
out and routed (links), the Topology with its presets (presets/*.toml) and rank placement
(topology), and what carries traffic between nodes, with its cost per message and the
protocols NCCL runs over it (transports). May import NumPy and netsim.errors only: the one
loader of topologies, which netsim's models and `python -m launch.emulate` (the emulated
cluster's links) both read through. The presets are hardware anyone can buy or rent; a
topology of one's own machine is what `python -m netsim calibrate` writes.
"""
