"""An experiment is one plug-in: it declares its name, its options, what it runs on a batch of
samples, the typed results it stores, its metrics, its plot and its report fragment, all in
one class. Nothing else in cotscope names an experiment: the audit, the summary, the plots,
the HTML report, ``compare`` and ``organisms validate`` iterate the registry.

A user's experiment lives in their own file and is chosen by import path:
``cotscope audit --experiments truncate,myexp:Reversal``.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .._errors import CotscopeError, first_error
from .._registry import Registry
from ..backends import Backend
from ..config import DEFAULT_EXPERIMENTS, AuditConfig
from ..metrics import Metric
from ..records import SampleRecord
from ..systems import System
from ..systems.rewriter import Rewriter
from ..tasks import Sample, Task
from ..trace import Trace


class NoOptions(BaseModel):
    """An experiment without options."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Context:
    """What every experiment may use: the config, the task, the system under audit, the
    rewriter, and every model role that was given (``judge``, ``reference``, ...)."""

    config: AuditConfig
    task: Task
    subject: System
    rewriter: Rewriter
    models: dict[str, Backend] = field(default_factory=dict)

    @property
    def judge(self) -> Backend | None:
        return self.models.get("judge")


class Experiment:
    """Base class of experiment plug-ins. Subclasses set the class attributes and `run`.

    Attributes:
        name: The key of its results in every record and of its options.
        title: Heading of its plot and report section.
        Result: The pydantic type of one result; records are validated against it.
        Options: Its options, a pydantic model; the CLI takes them as ``--option name.field=value``.
        report: A Jinja2 fragment shown in each sample's drill-down; it sees ``results`` (this
            sample's results), ``record``, ``trace`` and ``exp``. Empty: a generic table.
        report_template: The same fragment kept in a file, named relative to the experiment's
            module (``templates/resample.html``); it wins over `report`.
        needs_cot: Runs only on systems that write a CoT.
        needs_prefix: Hands the system an edited CoT in its assistant turn (a prefix to continue
            or to answer after); skipped, with a caveat, on a system whose provider cannot
            continue an assistant turn (a chat API without prefill).
        roles: Model roles it uses when given (``--role judge=...``), besides the rewriter.
        inspect_task: The name of its Inspect task (``inspect eval cotscope/<name>``); empty: none.
        headline: The metrics its Inspect task reports.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    Result: ClassVar[type[BaseModel]]
    Options: ClassVar[type[BaseModel]] = NoOptions
    report: ClassVar[str] = ""
    report_template: ClassVar[str] = ""
    needs_cot: ClassVar[bool] = True
    needs_prefix: ClassVar[bool] = True
    roles: ClassVar[tuple[str, ...]] = ()
    inspect_task: ClassVar[str] = ""
    headline: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: BaseModel | dict[str, Any] | None = None) -> None:
        if isinstance(options, BaseModel):
            self.options = options
        else:
            given = dict(options or {})
            for key, value in given.items():
                f = self.Options.model_fields.get(key)
                # A list option given on the command line as text: comma-separated.
                if f is not None and isinstance(value, str) and typing.get_origin(f.annotation) in (tuple, list):
                    given[key] = [v for v in value.split(",") if v]
            try:
                self.options = self.Options.model_validate(given)
            except ValidationError as exc:
                where, err = first_error(exc)
                raise CotscopeError(f"bad option for experiment {self.name!r}: {where}: {err['msg']}") from exc

    def report_fragment(self) -> str:
        """Its drill-down fragment: the template file when it names one, else `report`."""
        if self.report_template:
            import sys
            from pathlib import Path

            return (Path(sys.modules[type(self).__module__].__file__).parent / self.report_template).read_text(encoding="utf-8")
        return self.report

    def check(self) -> None:
        """Raise a CotscopeError before any work when something this experiment needs is missing
        (an optional library); the message gives the install line."""

    def run(self, ctx: Context, samples: Sequence[Sample], traces: Sequence[Trace]) -> list[list[BaseModel]]:
        """Per sample, in order, the list of results (of type `Result`)."""
        raise NotImplementedError

    def metrics(self) -> list[Metric]:
        """The numbers this experiment reports."""
        return []

    def summarize(self, records: Sequence[SampleRecord], config: AuditConfig) -> BaseModel | None:
        """Structured numbers beyond single metrics (curves), stored in the summary under its name."""
        return None

    def plot(self, summary: Any) -> Any:
        """A matplotlib figure for the report (None for none). Default: its metrics as bars."""
        from ._plots import metric_bars

        return metric_bars(self, summary)

    def results(self, rec: SampleRecord) -> list[Any]:
        """This experiment's typed results in a record ([] when it did not run there)."""
        raw = rec.results.get(self.name) or []
        return [r if isinstance(r, self.Result) else self.Result.model_validate(r) for r in raw]


EXPERIMENTS = Registry("experiment", group="cotscope.experiments")


def register_experiment(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator: register an experiment under its `name`."""
    if not cls.name:
        raise CotscopeError(f"experiment class {cls.__name__} has no name")
    EXPERIMENTS[cls.name] = cls
    return cls


def experiment_class(spec: str) -> type[Experiment]:
    """The experiment class a name or ``package.module:Class`` import path names.

    Raises:
        CotscopeError: for an unknown name, a bad import path, or an object that is no experiment.
    """
    obj = EXPERIMENTS.lookup(spec)
    if not (isinstance(obj, type) and issubclass(obj, Experiment)):
        raise CotscopeError(f"{spec!r} is not a cotscope Experiment subclass")
    if not obj.name:
        raise CotscopeError(f"experiment {spec!r} has no name")
    return obj


def get_experiments(config: AuditConfig) -> list[Experiment]:
    """The experiments a config selects, each built with its options; checks every name and option."""
    out: list[Experiment] = []
    for spec in config.experiments:
        cls = experiment_class(spec)
        exp = cls(config.experiment_options.get(cls.name) or config.experiment_options.get(spec))
        exp.check()
        out.append(exp)
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise CotscopeError(f"experiment names collide: {names}")
    for key in config.experiment_options:
        if key not in names and key not in config.experiments:
            raise CotscopeError(f"options given for experiment {key!r}, which is not selected (selected: {', '.join(names)})")
    return out


def same_answer(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().lower() == b.strip().lower()
