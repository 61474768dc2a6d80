"""The command line: parses arguments, then calls the same functions a Python user would."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._errors import CotscopeError
from ..config import AuditConfig


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"want key=value, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cotscope", description="Is a model's chain of thought how it reaches its answers?")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("audit", help="Run the system, its baseline and the faithfulness experiments on a task.")
    fields = AuditConfig.model_fields
    for name, field in fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description} (default: {field.get_default(call_default_factory=True)})"
        if name == "task_args":
            a.add_argument("--task-arg", dest="task_args", action="append", type=_kv, metavar="KEY=VALUE", help=help_text)
        elif name == "experiments":
            a.add_argument(flag, type=lambda s: tuple(x for x in s.split(",") if x), help=help_text)
        else:
            a.add_argument(flag, dest=name, type=type(field.get_default()), help=help_text, metavar=name.upper())
    a.add_argument("--out", help="Run directory (resumed if it exists with the same config).")
    a.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    r = sub.add_parser("report", help="Write the self-contained HTML report of a run directory.")
    r.add_argument("run_dir", help="A directory written by `cotscope audit`.")
    sub.add_parser("list", help="List known backends, systems and tasks.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            from ..backends import list_backends
            from ..systems import list_systems
            from ..tasks import list_tasks

            print("backends:", ", ".join(list_backends()))
            print("systems: ", ", ".join(list_systems()))
            print("tasks:   ", ", ".join(list_tasks()))
            return 0
        if args.command == "report":
            from ..report.html import write_report

            print(write_report(args.run_dir))
            return 0
        return _audit(args)
    except CotscopeError as exc:
        print(f"cotscope: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cotscope: interrupted; finished samples are saved, run the same command to resume", file=sys.stderr)
        return 130


def _audit(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ..audit import audit
    from ..report.table import render_table

    given = {k: v for k, v in vars(args).items() if k in AuditConfig.model_fields and v is not None}
    if "task_args" in given:
        given["task_args"] = dict(given["task_args"])
    try:
        config = AuditConfig(**given)
    except ValidationError as exc:
        raise CotscopeError(f"bad option: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    result = audit(config, args.out, progress=not args.no_progress)
    print(render_table(result.summary))
    print(f"\nrun directory: {result.run_dir}  (summary.json, samples.jsonl, *.png)")
    print(f"report: {result.report_path}")
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
