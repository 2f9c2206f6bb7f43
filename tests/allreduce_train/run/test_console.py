"""Rank 0's lines: steps numbered from 0 as every file numbers them, a resumed run that says
so and counts only its own steps, and the progress line within a long epoch."""

from allreduce_train.run import console


def test_the_epoch_line_names_the_step_as_the_files_do():
    line = console.epoch_line(21, 22, 1.0, 0.5, 0.9, 1000.0, 0.5)
    assert line.startswith("epoch   1  step     21  ")  # evaluations.jsonl's step 21


def totals(**more):
    return {"world_size": 2, "steps": 200, "wall_s": 1.0, "samples_per_s": 6400.0,
            "test_accuracy": 0.9, "test_loss": 0.3, "compute_s_by_rank": [0.1, 0.1],
            "comm_s_by_rank": [0.1, 0.1], "comm_share": 0.5, "weights_blake2b": "ab",
            **more}  # fmt: skip


def test_a_resumed_run_counts_only_its_own_steps():
    assert console.final_report(totals()).startswith("done: 200 steps in 1.00 s, 6,400")
    assert console.final_report(totals(steps_wall_s=0.75)).startswith(
        "done: 200 steps in 1.00 s (0.25 s of it evaluations and checkpoints), 6,400 samples/s"
    )
    head = console.final_report(totals(first_step=100)).splitlines()[0]
    assert head.startswith("done: 100 steps (steps 100 to 199, resumed after step 99) in 1.00 s")
    async_ = totals(mode="async", steps_by_rank=[1, 1, 1], servers=1, first_step=40)
    assert console.final_report(async_).startswith(
        "done: 160 batches (batches 40 to 199, resumed after batch 39) on 2 replicas"
    )


def test_a_resumed_run_says_so_in_its_banner():
    line = console.resumed_line({"checkpoint": "runs/a/checkpoints/step-00000099.npz",
                                 "step": 100}, 200)  # fmt: skip
    assert line == (
        "  resumed  from runs/a/checkpoints/step-00000099.npz (100 steps done, to step 99); "
        "this run takes steps 100 to 199"
    )


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_every_few_seconds_within_a_long_epoch_only():
    clock = Clock()
    progress = console.Progress(0, 300, 100, 64, every_s=2.5, clock=clock)
    lines = []
    for step in range(300):
        clock.now += 0.125  # 8 steps a second: 512 samples/s, an epoch of 12.5 s
        lines.append(progress.step(step))
    said = [(s, x) for s, x in enumerate(lines) if x]
    # every 2.5 s within each epoch, none at its end (the epoch's own line is there)
    assert [s for s, _ in said] == [19, 39, 59, 79, 119, 139, 159, 179, 219, 239, 259, 279]
    assert said[0][1] == (
        "  epoch   1  step     19 of 0-299        512 samples/s  epoch ends in 10 s, "
        "the run in 35 s"
    )
    assert said[-1][1].endswith("512 samples/s  the run ends in 2 s")  # the last epoch: one time
    quick = console.Progress(0, 300, 16, 64, every_s=2.5, clock=clock)  # epochs of 2 s
    for step in range(300):
        clock.now += 0.125
        assert quick.step(step) is None


def test_durations_read_as_a_person_says_them():
    assert [console.duration(s) for s in (4.6, 185, 7620)] == ["5 s", "3 min 05 s", "2 h 07 min"]


def test_no_terminal_no_progress():
    assert console.terminal() is False  # pytest captures the output: a pipe or a file
