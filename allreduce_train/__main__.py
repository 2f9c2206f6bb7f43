"""python -m allreduce_train: data-parallel training over MPI (run it under mpirun)."""

from __future__ import annotations

import os
import sys

# A rank's BLAS starts with one thread, and the backend then gives it its share of the node's
# cores (maths.backend: threadpool_limits): OpenBLAS otherwise starts a thread per core in
# every rank at import, each spinning a while, p ranks at once on the same cores. Measured (a
# 2-step run on 2 and 3 ranks over 2 cores, 8 alternated runs each): 9-13% less CPU, 7-11% less
# wall. Where the user set a thread count, the pool starts as they set it.
if not {"OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"} & set(os.environ):
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402

from . import exits
from .comm import (
    MpiTransport,
    World,
    check_launcher,
    cuda_aware,
    install_abort_hook,
    library_version,
)
from .config.config import Config
from .config.options import HelpShown, parser
from .exits import NonFinite, ReplicasDiverged, UsageError


def main(argv=None) -> int:
    install_abort_hook()
    # Overflow and NaN are caught where they matter, after the all-reduce on every rank at
    # once (Trainer.nonfinite), not as p copies of numpy's RuntimeWarning.
    np.seterr(all="ignore")
    world = World.create()
    try:
        cfg, dataset, backend, run_dir, state = setup(world, argv)
    except HelpShown:
        return 0
    except UsageError as exc:
        world.log(f"allreduce_train: error: {exc}")
        return exc.code
    from .run.lifecycle import Interrupted, run
    from .run.outputs import OutputError

    try:
        transport = MpiTransport(world)
        run(
            cfg,
            world,
            role(cfg, world, backend, dataset, state, transport),
            run_dir,
            resumed(state),
        )
    except Interrupted as exc:  # every rank, after the same step: they agreed on it
        world.log(f"allreduce_train: {exc}")
        return exc.code
    except ReplicasDiverged as exc:  # raised on every rank at once: they compared together
        world.log(f"allreduce_train: error: {exc}")
        return exits.DIVERGED
    except OutputError as exc:
        world.log(f"allreduce_train: error: {exc}")
        return exits.OUTPUT
    except NonFinite as exc:  # also every rank at once: the averaged gradient is the same
        world.log(f"allreduce_train: error: {exc}")
        return exits.NONFINITE
    return 0


def role(cfg, world: World, backend, dataset, state, transport):
    """This rank's role in the run over `transport`: a sync Trainer, or a Downpour replica or
    server."""
    if cfg.mode == "async":
        from .downpour.role import AsyncRole

        return AsyncRole(cfg, world, backend, dataset, transport, state)
    from .sync.role import SyncRole
    from .sync.trainer import Trainer

    trainer = Trainer(cfg, world, backend, dataset, transport)
    if state is not None:
        trainer.restore(state)
    return SyncRole(trainer)


def resumed(state: dict | None) -> dict | None:
    """What config.json says of the checkpoint a run resumed from."""
    if state is None:
        return None
    more = {"replica_steps": state["replica_steps"]} if state["replica_steps"] else {}
    return {"checkpoint": state["path"], "step": state["step"], **more}


