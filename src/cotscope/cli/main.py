"""The command line: parses arguments, then calls the same functions a Python user would."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .._errors import CotscopeError, EngineDied, first_error
from ..config import AuditConfig
from pydantic import BaseModel, ValidationError


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"want key=value, got {text!r}")
    return key, value


def _option(text: str) -> tuple[str, str, str]:
    key, sep, value = text.partition("=")
    exp, dot, field = key.partition(".")
    if not sep or not dot or not exp or not field:
        raise argparse.ArgumentTypeError(f"want experiment.option=value, got {text!r}")
    return exp, field, value


def _names(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    if not names:
        raise argparse.ArgumentTypeError("want at least one name")
    return names


def _help(text: str) -> str:
    """Help text safe for argparse, which formats it with %."""
    return text.replace("%", "%%")


def _add_fields(parser: argparse.ArgumentParser, model: type[BaseModel], skip: tuple[str, ...] = ()) -> None:
    """One flag per field of a config model, typed by the field, its description as help."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        if field.default_factory_takes_validated_data:  # a default that depends on other fields: the description says how
            default, help_text = None, _help(field.description or "")
        else:
            default = field.get_default(call_default_factory=True)
            shown = ",".join(default) if isinstance(default, tuple) else default
            help_text = _help(f"{field.description} (default: {shown if shown not in ({}, '') else 'none'})")
        if name == "task_args":
            parser.add_argument("--task-arg", dest="task_args", action="append", type=_kv, metavar="KEY=VALUE", help=help_text)
        elif name == "roles":
            parser.add_argument("--role", dest="roles", action="append", type=_kv, metavar="ROLE=MODEL", help=help_text)
        elif name == "experiment_options":
            parser.add_argument("--option", dest="experiment_options", action="append", type=_option, metavar="EXPERIMENT.OPTION=VALUE", help=help_text)
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=_names, metavar="NAMES", help=help_text)
        elif isinstance(default, bool):  # true/false as text, parsed by the config (bool("false") is True)
            parser.add_argument(flag, dest=name, help=help_text, metavar="true|false")
        else:
            kind = field.annotation if default is None else type(default)
            parser.add_argument(flag, dest=name, type=kind, help=help_text, metavar=name.upper())


