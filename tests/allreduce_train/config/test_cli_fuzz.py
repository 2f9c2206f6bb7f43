"""Random mixes of training arguments, checked as a rank checks them before its first
collective (parse, configuration, world, dataset shape, memory): each is accepted or is one
line of UsageError, never another exception. In-process, so hundreds of cases take
seconds; what a rank then does with an accepted mix is the other tests' subject."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allreduce_train.config import budget
from allreduce_train.config.config import Config
from allreduce_train.config.options import HelpShown, parser
from allreduce_train.exits import UsageError

NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["0", "-0", "1e300", "-1e-300", "nan", "inf", "x", "", "1,2", "3-1"]),
)
WIDTHS = st.lists(st.integers(-5, 10**9), min_size=0, max_size=5).map(
    lambda ws: ",".join(map(str, ws))
)
TEXT = st.text(alphabet="abcx019:=,.-_ \n", max_size=20)
OPTIONS = {
    "--lr": NUMBERS, "--momentum": NUMBERS, "--weight-decay": NUMBERS, "--seed": NUMBERS,
    "--global-batch": NUMBERS, "--epochs": NUMBERS, "--steps": NUMBERS, "--samples": NUMBERS,
    "--features": NUMBERS, "--classes": NUMBERS, "--test-fraction": NUMBERS,
    "--eval-every": NUMBERS, "--check-every": NUMBERS, "--ranks-per-node": NUMBERS,
    "--channels": NUMBERS, "--comm-timeout": NUMBERS, "--stall-warn": NUMBERS,
    "--checkpoint-every": NUMBERS, "--keep-checkpoints": NUMBERS, "--layers": WIDTHS,
    "--straggler": st.one_of(TEXT, st.builds("{}:{}".format, NUMBERS, NUMBERS)),
    "--trace-steps": st.one_of(TEXT, st.builds("{}-{}".format, NUMBERS, NUMBERS)),
    "--inject": st.one_of(TEXT, st.builds(
        "kind={},rank={},step={},secs={}".format,
        st.sampled_from(["exception", "exit", "kill", "stop", "sleep", "nan", "boom"]),
        NUMBERS, NUMBERS, NUMBERS,
    )),
    "--dataset": st.sampled_from(["digits", "synthetic", "mnist", "fashion-mnist", "cifar"]),
    "--dtype": st.sampled_from(["float32", "float64", "float16"]),
    "--allreduce": st.sampled_from(["ring", "hierarchical-ring", "mpi", "nvls", "tree", "x"]),
    "--activation": st.sampled_from(["relu", "tanh", "sigmoid", "gelu"]),
    "--nonfinite": st.sampled_from(["stop", "skip", "ignore"]),
}  # fmt: skip
MIXES = st.lists(
    st.sampled_from(sorted(OPTIONS)).flatmap(lambda o: OPTIONS[o].map(lambda v: [o, str(v)])),
    max_size=8,
).map(lambda pairs: [x for pair in pairs for x in pair])


def check_as_a_rank_does(argv: list[str], world_size: int) -> Config:
    cfg = Config(**vars(parser(speak=False).parse_args(argv)))
    cfg.check_world(world_size)
    budget.check(cfg, world_size, world_size)
    if cfg.dataset == "digits":
        cfg.check_dataset(64, 10, 1438)
    return cfg


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(MIXES, st.integers(1, 5))
def test_every_mix_is_accepted_or_one_line(argv, world_size):
    try:
        cfg = check_as_a_rank_does(argv, world_size)
    except UsageError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))  # one line, whatever came in
        return
    except HelpShown:
        return
    # what was accepted is usable: finite rates, sane sizes
    assert math.isfinite(cfg.lr) and cfg.lr > 0 and math.isfinite(cfg.weight_decay)
    assert 0 <= cfg.seed < 2**32 and cfg.global_batch >= world_size
    assert cfg.comm_timeout >= 0 and cfg.stall_warn >= 0
    assert len(cfg.traced_steps) <= 10**6
