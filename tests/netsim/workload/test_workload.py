"""Workload files (round trip, every bad field as one line), the built-in set held to the
published parameter counts and FLOPs, and the ASTRA-sim / SimAI importer."""

import json

import pytest

from netsim.errors import InputError
from netsim.workload import catalog, convnets, importers, transformers
from netsim.workload import fileformat as ff
from netsim.workload import workload as wl

# Published parameter counts: torchvision's model documentation (ResNet, VGG, Inception v3
# with its auxiliary classifier), Hugging Face's released GPT-2 and BERT checkpoints.
PARAMS = {
    "resnet-50": 25_557_032,
    "resnet-101": 44_549_160,
    "vgg-16": 138_357_544,
    "inception-v3": 27_161_264,
    "gpt2-small": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "bert-base": 109_482_240,
    "bert-large": 335_141_888,
}
# torchvision's published GFLOPS (multiply-accumulates, in fact) per 224x224 (299 for
# Inception) image
GMACS = {"resnet-50": 4.09, "resnet-101": 7.80, "vgg-16": 15.47, "inception-v3": 5.71}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_the_built_ins_have_their_published_parameter_counts(name):
    assert catalog.builtin(name).params == PARAMS[name]


def test_transformer_big_has_the_papers_213_million():
    assert abs(catalog.builtin("transformer-big").params / 213e6 - 1) < 0.01


@pytest.mark.parametrize("name", sorted(GMACS))
def test_the_convnets_flops_are_torchvisions(name):
    w = catalog.builtin(name)
    assert w.flops_per_sample / 3 / 2e9 == pytest.approx(GMACS[name], abs=0.011)


@pytest.mark.parametrize("name", sorted(transformers.GPT2))
def test_gpt2_forward_flops_per_token_are_kaplans_2n_plus_attention(name):
    """Kaplan et al. 2020, Table 1: forward 2N + 2 n_layer n_ctx d per token (N without the
    embeddings); ours adds the tied output layer (2 d V) and counts both attention products."""
    d, depth = transformers.GPT2[name]
    w = catalog.builtin(name)
    n = w.params - transformers.GPT2_VOCAB * d - transformers.GPT2_POSITIONS * d
    kaplan = 2 * n + 2 * depth * 1024 * d
    ours = w.flops_per_sample / 3 / 1024
    assert ours == pytest.approx(
        kaplan + 2 * d * transformers.GPT2_VOCAB + 2 * depth * 1024 * d, rel=1e-3
    )


def test_every_built_in_round_trips_through_both_formats(tmp_path):
    for name in catalog.BUILTINS:
        w = catalog.builtin(name).with_(compute={"device": "hopper", "efficiency": 0.5})
        for kind, text in (("toml", ff.to_toml(w)), ("json", ff.to_json(w))):
            path = tmp_path / f"{name}.{kind}"
            path.write_text(text)
            assert catalog.resolve(str(path)) == w, (name, kind)


def test_layers_given_by_times_round_trip():
    w = wl.Workload(
        "two",
        (wl.Layer("a", (6, 2), forward_s=0.001, backward_s=0.002), wl.Layer("b", (), 0.0, 0.0)),
        batch=8,
    )
    w = w.with_(layers=(w.layers[0], wl.Layer("b", (), forward_s=0.0005, backward_s=0.001)))
    assert ff.loads(ff.to_toml(w)) == w
    assert w.times() == ([0.001, 0.0005], [0.002, 0.001])


def test_flops_become_times_on_a_device_at_its_share():
    w = wl.Workload("f", (wl.Layer("x", (10,), forward_flops=1e12),), batch=2)
    fwd, bwd = w.times(gpu="hopper", efficiency=0.5)
    assert fwd == [pytest.approx(2e12 / (66.9e12 * 0.5))]  # float32: the fp32 peak
    assert bwd == [pytest.approx(2 * fwd[0])]
    with pytest.raises(InputError, match="need a device"):
        w.times()


GOOD = {
    "format": "netsim-workload",
    "version": 1,
    "name": "x",
    "dtype": "float32",
    "batch": 4,
    "compute": {"device": "ampere", "efficiency": 0.5},
    "layers": [{"name": "a", "params": [4, 2], "forward_flops": 100.0}],
}


def spoil(path, value):
    data = json.loads(json.dumps(GOOD))
    where, keys = data, path.split(".")
    for k in keys[:-1]:
        where = where[int(k)] if k.isdigit() else where[k]
    if value is KeyError:
        del where[keys[-1]]
    else:
        where[keys[-1]] = value
    return data