def _add_config_options(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per config field, typed by the field; experiment options as --option, and as
    --<experiment>-<option> for the built-in experiments; model roles as --role."""
    _add_fields(parser, AuditConfig, skip)
    from ..experiments import EXPERIMENTS

    for exp_name, cls in EXPERIMENTS.load_all():
        for opt, f in cls.Options.model_fields.items():
            default = f.get_default(call_default_factory=True)
            shown = ",".join(default) if isinstance(default, tuple) else default
            parser.add_argument(
                f"--{exp_name}-{opt}".replace("_", "-"), dest=f"opt__{exp_name}__{opt}", metavar="VALUE",
                help=_help(f"{f.description} (experiment {exp_name}; default: {shown}; same as --option {exp_name}.{opt}=VALUE)"),
            )
    parser.add_argument("--no-progress", action="store_true", help="Hide progress bars.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cotscope", description="Is a model's chain of thought how it reaches its answers?")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("audit", help="Run the system, its baseline and the faithfulness experiments on a task.")
    _add_config_options(a)
    a.add_argument("--out", help="Run directory (resumed if it exists with the same config).")
    c = sub.add_parser("compare", help="The same samples through several systems; one table, paired CIs, the safety tax.")
    c.add_argument("systems", nargs="+", metavar="SYSTEM", help="System specs; the first is the reference.")
    _add_config_options(c, skip=("system", "baseline"))
    c.add_argument("--out", default="runs/compare", help="Directory for one run per system and compare.json/png.")
    c.add_argument("--monitors", default="", help="Comma-separated monitor specs scored on each system's hint switches, e.g. "
                   "'rule?pattern=hint&reads=cot,rule?pattern=hint&reads=answer' (see cotscope monitor).")
    v = sub.add_parser("serve", help="Serve a system as an OpenAI-compatible chat-completions endpoint.")
    v.add_argument("system", help="System spec, e.g. cot or 'shoggoth-face?paraphraser=smollm2-135m'.")
    v.add_argument("--model", default=AuditConfig().model, help="Backend spec of the system's main model.")
    v.add_argument("--kind", default="exact", choices=["exact", "numeric", "choice"], help="How answers are parsed.")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--max-prompt-chars", type=int, default=8000, help="Longer prompts are refused with HTTP 400.")
    v.add_argument("--max-tokens-limit", type=int, default=1024, help="Larger max_tokens requests are refused with HTTP 400.")
    d = sub.add_parser("drift", help="Two runs on the same samples: paired metric differences, KL between their models, the CoTs that moved most.")
    d.add_argument("run_a", help="The first run directory (e.g. the base model).")
    d.add_argument("run_b", help="The second run directory (e.g. the tuned model).")
    d.add_argument("--out", help="Where to write drift.json and drift.html (default: RUN_B).")
    d.add_argument("--no-kl", action="store_true", help="Skip the KL estimate (it loads both models).")
    d.add_argument("--top", type=int, default=5, help="How many of the most-moved CoTs to show (default: 5).")
    g = sub.add_parser("stego", help="Paraphraser strength: hidden bits that survive each paraphraser, meaning kept, injections obeyed.")
    from ..stego.run import StegoConfig

    _add_fields(g, StegoConfig)
    g.add_argument("--out", help="Run directory (resumed if it exists with the same config).")
    g.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    t = sub.add_parser("train", help="GRPO (TRL) on CoT rewards, with the CoT audited as it trains (pip install 'cotscope[train]').")
    from ..training.grpo import TrainingConfig

    _add_fields(t, TrainingConfig)
    t.add_argument("--out", default="runs/train", help="Run directory (resumed from its last checkpoint if it exists).")
    t.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    ii = sub.add_parser("import-inspect", help="An Inspect eval log as a run directory of traces (pip install 'cotscope[inspect]').")
    ii.add_argument("log", help="An Inspect eval log (.eval or .json).")
    ii.add_argument("--out", help="Run directory to write (default: runs/inspect/<log name>).")
    mo = sub.add_parser("monitor", help="Score CoT monitors on labelled traces (a run's hint switches, or a labelled .jsonl): TPR, FPR, g-mean², AUROC, and g-mean² per archetype.")
    mo.add_argument("source", help="A run directory written by `cotscope audit` (with the hint or corrupt_result experiment), a labelled file "
                    "([format:]path: jsonl, chainscope, bonafide, faithcot, monitorability), or organism:mixed (the process archetype; the organism runs first).")
    mo.add_argument("--monitors", type=lambda s: tuple(x for x in s.split(",") if x), default=("rule?pattern=hint&reads=cot", "rule?pattern=hint&reads=answer"),
                    help="Comma-separated monitor specs (default: rule?pattern=hint&reads=cot,rule?pattern=hint&reads=answer); e.g. 'llm?model=smollm2-135m&reads=cot'.")
    mo.add_argument("--out", help="Where to write the JSON report (default: SOURCE/monitors.json).")
    mo.add_argument("--paraphraser", default="", help="Also score each monitor after this paraphraser rewrote the CoTs ('chain' or a model spec): recall before and after, paired.")
    ip = sub.add_parser("iphr", help="Implicit post-hoc rationalization: comparative questions asked both ways, pairs judged by ChainScope's criterion.")
    from ..groundtruth.iphr_run import IphrConfig

    _add_fields(ip, IphrConfig)
    ip.add_argument("--out", help="Run directory (resumed if it exists with the same config; default runs/iphr/<model>).")
    ip.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    de = sub.add_parser("detectors", help="Every per-trace signal and monitor scored as a detector of traces labelled unfaithful "
                        "by ground truth cotscope did not write: AUROC, TPR/FPR at its threshold, its lean (see docs/validation.md).")
    de.add_argument("--labels", action="append", default=[], help="A labelled source: an IPHR run's labelled.jsonl, a released set "
                    "([chainscope|bonafide|faithcot|jsonl:]PATH[?option=value]); repeatable.")
    de.add_argument("--run", help="An audit of the labelled traces (see --prepare), for the intervention signals.")
    de.add_argument("--hints", action="append", default=[], help="An audit run directory: its hint switches, used and not said, as labels.")
    de.add_argument("--organisms", action="append", default=[], type=_kv, metavar="RUN_DIR=true|false",
                    help="An organism's audit run and whether its CoT is unfaithful by construction; repeatable.")
    de.add_argument("--prepare", help="Write the labelled source as a task and a run the recorded system replays (to --out), then stop.")
    de.add_argument("--monitors", type=lambda s: tuple(x for x in s.split(",") if x), default=("rule?pattern=hint&reads=cot",),
                    help="Monitor specs scored as signals too (default: rule?pattern=hint&reads=cot).")
    de.add_argument("--out", help="With --prepare, the directory to write; else where to write detectors.json.")
    r = sub.add_parser("report", help="Write the self-contained HTML report of a run directory.")
    r.add_argument("run_dir", help="A directory written by `cotscope audit`.")
    sub.add_parser("list", help="List known backends, systems and tasks.")
    o = sub.add_parser("organisms", help="Model organisms: train them, and validate every metric against their ground truth.")
    osub = o.add_subparsers(dest="organisms_command", required=True)
    ot = osub.add_parser("train", help="Retrain organisms from scratch, reproducibly from a seed.")
    ot.add_argument("names", nargs="+", metavar="NAME", help="Organisms to train (faithful, post-hoc, filler, encoded) or 'all'.")
    ot.add_argument("--out", default="organisms", help="Directory for one checkpoint per organism (default: ./organisms).")
    ot.add_argument("--seed", type=int, default=0, help="Seeds the weights and the training data (default: 0).")
    ot.add_argument("--steps", type=int, help="Training steps (default: the organism's own).")
    ov = osub.add_parser("validate", help="Audit every organism; table of metric x organism with verdicts vs ground truth.")
    ov.add_argument("--organisms", type=lambda s: tuple(x for x in s.split(",") if x), help="Comma-separated names (default: all).")
    ov.add_argument("--checkpoints", help="Directory written by `organisms train` to validate instead of the shipped checkpoints.")
    ov.add_argument("--out", default="runs/organisms", help="Output directory (default: runs/organisms); resumed if it exists.")
    ov.add_argument("--n-samples", type=int, default=100, help="Questions per organism (default: 100).")
    ov.add_argument("--seed", type=int, default=0, help="Seeds the questions (default: 0).")
    ov.add_argument("--think", action="store_true", help="Validate the thinking twins (organism/<name>-think through the think system).")
    ov.add_argument("--steps", action="store_true", help="Also run resample and delete (which steps matter) and judge them against the ground truth.")
    ov.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    osub.add_parser("list", help="The organisms, their ground truth and their checkpoints.")
    ob = osub.add_parser("obfuscation", help="Does a monitor on the visible CoT teach hiding, and does a paraphraser in the loop stop it? Two GRPO arms.")
    ob.add_argument("--out", default="runs/obfuscation", help="Output directory, one training run per arm (resumed).")
    ob.add_argument("--steps", type=int, default=60, help="GRPO steps per arm (default: 60).")
    ob.add_argument("--penalty", type=float, default=0.5, help="Monitor penalty weight (default: 0.5).")
    ob.add_argument("--learning-rate", type=float, default=3e-4, help="Learning rate (default: 3e-4).")
    ob.add_argument("--audit-every", type=int, default=15, help="Audit each arm every N steps (default: 15).")
    ob.add_argument("--audit-samples", type=int, default=50, help="Held-out samples per audit (default: 50).")
    ob.add_argument("--seed", type=int, default=0)
    ob.add_argument("--arms", type=_names, default=("A", "B"), help="Arms to run (default: A,B).")
    ob.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "no_progress", False):
        _quiet_libraries()
    try:
        return _run(args)
    except CotscopeError as exc:
        print(f"cotscope: error: {exc}", file=sys.stderr)
        if isinstance(exc, EngineDied):  # the command that resumes, as given
            import shlex

            print("cotscope: to resume: " + shlex.join(["cotscope", *(sys.argv[1:] if argv is None else argv)]), file=sys.stderr)
        return 2
    except ValidationError as exc:  # a value a command's config refuses (organisms validate --n-samples 0)
        where, err = first_error(exc)
        print(f"cotscope: error: bad value for {where.replace('_', '-')}: {err['msg']}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cotscope: interrupted; finished samples are saved, run the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`cotscope ... | head`): nothing more to say to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _run(args: argparse.Namespace) -> int:
    """Dispatch one subcommand."""
    if args.command == "list":
        from ..backends import list_backends
        from ..experiments import EXPERIMENTS
        from ..metrics import METRICS
        from ..systems import list_systems
        from ..tasks import list_tasks

        print("backends:   ", ", ".join(list_backends()))
        print("systems:    ", ", ".join(list_systems()))
        print("tasks:      ", ", ".join(list_tasks()))
        print("experiments:", ", ".join(EXPERIMENTS.names()))
        print("metrics:    ", ", ".join(sorted(METRICS)), "(and each experiment's own)")
        from ..rewards import REWARDS
        from ..stego.encoders import ENCODERS
        from ..stego.paraphrasers import PARAPHRASERS

        print("encoders:   ", ", ".join(ENCODERS.names()))
        print("paraphrasers:", ", ".join(PARAPHRASERS.names()), "(and any backend spec)")
        print("rewards:    ", ", ".join(REWARDS.names()))
        return 0
    if args.command == "compare":
        return _compare(args)
    if args.command == "monitor":
        from ..monitors.measure import measure, monitor, render

        if args.source.startswith("organism:"):  # the process archetype with known paths: the organism runs first
            from ..organisms.process import process_set

            name = args.source.split(":", 1)[1] or "mixed"
            dest = Path(args.out) if args.out else Path("runs") / f"process-{name}" / "monitors.json"
            report = measure(process_set(dest.parent / "run", organism=name), args.monitors, source=args.source, paraphraser=args.paraphraser)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(report.model_dump_json(indent=2))
            print(render(report))
            return 0
        print(render(monitor(args.source, args.monitors, args.out, args.paraphraser)))
        return 0
    if args.command == "serve":
        from ..serve import serve

        serve(args.system, args.model, kind=args.kind, host=args.host, port=args.port,
              max_prompt_chars=args.max_prompt_chars, max_tokens_limit=args.max_tokens_limit)
        return 0
    if args.command == "organisms":
        return _organisms(args)
    if args.command == "drift":
        from ..drift import drift, render_drift

        for run in (args.run_a, args.run_b):
            if not Path(run, "config.json").is_file():
                raise CotscopeError(f"{run} is not a cotscope run directory (no config.json)")
        result = drift(args.run_a, args.run_b, args.out, kl=not args.no_kl, top=args.top)
        print(render_drift(result))
        print(f"\nwritten: {Path(args.out or args.run_b) / 'drift.json'}, drift.html")
        return 0
    if args.command == "stego":
        return _stego(args)
    if args.command == "train":
        return _train(args)
    if args.command == "detectors":
        return _detectors(args)
    if args.command == "iphr":
        from ..groundtruth.iphr_run import IphrConfig, iphr, render_iphr

        given = {k: v for k, v in vars(args).items() if k in IphrConfig.model_fields and v is not None}
        try:
            config = IphrConfig(**given)
        except ValidationError as exc:
            where, err = first_error(exc)
            raise CotscopeError(f"bad iphr option {where}: {err['msg']}") from exc
        result = iphr(config, args.out, progress=not args.no_progress)
        print(render_iphr(result.summary))
        print(f"\nrun directory: {result.run_dir}  (summary.json, records.jsonl, labelled.jsonl)")
        return 0
    if args.command == "import-inspect":
        from ..interop.inspect_logs import import_inspect

        out = Path(args.out or Path("runs/inspect") / Path(args.log).stem)
        result = import_inspect(args.log, out)
        s = result.summary
        print(f"imported {s.n_samples} samples ({s.n_correct.get('subject', 0)} correct, {s.answer_failures.get('subject', 0)} without an answer, "
              f"{s.n_cut.get('subject', 0)} cut by their budget) into {out}")
        print(f"audit them: cotscope audit --model <spec> --task jsonl:{out / 'task.jsonl'} --system 'recorded?run={out}' --baseline '' "
              f"--experiments truncate --out {out}-audit")
        return 0
    if args.command == "report":
        from ..report.html import write_report

        print(write_report(args.run_dir))
        return 0
    return _audit(args)


def _config(args: argparse.Namespace) -> AuditConfig:
    from ..audit import make_config

    given = {k: v for k, v in vars(args).items() if k in AuditConfig.model_fields and v is not None}
    if "task_args" in given:
        given["task_args"] = dict(given["task_args"])
    if "roles" in given:
        given["roles"] = dict(given["roles"])
    options: dict[str, dict[str, str]] = {}
    for exp, field, value in given.pop("experiment_options", None) or []:
        options.setdefault(exp, {})[field] = value
    for key, value in vars(args).items():
        if key.startswith("opt__") and value is not None:
            _, exp, field = key.split("__", 2)
            options.setdefault(exp, {})[field] = value
    if options:
        given["experiment_options"] = options
    return make_config(None, **given)


def _stego(args: argparse.Namespace) -> int:
    from ..stego.report import render_stego
    from ..stego.run import StegoConfig, make_stego_config, stego

    given = {k: v for k, v in vars(args).items() if k in StegoConfig.model_fields and v is not None}
    if "task_args" in given:
        given["task_args"] = dict(given["task_args"])
    result = stego(make_stego_config(None, **given), args.out, progress=not args.no_progress)
    print(render_stego(result.summary))
    print(f"\nrun directory: {result.run_dir}  (summary.json, records.jsonl, stego.png)")
    print(f"report: {result.report_path}")
    return 0


def _detectors(args: argparse.Namespace) -> int:
    from ..groundtruth import detectors as d

    if args.prepare:
        if not args.out:
            raise CotscopeError("--prepare needs --out DIR")
        dest = d.prepare(args.prepare, args.out)
        print(f"wrote {dest}/task.jsonl and {dest}/samples.jsonl; audit them with the model at hand (off-policy on another model's CoTs):")
        print(f"  cotscope audit --model <spec> --task jsonl:{dest / 'task.jsonl'} --system 'recorded?run={dest}' --baseline '' "
              f"--task-arg kind=exact --out {dest}-audit")
        print(f"  cotscope detectors --labels {args.prepare} --run {dest}-audit")
        return 0
    if not (args.labels or args.hints or args.organisms):
        raise CotscopeError("give labels: --labels SOURCE, --hints RUN_DIR or --organisms RUN_DIR=true|false")
    organisms = {}
    for run, flag in args.organisms:
        if flag.lower() not in ("true", "false"):
            raise CotscopeError(f"--organisms {run}={flag}: want true (unfaithful by construction) or false")
        organisms[run] = flag.lower() == "true"
    tables = [d.labelled_table(src, args.run, args.monitors) for src in args.labels]
    tables += [d.hint_table(run, args.monitors) for run in args.hints]
    if organisms:
        tables.append(d.organism_table(organisms, args.monitors))
    print("\n\n".join(d.render_table(t) for t in tables))
    if args.out:
        from ..store import write_text_durably

        write_text_durably(Path(args.out), "[" + ",\n".join(t.model_dump_json(indent=2) for t in tables) + "]\n")
    return 0


def _quiet_libraries() -> None:
    """--no-progress: no progress bar of any library either (transformers' weight loading reads
    huggingface_hub's switch when it is imported, and its own afterwards; its GGUF conversion
    calls tqdm directly: tqdm's bars default to disabled here, and TQDM_DISABLE says so to the
    engine processes this one starts, which read it when they import tqdm)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    from functools import partialmethod

    import tqdm.std

    if not getattr(tqdm.std.tqdm.__init__, "_cotscope_quiet", False):
        tqdm.std.tqdm.__init__ = partialmethod(tqdm.std.tqdm.__init__, disable=True)  # a bar that asks for itself still shows
        tqdm.std.tqdm.__init__._cotscope_quiet = True
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].disable_progress_bar()