def setup(world: World, argv):
    """Parse, validate and load on every rank; any rank's error becomes every rank's."""
    from netsim import algorithms
    from netsim.errors import InputError
    from netsim.record import rundir

    from .config import budget
    from .exchange import autoselect, buckets, factory
    from .maths import backend, data
    from .run import checkpoint

    launcher = check_launcher(world.world_size)
    error = None if launcher is None else (exits.USAGE, launcher)
    cfg = dataset = dev = state = None
    if error is None:
        try:
            args = vars(parser(speak=world.is_root).parse_args(argv))
            if args["resume"]:  # its settings, from its newest checkpoint (on every rank)
                state = checkpoint.latest(args["resume"])
                defaults = vars(parser(speak=False).parse_args([]))
                args = checkpoint.resumed_config(state["config"], args, defaults, state["layers"])
            cfg = Config(**args)
            cfg.check_world(world.world_size)
            if state is not None and cfg.mode == "async":  # where each replica stood
                replicas = cfg.replicas_of(world.world_size)
                checkpoint.check_async(state, cfg.resume, replicas, world.world_size)
            # An algorithm refuses a layout it cannot run (a hierarchical ring on nodes of
            # unequal size) here, where the ranks agree on errors, not inside the run.
            nodes = world.node_of_rank(cfg.ranks_per_node)
            try:  # (an async run has no all-reduce: its replicas' slot is ignored)
                if cfg.allreduce != "auto":  # auto only picks what this layout can run
                    algorithms.get(cfg.allreduce).schedule(world.world_size, 0, node_of_rank=nodes)
            except InputError as exc:
                raise UsageError(f"--allreduce {cfg.allreduce}: {exc}") from None
            budget.check(cfg, world.world_size, world.local_size)  # before anything is made
            dev = backend.select(cfg.device, world.local_rank, world.local_size)
            if cfg.allreduce != "auto":
                factory.check_allreduce(dev, algorithms.get(cfg.allreduce), world.local_size)
            if cfg.cuda_aware_mpi:
                algorithm = algorithms.get(cfg.allreduce if cfg.allreduce != "auto" else "ring")
                factory.check_cuda_aware(dev, algorithm, cuda_aware(), library_version())
            factory.check_transport(cfg, dev)
            dataset = data.load(
                cfg.dataset,
                seed=cfg.seed,
                data_dir=cfg.data_dir,
                samples=cfg.samples,
                features=cfg.features,
                classes=cfg.classes,
                test_fraction=cfg.test_fraction,
            )
            cfg.check_dataset(dataset.nfeatures, dataset.nclasses, len(dataset.y_train))
            if state is not None:
                total = cfg.steps or cfg.epochs * (len(dataset.y_train) // cfg.global_batch)
                if state["step"] >= total:
                    raise checkpoint.CheckpointError(
                        f"--resume {cfg.resume}: its checkpoint has all {state['step']} steps "
                        f"already; ask for more with --steps or --epochs"
                    )
        except UsageError as exc:
            error = (exc.code, str(exc))
    error = world.agree_on_error(error)
    if error is None:  # MPMD launches can give ranks different arguments, or different data
        layout = {**cfg.to_dict(), "data (features, classes, training samples)": (
            dataset.nfeatures, dataset.nclasses, len(dataset.y_train))}  # fmt: skip
        layout["layers"] = cfg.widths_for(dataset.nfeatures, dataset.nclasses)
        layout["checkpoint step"] = None if state is None else state["step"]  # one file for all
        differ = disagreement(world.allgather(layout))
        error = None if differ is None else (exits.USAGE, differ)
    if error is not None:
        raise agreed(*error)
    widths = cfg.widths_for(dataset.nfeatures, dataset.nclasses)
    nodes = world.node_of_rank(cfg.ranks_per_node)
    cfg = buckets.resolve(cfg, widths)
    cfg = autoselect.resolve(cfg, world, nodes, widths, on_gpu=dev.on_gpu)
    run_dir = None
    if world.is_root:
        try:
            run_dir = rundir.create(cfg.run_dir, world.world_size)
        except FileExistsError as exc:
            error = (exits.USAGE, str(exc))
        except OSError as exc:  # a read-only or full disk is the run directory's code (9)
            disk = exc.errno in exits.DISK_ERRORS
            error = (exits.OUTPUT, f"rank 0: {exc.filename}: {exc.strerror}") if disk else (
                exits.USAGE, f"--run-dir: {exc}")  # fmt: skip
    error, run_dir = world.bcast((error, run_dir))
    if error is not None:
        raise agreed(*error)
    return cfg, dataset, dev, run_dir, state


def disagreement(layouts: list[dict]) -> str | None:
    """The first setting on which some ranks differ from rank 0, and which ranks."""
    for key, mine in layouts[0].items():
        ranks = [r for r, other in enumerate(layouts) if other.get(key) != mine]
        if ranks:
            name = key if " " in key else "--" + key.replace("_", "-")
            theirs = layouts[ranks[0]].get(key)
            return (
                f"ranks were started with different arguments: {name} is {show(mine)} on rank "
                f"0 but {show(theirs)} on rank{'s' * (len(ranks) > 1)} {', '.join(map(str, ranks))}"
            )
    return None


def show(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return "not given" if value is None else str(value)


def agreed(code: int, message: str) -> UsageError:
    """The error every rank raises once they agreed on it, with the code it came with."""
    exc = UsageError(message)
    exc.code = code
    return exc


if __name__ == "__main__":
    sys.exit(main())
