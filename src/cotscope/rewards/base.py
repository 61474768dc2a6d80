"""The reward registry, and what rewards share: splitting a completion into its CoT and its
answer, and asking the current policy for the answer it gives after a given CoT."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .._errors import CotscopeError
from .._options import parse_options, split_spec
from .._registry import Registry
from ..systems.prompts import ANSWER_CUE
from ..systems.thinking import THINK_CLOSE, THINK_OPEN, split_thinking


class Reward(Protocol):
    """TRL's reward signature; `__name__` names the column in TRL's logs."""

    __name__: str

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]: ...


class Answerer(Protocol):
    """The current policy: the answer it gives right after each (prompt, CoT), and the answer
    it reaches when it writes on from each (prompt, CoT prefix)."""

    def __call__(self, prompts: Sequence[str], cots: Sequence[str]) -> list[str | None]: ...

    def continue_from(self, prompts: Sequence[str], prefixes: Sequence[str], max_new_tokens: int) -> list[str | None]: ...


RewardFactory = Callable[..., Reward]
REWARDS = Registry("reward", group="cotscope.rewards")


def register_reward(name: str) -> Callable[[RewardFactory], RewardFactory]:
    """Register a reward factory: its keyword options come from ``name?option=value``; it may
    also take ``answerer`` (the policy answering from a CoT) and ``kind`` (how answers grade)."""
    return REWARDS.register(name)


def _text(x: Any) -> str:
    """A completion or prompt as text: TRL passes strings, or chat messages (conversational data)."""
    if isinstance(x, str):
        return x
    if isinstance(x, list):
        return "\n".join(str(m.get("content", "")) for m in x if isinstance(m, dict))
    return str(x)


def split_completion(completion: Any) -> tuple[str, str | None]:
    """(CoT, answer text) of a completion: the CoT is everything before the first answer cue
    and the answer is the rest of that line (what follows is not part of the completion's
    answer: a model that does not stop there writes on); without a cue the answer is None
    and the whole text is CoT. A thinking completion (a ``<think>`` block, opened by it or by
    the template's generation prompt, closed by ``</think>``): the CoT is the thinking, and the
    answer is read after the block; a block that never closes is all CoT, with no answer."""
    text = _text(completion)
    if THINK_CLOSE in text or text.lstrip().startswith(THINK_OPEN):
        split = split_thinking(text, THINK_OPEN, THINK_CLOSE)
        if not split.closed:
            return split.thinking, None
        _, cue, tail = split.after.partition(ANSWER_CUE)
        answer = (tail if cue else split.after).strip()
        return split.thinking, answer.splitlines()[0].strip() if answer else ""
    head, cue, tail = text.partition(ANSWER_CUE)
    if not cue:
        return text.strip(), None
    return head.strip(), tail.strip().splitlines()[0].strip() if tail.strip() else ""


def reward_factory(spec: str) -> tuple[RewardFactory, dict[str, Any]]:
    name, opts = split_spec(spec, "reward")
    factory = REWARDS.lookup(name)
    return factory, parse_options(factory, opts, f"reward {name!r}", fixed=("answerer", "kind"))


def get_reward(spec: str, *, answerer: Answerer | None = None, kind: str = "exact") -> Reward:
    """Build a reward from ``name?option=value`` (or ``package.module:factory``).

    Args:
        answerer: The policy answering from a CoT, for rewards that need one.
        kind: How answers are graded (exact, numeric, choice).

    Raises:
        CotscopeError: for an unknown reward or option, or one that needs an answerer without one.
    """
    import inspect

    factory, opts = reward_factory(spec)
    params = inspect.signature(factory).parameters
    if "answerer" in params:
        if answerer is None:
            raise CotscopeError(f"reward {spec!r} needs the policy to answer from a CoT (use it inside `cotscope train`)")
        opts["answerer"] = answerer
    if "kind" in params:
        opts["kind"] = kind
    fn = factory(**opts)
    try:
        fn.__name__ = spec.split("?")[0].replace("-", "_").replace(":", "_").replace(".", "_")
    except (AttributeError, TypeError):
        pass
    return fn