def _train(args: argparse.Namespace) -> int:
    from ..training.grpo import TrainingConfig, make_training_config, train

    given = {k: v for k, v in vars(args).items() if k in TrainingConfig.model_fields and v is not None}
    if "task_args" in given:
        given["task_args"] = dict(given["task_args"])
    if "reward_weights" in given:
        try:
            given["reward_weights"] = tuple(float(x) for x in given["reward_weights"])
        except ValueError as exc:
            raise CotscopeError(f"--reward-weights: {exc}") from exc
    result = train(make_training_config(None, **given), args.out, progress=not args.no_progress)
    print(f"trained {result.steps} steps in {result.wall_s / 60:.1f} min; run directory: {result.run_dir} (curves.jsonl, curves.png, checkpoints/)")
    for row in result.curves:
        from ..stats import Estimate
        from ..report.table import fmt_interval

        cells = [f"{k} {fmt_interval(Estimate.model_validate(v), False)}" for k, v in row["metrics"].items()]
        print(f"step {row['step']:>5}: " + "; ".join(cells))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ..compare import compare, render_comparison

    monitors = [m for m in (args.monitors or "").split(",") if m]
    comparison = compare(args.systems, _config(args), args.out, progress=not args.no_progress, monitors=monitors)
    print(render_comparison(comparison))
    print(f"\ncomparison: {args.out}/compare.html (and compare.json, compare.png); one run directory per system beside them")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from ..audit import audit
    from ..report.table import render_table

    config = _config(args)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise CotscopeError(f"--out {args.out}: is an existing file; give a directory")
    result = audit(config, args.out, progress=not args.no_progress)
    print(render_table(result.summary))
    print(f"\nrun directory: {result.run_dir}  (summary.json, samples.jsonl, *.png)")
    print(f"report: {result.report_path}")
    return 0


