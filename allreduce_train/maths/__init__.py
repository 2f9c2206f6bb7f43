"""The replica's maths: a multi-layer perceptron in one flat buffer (model), its optimizer
(optim), its data and the deterministic split of each batch (data), how replicas are scored
and compared (evaluate), the array backend, NumPy or CuPy (backend), and CuPy's fused kernels
(kernels). No MPI, no network: it runs on one process.
May import: exits.
"""
