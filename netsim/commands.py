"""What each subcommand of `python -m netsim` does, given its parsed arguments (the syntax
is in __main__.py). The arguments end here: the packages are handed values, never the
Namespace. Each returns the exit code; bad input raises InputError. (It runs past 300 lines
as one function a subcommand, each short: splitting them would only scatter the one place
where arguments become values.)
"""

from __future__ import annotations

import json
import os
import sys

from netsim import algorithms, step_commands
from netsim.calibration import choose, emulated, fitting, measure
from netsim.cluster import topology
from netsim.errors import InputError
from netsim.record import rundir
from netsim.report import summary, text, traffic
from netsim.sim import downpour, predict_text
from netsim.sim import nccl as nccl_model
from netsim.sim import predict as prediction


def report(args) -> int:
    config, records, totals = rundir.load(args.run_dir)
    if "downpour" in config:  # an async run: replicas and parameter servers
        return _report_async(args, totals)
    merged = traffic.merge(config, records, complete=totals is not None)
    figures = summary.summarize(config, merged)
    network = rundir.network(args.run_dir)
    if network is not None:  # an emulated cluster: what its links carried, beside ours
        figures["network"] = text.wire(network, figures)
    print(rundir.dumps(figures, indent=2) if args.json else text.text(config, merged, figures))
    if args.plots:
        from netsim.report import plots

        for path in plots.write_plots(args.run_dir, config, merged):
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _report_async(args, totals) -> int:
    from netsim.report import downpour as async_report

    figures, lines = async_report.report(args.run_dir, totals)
    print(rundir.dumps(figures, indent=2) if args.json else lines)
    if args.plots:
        from netsim.report import downpour_plots

        config, merged, _ = async_report.load(args.run_dir)
        for path in downpour_plots.write_plots(args.run_dir, config, merged):
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def compare(args) -> int:
    from netsim.report import compare as comparison

    if args.plot and not args.plot.lower().endswith(".png"):
        raise InputError(f"--plot wants a .png file name, got {args.plot!r}")
    _check_output("--plot", args.plot)
    there = None
    if args.topology is not None:  # each run's time to the target on a modelled cluster
        topo = topology.load(args.topology)
        ranks = _ranks(args.ranks, topo, 1)

        scaled = args.compute == "scaled"

        def there(config, merged, records):
            return prediction.step_there(config, merged, records, topo, ranks, scaled)

    elif args.ranks is not None or args.compute != "here":
        raise InputError(
            "--ranks and --compute are the modelled cluster's: name it with --topology"
        )
    rows = comparison.compare(args.run_dirs, args.target, there)
    print(rundir.dumps(rows, indent=2) if args.json else comparison.text(rows))
    if args.plot:
        _write("--plot", args.plot, lambda tmp: comparison.plot(tmp, rows))
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)  # JSON stays JSON
    return 0


def predict(args) -> int:
    topo = topology.load(args.topology)
    ranks = _ranks(args.ranks, topo, 1)
    if step_commands.check(args):  # --workload: a training step, bucket by bucket
        return step_commands.predict(args, topo, ranks, _check_output, _write)
    _check_csv(args)
    own = (args.servers, args.fetch_every, args.push_every)  # downpour's options
    if args.algorithm == downpour.NAME or any(v is not None for v in own):
        return _downpour(args, topo, ranks)
    out = prediction.predict(
        topo,
        algorithms.get(args.algorithm),
        ranks,
        args.params,
        _itemsize(args),
        args.compute_ms / 1e3,
        channels=args.channels,
        chunks=args.chunks,
    )
    print(rundir.dumps(out, indent=2) if args.json else predict_text.prediction_text(out))
    _csv(args, [out])
    return 0


def _check_csv(args) -> None:
    """--csv names a .csv file that can be written (before anything is computed)."""
    if args.csv and not args.csv.lower().endswith(".csv"):
        raise InputError(f"--csv wants a .csv file name, got {args.csv!r}")
    _check_output("--csv", args.csv)


def _csv(args, rows: list[dict]) -> None:
    """predict's or sweep's rows as CSV into --csv, if given (its single-valued fields)."""
    if args.csv:
        _write_text("--csv", args.csv, predict_text.rows_csv(rows))
        print(f"wrote {args.csv}", file=sys.stderr if args.json else sys.stdout)


def _downpour(args, topo, ranks: int) -> int:
    """predict --algorithm downpour: asynchronous Downpour SGD, which has options of its own
    and not the all-reduce's."""
    if args.algorithm != downpour.NAME:
        raise InputError("--servers, --fetch-every and --push-every are for --algorithm downpour")
    if args.channels is not None or args.chunks != 1:
        raise InputError("--channels and --chunks are all-reduce options; downpour has neither")
    every = (args.fetch_every or 1, args.push_every or 1)
    out = downpour.predict(
        topo, ranks, args.servers or 1, args.params, _itemsize(args), args.compute_ms / 1e3, *every
    )
    print(rundir.dumps(out, indent=2) if args.json else downpour.text(out))
    _csv(args, [out])
    return 0