@pytest.mark.parametrize(
    "path, value, words",
    [
        ("format", "topology", "format must be 'netsim-workload'"),
        ("version", 2, "version must be 1"),
        ("version", KeyError, "version is missing"),
        ("name", "", "name must be a non-empty string"),
        ("name", KeyError, "name is missing"),
        ("dtype", "int8", "dtype must be one of float32, float16, bfloat16"),
        ("batch", 0, "batch must be an integer in 1.."),
        ("batch", 2.5, "batch must be an integer"),
        ("colour", 1, "'colour' is not a workload key"),
        ("layers", [], "layers must be a non-empty list"),
        ("layers", KeyError, "layers is missing"),
        ("compute.device", "tpu", "compute.device must be one of volta, ampere"),
        ("compute.efficiency", 1.5, "compute.efficiency must be in (0, 1]"),
        ("compute.efficiency", 0, "compute.efficiency must be a finite number > 0"),
        ("compute.peak_tflops", -1, "compute.peak_tflops must be a finite number > 0"),
        ("compute.precision", "fp8", "compute.precision must be one of"),
        ("compute.effciency", 0.5, "did you mean 'efficiency'"),
        ("layers.0.name", 3, "layers[0].name must be a non-empty string"),
        ("layers.0.params", -1, "layers[0].params must be an integer in 0.."),
        ("layers.0.params", [4, 0], "layers[0].params[1] must be an integer in 1.."),
        ("layers.0.params", "big", "layers[0].params must be an integer or a list"),
        ("layers.0.params", KeyError, "layers[0].params is missing"),
        ("layers.0.forward_flops", float("nan"), "layers[0].forward_flops must be a finite"),
        ("layers.0.forward_flops", KeyError, "layers[0].forward_flops or layers[0].forward_ms"),
        ("layers.0.forward_ms", 1.0, "layers[0] gives both FLOPs and times"),
        ("layers.0.backward_flops", -5, "layers[0].backward_flops must be a finite number >= 0"),
        ("layers.0.speed", 1, "'speed' is not a workload key"),
    ],
)
def test_a_bad_field_is_one_line_naming_it(path, value, words):
    with pytest.raises(wl.WorkloadError) as info:
        ff.check(spoil(path, value))
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_file_that_is_not_a_workload_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "w.toml"
    bad.write_text("format = [")
    with pytest.raises(wl.WorkloadError, match="w.toml: not a TOML workload"):
        ff.load(str(bad))
    with pytest.raises(InputError, match="neither a built-in"):
        catalog.resolve(str(tmp_path / "absent.toml"))
    with pytest.raises(InputError, match="--seq-len is for sequence models"):
        catalog.builtin("resnet-50", 128)


ASTRA = """DATA
3
conv1 -1 1000 NONE 0 2000 NONE 0 2000 ALLREDUCE 37632 10
conv2 -1 3000 NONE 0 3000 NONE 0 3000 ALLREDUCE 400 10
fc -1 500 ALLGATHER 64 500 NONE 0 500 ALLREDUCE 4000 10
"""
SIMAI = (
    "HYBRID_TRANSFORMER_FWD_IN_BCKWD model_parallel_NPU_group: 8 ep: 1 pp: 1 vpp: 8 ga: 1 "
    "all_gpus: 32 checkpoints: 0 checkpoint_initiates: 0\n1\n"
    "grad_gather -1 1 NONE 0 1 NONE 0 1 ALLREDUCE 1073741824 100\n"
)


def test_an_astra_sim_workload_becomes_its_data_parallel_layers(tmp_path):
    path = tmp_path / "resnet.txt"
    path.write_text(ASTRA)
    w = catalog.resolve(str(path))
    assert [layer.tensors for layer in w.layers] == [(9408,), (100,), (1000,)]
    fwd, bwd = w.times()
    assert fwd == pytest.approx([1e-6, 3e-6, 0.5e-6]) and bwd == pytest.approx([4e-6, 6e-6, 1e-6])
    assert "1 model-parallel collectives not modelled" in w.source
    simai = tmp_path / "simai.txt"
    simai.write_text(SIMAI)
    assert catalog.resolve(str(simai)).params == 1 << 28


@pytest.mark.parametrize(
    "text, words",
    [
        ("DATA\n2\nconv1 -1 1 NONE 0 1 NONE 0 1 ALLREDUCE 4 1\n", "says 2 layers and has 1"),
        ("DATA\nx\n", "line 2: the layer count must be an integer"),
        ("DATA\n1\nconv1 -1 1 NONE 0 1 NONE 0 1\n", "line 3: a layer has at least 12 fields"),
        ("DATA\n1\nc -1 1 NONE 0 1 NONE 0 1 BROADCAST 4 1\n", "unknown collective 'BROADCAST'"),
        ("DATA\n1\nc -1 x NONE 0 1 NONE 0 1 ALLREDUCE 4 1\n", "must be numbers"),
        ("DATA\n1\nc -1 1 NONE 0 1 NONE 0 1 ALLREDUCE 6 1\n", "not whole float32 elements"),
        ("DATA\n1\nc -1 -1 NONE 0 1 NONE 0 1 ALLREDUCE 4 1\n", "must not be negative"),
    ],
)
def test_a_bad_astra_line_is_one_line_naming_it(tmp_path, text, words):
    path = tmp_path / "w.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=words):
        importers.from_astra(str(path))


def test_resnet_layers_are_torchvisions_modules_in_registration_order():
    names = [layer.name for layer in convnets.resnet(50).layers]
    assert names[:4] == ["conv1", "conv1.bn", "layer1.0.conv1", "layer1.0.conv1.bn"]
    assert names[6:10] == [
        "layer1.0.conv3",
        "layer1.0.conv3.bn",
        "layer1.0.downsample",
        "layer1.0.downsample.bn",
    ]
    assert names[-1] == "fc"


def test_a_pytorch_module_becomes_its_parameters_in_registration_order():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 10),
    )
    w = importers.from_torch(model, torch.zeros(2, 3, 4, 4), batch=2)
    assert [layer.tensors for layer in w.layers] == [(216,), (8, 8), (1280, 10)]
    assert w.params == sum(p.numel() for p in model.parameters())
    # a convolution's FLOPs: 2 x weights x output positions (4 x 4); a linear layer's: 2 x
    # weights; the batch norm's element-wise work is not counted
    assert [layer.forward_flops for layer in w.layers] == [2 * 216 * 16, 0.0, 2 * 1280]
    timed = importers.from_torch(model, torch.zeros(2, 3, 4, 4), batch=2, measure=True)
    assert all(layer.forward_s is not None for layer in timed.layers)
