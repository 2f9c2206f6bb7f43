"""python -m netsim report RUN_DIR: the traffic and synchronisation report of a run."""

from __future__ import annotations

import argparse
import sys

from . import report, rundir, traffic


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise rundir.RunDirError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m netsim", description="Reports on the traffic of collectives.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("report", help="traffic and synchronisation report of a run directory",
                       description="Prints who sent how much to whom and who waited for whom, per "
                                   "step, from the per-rank records of a run (finished or not).")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument("--plots", action="store_true",
                   help="also write PNG plots into RUN_DIR (needs the plot extra: matplotlib)")
    r.add_argument("--json", action="store_true", help="print the summary as JSON instead of text")
    return p


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
        config, records, summary = rundir.load(args.run_dir)
        merged = traffic.merge(config, records, complete=summary is not None)
    except (rundir.RunDirError, KeyError, TypeError, ValueError) as exc:
        message = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        print(f"netsim: error: {message}", file=sys.stderr)
        return 2
    figures = report.summarize(config, merged)
    if args.json:
        import json

        print(json.dumps(figures, indent=2))
    else:
        print(report.text(config, merged, figures))
    if args.plots:
        from . import plots

        try:
            for path in plots.write_plots(args.run_dir, config, merged):
                print(f"wrote {path}")
        except plots.PlotsUnavailable as exc:
            print(f"netsim: error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `python -m netsim report RUN | head`: the reader left, not an error
        sys.stderr.close()
        sys.exit(0)
