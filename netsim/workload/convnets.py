"""Convolutional networks generated from their definitions, as torchvision builds them:
ResNet-50 and ResNet-101 (He et al. 2016, torchvision's v1.5: the stride on the 3x3
convolution), VGG-16 (Simonyan & Zisserman 2015, configuration D) and Inception v3
(Szegedy et al. 2016, with its auxiliary classifier), at ImageNet's 1000 classes.

Each module with parameters is one layer, in order of registration: a convolution (its
weight; torchvision's convolutions before a batch norm have no bias), a batch norm (its
scale and shift), a linear layer (weight and bias). Forward FLOPs per sample are 2 x the
multiply-accumulates of convolutions and linear layers, the figure papers and torchvision
publish (as MACs, which it calls GFLOPS); the element-wise work of norms and activations is
not counted, and its time is in the achievable share of the device's peak.
"""

from __future__ import annotations

from .workload import Layer, Workload


class _Net:
    """Layers in registration order, with the activations' shape followed through."""

    def __init__(self, channels: int, size: int):
        self.layers: list[Layer] = []
        self.c, self.h, self.w = channels, size, size

    def conv(self, name, cout, k, stride=1, pad=0, bias=False, bn=True, cin=None, hw=None):
        """A convolution (k: int or (kh, kw)) from (cin, hw) (default: the current shape)
        to cout channels; with bn, the batch norm after it. Returns the output shape and
        makes it current."""
        kh, kw = (k, k) if isinstance(k, int) else k
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        cin = self.c if cin is None else cin
        h, w = (self.h, self.w) if hw is None else hw
        ho, wo = (h + 2 * ph - kh) // stride + 1, (w + 2 * pw - kw) // stride + 1
        macs = cout * ho * wo * cin * kh * kw
        tensors = (cout * cin * kh * kw,) + ((cout,) if bias else ())
        self.layers.append(Layer(name, tensors, forward_flops=2.0 * macs))
        if bn:
            self.layers.append(Layer(f"{name}.bn", (cout, cout), forward_flops=0.0))
        self.c, self.h, self.w = cout, ho, wo
        return cout, (ho, wo)

    def pool(self, k, stride, pad=0):
        self.h = (self.h + 2 * pad - k) // stride + 1
        self.w = (self.w + 2 * pad - k) // stride + 1

    def linear(self, name, fin, fout):
        self.layers.append(Layer(name, (fin * fout, fout), forward_flops=2.0 * fin * fout))


def resnet(depth: int) -> Workload:
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}[depth]
    n = _Net(3, 224)
    n.conv("conv1", 64, 7, stride=2, pad=3)
    n.pool(3, 2, 1)
    cin = 64
    for stage, (count, width) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        for b in range(count):
            stride = 2 if b == 0 and stage > 1 else 1
            hw = (n.h, n.w)
            p = f"layer{stage}.{b}"
            n.conv(f"{p}.conv1", width, 1, cin=cin)
            n.conv(f"{p}.conv2", width, 3, stride=stride, pad=1)
            n.conv(f"{p}.conv3", width * 4, 1)
            if b == 0:  # torchvision registers downsample after conv3 and bn3
                out = (n.c, n.h, n.w)
                n.conv(f"{p}.downsample", width * 4, 1, stride=stride, cin=cin, hw=hw)
                n.c, n.h, n.w = out
            cin = width * 4
    n.linear("fc", 2048, 1000)
    return Workload(f"resnet-{depth}", tuple(n.layers), source=f"torchvision.models.resnet{depth}")


def vgg16() -> Workload:
    n = _Net(3, 224)
    i = 0
    for width, count in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(count):
            n.conv(f"features.{i}", width, 3, pad=1, bias=True, bn=False)
            i += 2  # each convolution is followed by its ReLU in torchvision's Sequential
        n.pool(2, 2)
        i += 1
    n.linear("classifier.0", 512 * 7 * 7, 4096)
    n.linear("classifier.3", 4096, 4096)
    n.linear("classifier.6", 4096, 1000)
    return Workload("vgg-16", tuple(n.layers), source="torchvision.models.vgg16")


def inception_v3() -> Workload:
    n = _Net(3, 299)
    n.conv("Conv2d_1a_3x3", 32, 3, stride=2)
    n.conv("Conv2d_2a_3x3", 32, 3)
    n.conv("Conv2d_2b_3x3", 64, 3, pad=1)
    n.pool(3, 2)
    n.conv("Conv2d_3b_1x1", 80, 1)
    n.conv("Conv2d_4a_3x3", 192, 3)
    n.pool(3, 2)
    for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
        _inception_a(n, name, pool_features)
    _inception_b(n, "Mixed_6a")
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        _inception_c(n, name, c7)
    shape = (n.c, n.h, n.w)  # the auxiliary head branches off Mixed_6e's output
    n.pool(5, 3)
    n.conv("AuxLogits.conv0", 128, 1)
    n.conv("AuxLogits.conv1", 768, 5)
    n.linear("AuxLogits.fc", 768, 1000)
    n.c, n.h, n.w = shape
    _inception_d(n, "Mixed_7a")
    _inception_e(n, "Mixed_7b")
    _inception_e(n, "Mixed_7c")
    n.linear("fc", 2048, 1000)
    return Workload("inception-v3", tuple(n.layers), source="torchvision.models.inception_v3")


