"""--compress as setup takes it: parsed once and written as parsed, one line for a bad value,
refused where it cannot run (--mode async, a library's all-reduce, --transport shm, a GPU),
--transport auto settled to messages; the factory's widths read back from the segments."""

from types import SimpleNamespace

import pytest

from allreduce_train.config.config import Config
from allreduce_train.config.options import parser
from allreduce_train.exchange import factory
from allreduce_train.exits import UsageError


def config(*argv):
    return Config(**vars(parser(speak=False).parse_args(list(argv))))


def test_parsed_once_and_written_as_parsed():
    assert config().compress == "none" and config().transport == "auto"
    cfg = config("--compress", "TopK:0.010")
    assert cfg.compress == "topk:0.01" and cfg.compression.parameter == 0.01
    assert cfg.transport == "mpi"  # auto: the compressed collectives are messages
    assert config("--compress", "powersgd:4").compression.parameter == 4


@pytest.mark.parametrize(
    "argv,says",
    [
        (["--compress", "fp8"], "--compress: compression wants none, fp16, bf16, topk:RATIO"),
        (["--compress", "topk:2"], "got 'topk:2'"),
        (["--compress", "fp16", "--mode", "async"], "--mode async pushes to parameter servers"),
        (["--compress", "bf16", "--allreduce", "mpi"], "--allreduce mpi is the library's own"),
        (["--compress", "powersgd:2", "--transport", "shm"], "--transport shm sums the gradient"),
    ],
)
def test_a_bad_value_or_pairing_is_one_line(argv, says):
    with pytest.raises(UsageError) as err:
        config(*argv)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_refused_on_a_gpu_at_setup():
    gpu = SimpleNamespace(on_gpu=True, description="NVIDIA H100")
    with pytest.raises(UsageError, match="--compress fp16: the compression runs on the CPU"):
        factory.check_transport(config("--compress", "fp16"), gpu)
    factory.check_transport(config("--compress", "fp16"), SimpleNamespace(on_gpu=False))
