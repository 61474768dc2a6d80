"""Options given as text (``?n=4&select=vote``, ``--task-arg n_ops=2``) parsed against the typed
signature of what takes them, so that a wrong type or an unknown key is an error that names
the option, the value and what was expected, before any model loads."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, TypeAdapter, ValidationError

from ._errors import CotscopeError, first_error

M = TypeVar("M", bound=BaseModel)


def _signature_target(factory: Callable) -> Callable:
    return factory.__init__ if isinstance(factory, type) else factory


def parse_options(factory: Callable, opts: dict[str, str], what: str, fixed: Iterable[str] = (), also: Iterable[str] = ()) -> dict[str, Any]:
    """Each option converted to the type its parameter declares.

    Args:
        factory: A class or function whose keyword parameters are the options.
        opts: Option name -> text.
        what: What takes the options, for messages ("system 'best-of-n'").
        fixed: Parameters the caller fills itself; they are not options.
        also: Options the caller reads itself (taken out of `opts` before): named among the known.

    Raises:
        CotscopeError: for an unknown option or a value of the wrong type.
    """
    target = _signature_target(factory)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return dict(opts)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: take the text as it is
        hints = {}
    skip = {"self", "cls", *fixed}
    known = {n: p for n, p in params.items() if n not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    out: dict[str, Any] = {}
    for key, text in opts.items():
        if key not in known:
            if takes_any:
                out[key] = text
                continue
            names = ", ".join(sorted([*known, *also])) or "none"
            raise CotscopeError(f"{what}: unknown option {key!r}; known: {names}")
        hint = hints.get(key, Any)
        try:
            out[key] = TypeAdapter(hint).validate_python(text) if hint is not Any else text
        except ValidationError:
            raise CotscopeError(f"{what}: option {key}={text!r}: expected {_describe(hint)}") from None
    return out


def _describe(hint: Any) -> str:
    name = getattr(hint, "__name__", None)
    if name in ("int", "float", "bool", "str"):
        return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text"}[name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if args:
        return " or ".join(_describe(a) for a in args if a is not type(None))
    return str(hint).replace("typing.", "")


def split_spec(spec: str, what: str) -> tuple[str, dict[str, str]]:
    """``name?key=value&...`` -> (name, {key: value}), as text.

    Raises:
        CotscopeError: for a query that does not parse.
    """
    name, _, query = spec.partition("?")
    try:
        opts = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=True)) if query else {}
    except ValueError as exc:
        raise CotscopeError(f"bad options in {what} spec {spec!r}: {exc}") from exc
    return name, opts


def with_overrides(cls: type[M], base: M | None, overrides: dict[str, Any]) -> M:
    """A config of type `cls`: `base` (or the defaults) with `overrides` applied, validated.

    Raises:
        CotscopeError: naming the first field that does not validate.
    """
    try:
        # without a base, fields left out take their defaults, which may depend on the fields given
        return cls.model_validate({**base.model_dump(), **overrides} if base is not None else overrides)
    except ValidationError as exc:
        where, err = first_error(exc)
        raise CotscopeError(f"bad option {where or 'config'}: {err['msg']} (got {err.get('input')!r})") from exc