def _branches(n: _Net, name: str, branches, pooled: int = 0, stride_pool: bool = False):
    """Run each branch (a list of (suffix, cout, k, stride, pad)) from the block's input;
    the block's output concatenates them (and, with stride_pool, the max-pooled input)."""
    cin, hw = n.c, (n.h, n.w)
    channels, out_hw = 0, hw
    for branch in branches:
        n.c, (n.h, n.w) = cin, hw
        for suffix, cout, k, stride, pad in branch:
            n.conv(f"{name}.{suffix}", cout, k, stride=stride, pad=pad)
        channels, out_hw = channels + n.c, (n.h, n.w)
    n.c, (n.h, n.w) = channels + (cin if stride_pool else 0) + pooled, out_hw


def _inception_a(n, name, pool_features):
    _branches(
        n,
        name,
        [
            [("branch1x1", 64, 1, 1, 0)],
            [("branch5x5_1", 48, 1, 1, 0), ("branch5x5_2", 64, 5, 1, 2)],
            [
                ("branch3x3dbl_1", 64, 1, 1, 0),
                ("branch3x3dbl_2", 96, 3, 1, 1),
                ("branch3x3dbl_3", 96, 3, 1, 1),
            ],
            [("branch_pool", pool_features, 1, 1, 0)],
        ],
    )


def _inception_b(n, name):
    _branches(
        n,
        name,
        [
            [("branch3x3", 384, 3, 2, 0)],
            [
                ("branch3x3dbl_1", 64, 1, 1, 0),
                ("branch3x3dbl_2", 96, 3, 1, 1),
                ("branch3x3dbl_3", 96, 3, 2, 0),
            ],
        ],
        stride_pool=True,
    )


def _inception_c(n, name, c7):
    row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))
    _branches(
        n,
        name,
        [
            [("branch1x1", 192, 1, 1, 0)],
            [
                ("branch7x7_1", c7, 1, 1, 0),
                ("branch7x7_2", c7, *row[:1], 1, row[1]),
                ("branch7x7_3", 192, *col[:1], 1, col[1]),
            ],
            [
                ("branch7x7dbl_1", c7, 1, 1, 0),
                ("branch7x7dbl_2", c7, *col[:1], 1, col[1]),
                ("branch7x7dbl_3", c7, *row[:1], 1, row[1]),
                ("branch7x7dbl_4", c7, *col[:1], 1, col[1]),
                ("branch7x7dbl_5", 192, *row[:1], 1, row[1]),
            ],
            [("branch_pool", 192, 1, 1, 0)],
        ],
    )


def _inception_d(n, name):
    _branches(
        n,
        name,
        [
            [("branch3x3_1", 192, 1, 1, 0), ("branch3x3_2", 320, 3, 2, 0)],
            [
                ("branch7x7x3_1", 192, 1, 1, 0),
                ("branch7x7x3_2", 192, (1, 7), 1, (0, 3)),
                ("branch7x7x3_3", 192, (7, 1), 1, (3, 0)),
                ("branch7x7x3_4", 192, 3, 2, 0),
            ],
        ],
        stride_pool=True,
    )


def _inception_e(n, name):
    """Its 3x3 branches split in two (1x3 and 3x1 side by side, concatenated)."""
    cin, hw = n.c, (n.h, n.w)
    n.conv(f"{name}.branch1x1", 320, 1, cin=cin, hw=hw)
    n.conv(f"{name}.branch3x3_1", 384, 1, cin=cin, hw=hw)
    n.conv(f"{name}.branch3x3_2a", 384, (1, 3), pad=(0, 1), cin=384, hw=hw)
    n.conv(f"{name}.branch3x3_2b", 384, (3, 1), pad=(1, 0), cin=384, hw=hw)
    n.conv(f"{name}.branch3x3dbl_1", 448, 1, cin=cin, hw=hw)
    n.conv(f"{name}.branch3x3dbl_2", 384, 3, pad=1, cin=448, hw=hw)
    n.conv(f"{name}.branch3x3dbl_3a", 384, (1, 3), pad=(0, 1), cin=384, hw=hw)
    n.conv(f"{name}.branch3x3dbl_3b", 384, (3, 1), pad=(1, 0), cin=384, hw=hw)
    n.conv(f"{name}.branch_pool", 192, 1, cin=cin, hw=hw)
    n.c, (n.h, n.w) = 320 + 768 + 768 + 192, hw