def sweep(args) -> int:
    topo = topology.load(args.topology)
    if args.plot and not args.plot.lower().endswith(".png"):
        raise InputError(f"--plot wants a .png file name, got {args.plot!r}")
    workload = step_commands.check(args)
    _check_output("--plot", args.plot)
    if not workload:
        _check_csv(args)
    if workload:  # --workload: its step at each rank count
        return step_commands.sweep(args, topo, _sizes(args.ranks, topo.gpus), _check_output, _write)
    names = [a.strip() for a in (args.algorithms or ",".join(algorithms.SCHEDULED)).split(",")]
    unknown = [a for a in names if a not in algorithms.SCHEDULED]
    if unknown:
        raise InputError(
            f"--algorithms: unknown {', '.join(unknown)} (choose from "
            f"{', '.join(algorithms.SCHEDULED)})"
        )
    sizes = _sizes(args.ranks, topo.gpus)
    rows = prediction.sweep(
        topo,
        [algorithms.get(a) for a in names],
        sizes,
        args.params,
        _itemsize(args),
        args.compute_ms / 1e3,
        channels=args.channels,
        chunks=args.chunks,
    )
    if args.json:
        print(rundir.dumps(rows, indent=2))
    else:
        print(
            predict_text.sweep_text(
                topo, rows, args.params, args.dtype or "float32", args.compute_ms
            )
        )
    if args.plot:
        _write("--plot", args.plot, lambda tmp: predict_text.sweep_plot(tmp, topo, rows))
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)  # JSON stays JSON
    _csv(args, rows)
    return 0


NCCL_SIZES = (8, 1 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20, 1 << 30, 8 << 30)


def nccl_sizes(args) -> tuple[int, ...]:
    """--sizes, or nccl-tests' sweep -b B -e E -f F (B, B*F, ... up to E), or the default."""
    sweep = (args.minbytes, args.maxbytes, args.stepfactor)
    if any(v is not None for v in sweep):
        if args.sizes is not None:
            raise InputError("--sizes or -b/-e/-f (nccl-tests' sweep), not both")
        low, high = args.minbytes or args.maxbytes, args.maxbytes or args.minbytes
        if low > high:
            raise InputError(f"-b {low} is above -e {high}: the sweep runs upwards")
        sizes, size = [], low
        while size <= high:
            sizes.append(size)
            size *= args.stepfactor or 2
        return tuple(sizes)
    return args.sizes if args.sizes is not None else NCCL_SIZES


def nccl(args) -> int:
    topo = topology.load(args.topology)
    ranks = _ranks(args.ranks, topo, 2)
    sizes = nccl_sizes(args)
    if args.csv and not args.csv.lower().endswith(".csv"):
        raise InputError(f"--csv wants a .csv file name, got {args.csv!r}")
    _check_output("--csv", args.csv)
    rows = []
    for size in sizes:
        found = nccl_model.estimates(
            topo, ranks, size, args.algorithm, args.protocol, args.channels, args.gpus_per_thread
        )
        rows += found if args.all else found[:1]
    if args.json:
        print(rundir.dumps([e.to_dict() for e in rows], indent=2))
    else:
        print(predict_text.nccl_text(topo, ranks, rows))
    if args.csv:
        _write_text("--csv", args.csv, predict_text.nccl_csv(rows))
        print(f"wrote {args.csv}", file=sys.stderr if args.json else sys.stdout)
    return 0


def replay(args) -> int:
    topo = topology.load(args.topology)
    config, records, totals = rundir.load(args.run_dir)
    transport = config["config"].get("transport", "mpi")
    note = None
    if transport == "shm":  # inside a node it read peers' memory: that path's rates
        topo, note = choose.shared_memory(topo, args.topology)
    network = emulated.network_of(args.run_dir)
    if network is not None and topo.nodes == 1 and "compute" in topo.spec:
        topo = emulated.topology(topo, network)  # the calibrated node, K times, on its links
    merged = traffic.merge(config, records, complete=totals is not None)
    asked = algorithms.get(args.algorithm) if args.algorithm else None
    # --ranks P and --overlap on|off, where the parser gives them: a bucketed run only
    ranks, overlap = getattr(args, "ranks", None), getattr(args, "overlap", None)
    ranks = None if ranks is None else _ranks(ranks, topo, 1)
    if prediction.bucketed(config) or prediction.compressed(config):
        out = prediction.replay_buckets(
            config,
            merged,
            records,
            topo,
            asked,
            ranks,
            None if overlap is None else overlap == "on",
        )
        out["transport"], out["notes"] = transport, [note] if note else []
    else:
        if ranks not in (None, config["world_size"]) or overlap is not None:
            raise InputError("--ranks and --overlap replay a run of more than one bucket")
        algorithm = asked or merged.algorithm
        out = prediction.replay(config, merged, topo, algorithm)
        out["transport"], out["notes"] = transport, [note] if note else []
        measured = summary.summarize(config, merged)
        out["measured"] = {k: measured.get(k) for k in prediction.COMPARED}
        # the error of a prediction only where it predicts what was measured
        out["errors"] = prediction.errors(measured, out) if algorithm is merged.algorithm else {}
    print(rundir.dumps(out, indent=2) if args.json else predict_text.replay_text(out))
    if note and not args.json:
        print(f"note: {note}")
    return 0


