"""Command line: overparam verify | reproduce | run | list | plot | data.

Heavy modules are imported inside the handlers so that `overparam --help` and `overparam verify`
start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _cmd_verify(args) -> int:
    from .theory import run_checks

    results = run_checks(names=args.only or None)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        import textwrap

        head = ("check", "what is checked", "error", "tolerance", "result")
        rows = [(r.name, textwrap.wrap(r.description, 72) or [""], f"{r.error:.3g}", f"{r.tolerance:.3g}",
                 "pass" if r.passed else "FAIL") for r in results]
        widths = [max([len(head[i])] + [max(map(len, row[i])) if i == 1 else len(row[i]) for row in rows])
                  for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        print(fmt.format(*head).rstrip())
        print(fmt.format(*("-" * w for w in widths)))
        for name, desc, err, tol, res in rows:
            print(fmt.format(name, desc[0], err, tol, res).rstrip())
            for line in desc[1:]:
                print(fmt.format("", line, "", "", "").rstrip())
        failed = [r.name for r in results if not r.passed]
        print(f"\n{len(results) - len(failed)} of {len(results)} checks passed"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 0 if all(r.passed for r in results) else 1


def _set_threads(args) -> None:
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)


def _cmd_reproduce(args) -> int:
    from .experiments import reproduce

    _set_threads(args)
    try:
        path = reproduce(quick=args.quick, data_dir=args.data_dir, out=args.out, device=args.device,
                         progress=not args.no_progress)
    except RuntimeError as exc:  # some experiments failed; the others' results and the report are kept
        print(f"overparam: error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _cmd_run(args) -> int:
    from .experiments import run_experiment

    _set_threads(args)
    run_dir = run_experiment(args.name, overrides=args.set or [], quick=args.quick, data_dir=args.data_dir,
                             out=args.out, device=args.device, progress=not args.no_progress)
    print(run_dir / "report.md")
    return 0


def _cmd_list(args) -> int:
    from .experiments import list_experiments

    for name, summary in list_experiments():
        print(f"{name:<12} {summary}")
    return 0


def _cmd_plot(args) -> int:
    from .plot import plot_run

    for path in plot_run(args.run_dir):
        print(path)
    return 0


def _cmd_data(args) -> int:
    if args.dataset == "gas-sensor":
        from .data import download_gas_sensor

        print(download_gas_sensor(args.dest))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="overparam",
        description="Implicit acceleration by overparameterization (Arora, Cohen & Hazan, ICML 2018).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("verify", help="check every theorem, claim and lemma of the appendix numerically")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these checks")
    p.set_defaults(func=_cmd_verify)

    def experiment_options(q):
        q.add_argument("--quick", action="store_true", help="short versions through the same code")
        q.add_argument("--data-dir", default=None,
                       help="directory of UCI gas sensor batch files (default: $OVERPARAM_DATA, else synthetic)")
        q.add_argument("--out", default="runs", help="output directory (default: runs)")
        q.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
        q.add_argument("--no-progress", action="store_true", help="no progress bars")
        q.add_argument("--threads", type=int, default=1,
                       help="torch CPU threads (default 1: the sweeps' small matmuls thrash with more "
                            "threads on a shared machine, up to 20x slower; on an idle machine 2 is ~2x faster)")

    p = sub.add_parser("reproduce", help="run every experiment of the paper, with figures and a report")
    experiment_options(p)
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("run", help="run one experiment")
    p.add_argument("name", help="experiment name (see `overparam list`)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (typed)")
    experiment_options(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("list", help="list the experiments")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("plot", help="redraw the figures of a run directory from its saved results")
    p.add_argument("run_dir")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("data", help="data sets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("download", help="download a data set")
    q.add_argument("dataset", choices=["gas-sensor"])
    q.add_argument("--dest", default="data/gas-sensor", help="destination directory (default: data/gas-sensor)")
    q.set_defaults(func=_cmd_data)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted: finished results are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, KeyError) as exc:  # OSError: files, network
        # Bad input is reported in one line; OVERPARAM_DEBUG=1 shows the traceback instead.
        if os.environ.get("OVERPARAM_DEBUG"):
            raise
        print(f"overparam: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
