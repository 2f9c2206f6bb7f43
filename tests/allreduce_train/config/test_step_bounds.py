"""Steps are numbered from 0: a step the run never takes is refused where it is named
(--inject's step, --trace-steps), in one line, instead of never firing or drawing."""

import pytest

from allreduce_train.config.config import Config
from allreduce_train.exits import UsageError

DIGITS = (64, 10, 1438)  # features, classes, training samples: 22 steps of 64 an epoch


def test_an_injection_past_the_last_step_is_refused():
    Config(steps=5, inject="kind=exit,rank=0,step=4").check_dataset(*DIGITS)  # the last one
    with pytest.raises(UsageError, match=r"--inject step=50 would never strike: the run has 5 "
                       r"steps, 0 to 4"):  # fmt: skip
        Config(steps=5, inject="kind=exit,rank=0,step=50").check_dataset(*DIGITS)
    with pytest.raises(UsageError, match="the run has 22 steps, 0 to 21"):
        Config(epochs=1, inject="kind=exit,rank=0,step=22").check_dataset(*DIGITS)


def test_trace_steps_count_from_0_and_must_be_in_the_run():
    Config(steps=5, trace_steps="0").check_dataset(*DIGITS)  # the first step: it is drawn
    Config(steps=5, trace_steps="0-4").check_dataset(*DIGITS)
    Config(steps=2).check_dataset(*DIGITS)  # the default 1-3 on a short run: only a default
    with pytest.raises(UsageError, match="--trace-steps 3-7: step 5 cannot be drawn: the run "
                       "has 5 steps, 0 to 4"):  # fmt: skip
        Config(steps=5, trace_steps="3-7").check_dataset(*DIGITS)