def _itemsize(args) -> int:
    return 8 if args.dtype == "float64" else 4  # float32 unless asked


def _ranks(ranks: int | None, topo, least: int) -> int:
    """--ranks of predict and nccl: every GPU of the topology by default."""
    if ranks is None:
        return topo.gpus
    if not least <= ranks <= topo.gpus:
        raise InputError(
            f"--ranks must be in {least}..{topo.gpus} (the topology's GPUs), got {ranks}"
        )
    return ranks


def _sizes(spec, gpus: int) -> list[int]:
    if spec is not None:
        sizes = _integers("--ranks", spec)
        if sizes[0] < 2 or sizes[-1] > gpus:
            raise InputError(f"--ranks must lie in 2..{gpus} (the topology's GPUs), got {spec}")
        return sizes
    return [2**k for k in range(1, gpus.bit_length()) if 2**k <= gpus] + (
        [gpus] if gpus & (gpus - 1) else []
    )


def _integers(option: str, spec: str) -> list[int]:
    """'2,3,4' -> [2, 3, 4], sorted, each once."""
    try:
        return sorted({int(v) for v in spec.split(",")})
    except ValueError:
        raise InputError(f"{option} wants comma-separated integers, got {spec!r}") from None


def _cannot(option: str, path: str, exc: OSError) -> InputError:
    return InputError(f"{option}: cannot write {path}: {exc.strerror or exc}")


def _check_output(option: str, path: str | None) -> None:
    """An output file can be written (tried before the work, not after it): its directory
    exists and takes a new file, and it is not a directory itself."""
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InputError(f"{option}: no such directory: {directory}")
    if os.path.isdir(path):
        raise InputError(f"{option}: {path} is a directory")
    _write(option, path, lambda tmp: None, keep=False)


def _write(option: str, path: str, write, keep: bool = True) -> None:
    """write(tmp) makes a file beside path, moved onto path once complete (keep) or removed:
    a failed or interrupted write leaves neither a partial file nor the temporary one."""
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.getpid()}-{name}")  # the same suffix: plots' format
    try:
        open(tmp, "x").close()
    except OSError as exc:
        raise _cannot(option, path, exc) from None
    try:
        write(tmp)
        if keep:
            os.replace(tmp, path)
    except OSError as exc:
        raise _cannot(option, path, exc) from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _write_text(option: str, path: str, content: str) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(content)

    _write(option, path, write)


def calibrate(args) -> int:
    if args.out == str(choose.cache_file()):  # the per-host cache: its directory is ours
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    for option, path in (("--out", args.out), ("--save-measurements", args.save_measurements)):
        _check_output(option, path)
    if args.from_measurements:
        try:
            with open(args.from_measurements) as f:
                measurements = json.load(f)
        except OSError as exc:
            raise InputError(
                f"--from-measurements: cannot read {args.from_measurements}: {exc.strerror}"
            ) from None
        except json.JSONDecodeError as exc:
            raise InputError(
                f"--from-measurements: {args.from_measurements} is not JSON: {exc}"
            ) from None
    else:
        ranks = _integers("--ranks", args.ranks)
        if ranks[0] < 2:
            raise InputError(
                f"--ranks must be at least 2 (the probe needs two ranks), got {args.ranks}"
            )
        log = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
        measurements = measure.measure(
            ranks, args.rounds, args.passes, args.pingpong_sizes, args.sizes, args.timeout_s, log
        )
        if args.save_measurements:
            _write_text("--save-measurements", args.save_measurements, rundir.dumps(measurements))
    result = fitting.fit(measurements, args.name)
    shared = fitting.fit_shared_memory(measurements, args.name)  # None: not measured
    _write_text("--out", args.out, fitting.toml_text(result, measurements))
    beside = choose.shm_file(args.out)  # the shared-memory path, kept beside the calibration
    if shared is not None:
        _write_text("--out", str(beside), fitting.toml_text(shared, measurements))
    elif beside.is_file():  # an older one would pass for this calibration's
        os.remove(beside)
    if args.json:
        print(
            rundir.dumps(
                {
                    "topology": result.spec,
                    "parameters": result.parameters,
                    "residuals": result.rows,
                    "median_abs_error": result.median_abs_error,
                    "machine": result.facts,
                    "disturbed_rounds": result.disturbed,
                    "out": args.out,
                    "shared_memory": None
                    if shared is None
                    else {
                        "topology": shared.spec,
                        "parameters": shared.parameters,
                        "residuals": shared.rows,
                        "median_abs_error": shared.median_abs_error,
                        "out": str(beside),
                    },
                },
                indent=2,
            )
        )
    else:
        if shared is not None:
            print(f"{fitting.text(result)}\n\n{fitting.text(shared)}\nwrote {args.out}, {beside}")
        else:
            print(f"{fitting.text(result)}\nwrote {args.out}")
    return 0
