"""A backend that replays canned outputs, so most tests need no weights.

``mock`` reasons in one line per number of the question and answers with the last number
seen (when the prompt ends in an answer cue, at once);
``mock/<path.jsonl>`` replays rules from a file, one JSON object a line:
``{"match": "<regex searched in the rendered prompt>", "output": "<text>"}``; the first rule
whose pattern matches wins. ``?delay=<seconds>`` sleeps in every generate call; ``?log=<file>`` appends a line per
generated prompt to a file (to count calls across processes). In Python, pass ``respond=`` and ``scorer=`` callables.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .._errors import CotscopeError
from .base import Backend, Completion, GenerationParams, Prompt, cut_at_stop
from .registry import register_backend

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

Responder = Callable[[Prompt, GenerationParams], str]
Scorer = Callable[[Prompt, str], float]


def render_plain(prompt: Prompt) -> str:
    """A readable rendering of a prompt, used by the mock and in error messages."""
    parts = [f"<{m.role}>\n{m.content}" for m in prompt.messages]
    return "\n".join(parts) + "\n<assistant>\n" + prompt.prefix


def default_reply(prompt: Prompt, params: GenerationParams) -> str:
    found = _NUMBER.findall(render_plain(prompt))
    if prompt.prefix.rstrip().endswith(":") or "Do not explain" in prompt.messages[-1].content:
        return f"Answer: {found[-1] if found else 'unknown'}"
    question = _NUMBER.findall(prompt.messages[-1].content)
    given = len([line for line in prompt.prefix.splitlines() if line.strip()])
    steps = [f"The question mentions {n}." for n in question[given:]]
    return "\n".join(steps + [f"Answer: {found[-1] if found else 'unknown'}"])


class MockBackend(Backend):
    """Deterministic canned backend; counts calls so tests can check nothing is recomputed.

    Tokens are whitespace-separated words.
    """

    def __init__(
        self,
        respond: Responder | None = None,
        scorer: Scorer | None = None,
        rules: Sequence[tuple[str, str]] = (),
        delay: float = 0.0,
        log: str | None = None,
    ) -> None:
        self.respond = respond or default_reply
        self.scorer = scorer
        self.rules = [(re.compile(p, re.S), out) for p, out in rules]
        self.delay = delay  # seconds per generate call, to make kill-and-resume testable
        self.log = log  # a file that gets one line per generated prompt, across processes
        self.n_generate_calls = 0
        self.n_generated_prompts = 0
        self.n_scored_prompts = 0
        self.spec = "mock"

    def _reply(self, prompt: Prompt, params: GenerationParams) -> str:
        text = render_plain(prompt)
        for pattern, out in self.rules:
            if pattern.search(text):
                return out
        return self.respond(prompt, params)

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        self.n_generate_calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.log:
            with open(self.log, "a", encoding="utf-8") as fh:
                fh.write("".join(f"{len(render_plain(p))}\n" for p in prompts))
        self.n_generated_prompts += len(prompts)
        out = []
        for p in prompts:
            raw = self._reply(p, params)
            words = raw.split(" ")
            finish = "stop"
            if len(words) > params.max_new_tokens:
                raw, finish = " ".join(words[: params.max_new_tokens]), "length"
            raw, hit = cut_at_stop(raw, params.stop)
            out.append(
                Completion(
                    text=raw,
                    n_prompt_tokens=self.count_tokens(render_plain(p)),
                    n_generated_tokens=self.count_tokens(raw),
                    finish_reason="stop" if hit else finish,
                    stop_hit=hit,
                )
            )
        return out

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        self.n_scored_prompts += len(prompts)
        results = []
        for p, conts in zip(prompts, continuations, strict=True):
            if self.scorer is not None:
                results.append([float(self.scorer(p, c)) for c in conts])
                continue
            # Default: the candidate that starts the mock's own reply is likely, others are not.
            reply = self._reply(p, GenerationParams()).removeprefix("Answer:").strip()
            results.append([0.0 if reply.startswith(c.strip()) and c.strip() else -10.0 for c in conts])
        return results

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def load_rules(path: str) -> list[tuple[str, str]]:
    file = Path(path)
    if not file.is_file():
        raise CotscopeError(f"mock rules file not found: {path}")
    rules = []
    for lineno, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            rules.append((str(obj["match"]), str(obj["output"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CotscopeError(f"{path}:{lineno}: bad mock rule ({exc}); want {{'match': ..., 'output': ...}}") from exc
    return rules


def _check_mock(rest: str, opts: dict[str, str]) -> None:
    unknown = set(opts) - {"delay", "log"}
    if unknown:
        raise CotscopeError(f"unknown options for mock: {sorted(unknown)}; known: delay, log")
    try:
        float(opts.get("delay", 0))
    except ValueError:
        raise CotscopeError(f"mock: option delay={opts['delay']!r}: expected a number of seconds") from None
    if rest and not Path(rest).is_file():
        raise CotscopeError(f"mock rules file not found: {rest}")


@register_backend("mock", check=_check_mock)
def _make_mock(rest: str, opts: dict[str, str]) -> Backend:
    _check_mock(rest, opts)
    return MockBackend(rules=load_rules(rest) if rest else (), delay=float(opts.get("delay", 0)), log=opts.get("log"))