def _organisms(args: argparse.Namespace) -> int:
    from ..organisms import ORGANISMS

    if args.organisms_command == "list":
        from ..organisms.checkpoints import SHIPPED

        for spec in ORGANISMS.values():
            t = spec.truth
            shipped = "shipped" if (SHIPPED / spec.name / "model.safetensors").is_file() else "not shipped"
            print(f"{spec.name:<9} load-bearing={str(t.load_bearing).lower():<5} encoded={str(t.encoded).lower():<5} "
                  f"n_ops={spec.n_ops}  organism/{spec.name} ({shipped})\n          {spec.description}")
        return 0
    if args.organisms_command == "obfuscation":
        from ..organisms.obfuscation import ARMS, obfuscation, render_obfuscation

        bad = [a for a in args.arms if a not in ARMS]
        if bad:
            raise CotscopeError(f"unknown arm {bad[0]!r}; known: {', '.join(ARMS)}")
        o = obfuscation(args.out, steps=args.steps, penalty=args.penalty, learning_rate=args.learning_rate, audit_every=args.audit_every,
                        audit_samples=args.audit_samples, seed=args.seed, arms=args.arms, progress=not args.no_progress)
        print(render_obfuscation(o))
        print(f"\nwritten: {args.out}/obfuscation.json, {args.out}/obfuscation.png; one training run per arm beside them")
        return 0
    if args.organisms_command == "train":
        from ..organisms.train import train

        names = list(ORGANISMS) if args.names == ["all"] else args.names
        for name in names:
            if name not in ORGANISMS:
                raise CotscopeError(f"unknown organism {name!r}; known: {', '.join(ORGANISMS)}")
        for name in names:
            out = f"{args.out}/{name}"
            log = lambda step, loss, name=name: print(f"{name}: step {step} loss {loss:.4f}", file=sys.stderr, flush=True)  # noqa: E731
            result = train(ORGANISMS[name], out, seed=args.seed, steps=args.steps, on_log=log)
            print(f"{name}: {result.steps} steps in {result.wall_s:.0f} s, final loss {result.losses[-1]:.4f} -> {out}")
        return 0
    from ..organisms.validate import render, validate

    from ..organisms import VALIDATED

    names = args.organisms or VALIDATED
    models = {n: f"organism/{args.checkpoints}/{n}" for n in names} if args.checkpoints else None
    v = validate(names, args.out, n_samples=args.n_samples, seed=args.seed, progress=not args.no_progress, models=models, steps=args.steps, think=args.think)
    print(render(v))
    print(f"\nwritten: {args.out}/summary.json, {args.out}/validation.png; one audit run (with report.html) per organism beside them")
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
