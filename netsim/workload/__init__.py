"""Workloads: what a data-parallel training step computes and which gradients it all-reduces.

A workload is a model's layers in order of registration (forward order), each with its
parameter tensors (DDP's parameters: a layer's weight and its bias, a norm's scale and
shift, each one tensor) and its forward and backward compute, as times for one micro-batch
or as FLOPs per sample that a device's throughput turns into times. Here:

    workload   the Workload and its Layer, the compute model (FLOPs to seconds on a device
               at a stated achievable share of its peak)
    fileformat the versioned file format (TOML or JSON, netsim-workload version 1), its
               checked loader and writers
    buckets    PyTorch DDP's bucket plan, the one function training calls too
    convnets   ResNet-50/101, VGG-16, Inception v3: generated from their definitions
    transformers  BERT-base/large, GPT-2 small..XL, Transformer-big: likewise
    catalog    the built-in set by name, and `resolve`: a name, a workload file, an
               ASTRA-sim 1.0 / SimAI text file, a run directory of ours or
               torch:MODULE:CALLABLE
    importers  those foreign files, our run directories (the MLP's layers and their measured
               compute) and a PyTorch module (torch optional)

May import netsim.errors and netsim.record (a run directory's configuration and step
files), nothing else of ours: the step simulation (netsim.sim.step) builds on it, and
allreduce_train imports buckets to plan its own buckets with the same rule.
"""
