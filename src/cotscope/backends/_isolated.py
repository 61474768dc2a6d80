"""A provider in a process of its own, so that a native crash cannot take cotscope down.

An engine that runs native code (llama.cpp's kernels, a tokenizer, a CUDA kernel) can die of a
signal: a segmentation fault kills the process it runs in, with no exception and no record. An
`IsolatedBackend` builds its provider in a child process (a fresh interpreter, ``python -m
cotscope.backends._isolated``: nothing of the caller's threads or native state is inherited, and
the caller's own script is not imported again, as multiprocessing's ``spawn`` would) and sends it
every call over a socket. When the child dies,
the call raises `EngineDied`, naming the engine, the call and the signal; the caller's process
lives on, and what it has saved (an audit's finished samples) stays saved.

Calls are forwarded by name: every method the provider has (generate_each, score, encode,
render, count_tokens, ...) runs in the child; methods of `Backend` itself run here and call
those. Plain attributes (precision, n_ctx, ...) are copied once after loading; the provider's
token and time counters (``n_*_tokens``, ``n_*_steps``, ``n_*_ms``) are kept here and advanced by what each call
added in the child, so a caller may reset them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from .._errors import CotscopeError, EngineDied, load_module
from .base import Backend

_PLAIN = (str, int, float, bool, type(None))


def _counters(backend) -> dict[str, int]:
    return {k: v for k, v in vars(backend).items() if k.startswith("n_") and k.endswith(("_tokens", "_steps", "_ms")) and isinstance(v, int)}


def _plain(backend) -> dict[str, Any]:
    out = {k: v for k, v in vars(backend).items() if not k.startswith("_") and isinstance(v, _PLAIN)}
    for k, v in vars(backend).items():  # small dicts of plain values (template_kwargs)
        if not k.startswith("_") and isinstance(v, dict) and all(isinstance(x, _PLAIN) for x in v.values()):
            out[k] = dict(v)
    return out


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it crosses a pipe intact, else a CotscopeError that says what it was."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return CotscopeError(f"{type(exc).__name__}: {exc}")


def _serve(conn) -> None:
    """The child: build the provider, then answer calls until told to stop or the pipe closes."""
    import sys

    factory, args, path = conn.recv()
    sys.path[:] = path  # the caller's: its factory imports as it would there
    module, _, name = factory.partition(":")
    try:
        backend = getattr(load_module(module), name)(*args)
    except BaseException as exc:  # noqa: BLE001 - sent to the parent, which raises it
        conn.send(("err", _portable(exc)))
        return
    methods = sorted(n for n in dir(type(backend)) if not n.startswith("__") and callable(getattr(type(backend), n, None)))
    conn.send(("ok", _plain(backend), _counters(backend), methods))
    while True:
        try:
            method, a, kw = conn.recv()
        except (EOFError, OSError):
            break
        if method is None:
            break
        try:
            result = getattr(backend, method)(*a, **kw)
            conn.send(("ok", result, _counters(backend)))
        except BaseException as exc:  # noqa: BLE001 - the parent raises it
            conn.send(("err", _portable(exc)))
    try:
        backend.close()
    except Exception:  # noqa: BLE001 - the process ends anyway
        pass


def how_it_ended(exitcode: int | None) -> str:
    """How a process ended, in words: its signal, its exit status, or that it stopped answering."""
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


class IsolatedBackend(Backend):
    """A provider built by ``factory`` (``"module:function"``, called with ``args``) in a child
    process; a call after the child died raises `EngineDied`."""

    def __init__(self, label: str, factory: str, args: tuple = (), engine: str = "the engine") -> None:
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        self.label, self.engine = label, engine
        self._proc = None
        self._lock = threading.RLock()  # one call on the wire at a time, whichever thread asks
        mine, theirs = socket.socketpair()
        self._conn = Connection(mine.detach())
        fd = theirs.fileno()
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "cotscope.backends._isolated", str(fd)], pass_fds=(fd,), stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn.send((factory, args, list(sys.path)))
        reply = self._receive("loading the model")
        if reply[0] == "err":
            self.close()
            raise reply[1]
        for k, v in reply[1].items():
            setattr(self, k, v)
        self._seen = dict(reply[2])
        for k, v in self._seen.items():
            setattr(self, k, v)
        self._methods = frozenset(reply[3])
        import atexit

        atexit.register(self.close)

    def _receive(self, what: str):
        try:
            return self._conn.recv()
        except (EOFError, OSError, ConnectionError):
            pass
        try:
            code = self._proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - alive but silent: say so
            code = None
        raise EngineDied(f"{self.label}: {self.engine}'s process died while {what} ({how_it_ended(code)}); nothing of this call came back. "
                         "What finished before it is saved: run the same command again to resume (with the same --out), "
                         "after a change of build or options if the crash repeats.")

    def _call(self, method: str, *args, **kwargs):
        if not self.alive:
            raise EngineDied(f"{self.label}: {self.engine}'s process is not running ({how_it_ended(self._proc.poll() if self._proc else None)})")
        with self._lock:
            try:
                self._conn.send((method, args, kwargs))
            except (OSError, ConnectionError):
                pass  # the reply's absence says what happened
            reply = self._receive(f"running {method}")
            if reply[0] == "err":
                raise reply[1]
            for k, v in reply[2].items():  # counters: advance by what this call added
                setattr(self, k, getattr(self, k, 0) + v - self._seen.get(k, 0))
            self._seen = dict(reply[2])
            return reply[1]

    def __getattr__(self, name: str) -> Callable:
        if name.startswith("_") or name not in self.__dict__.get("_methods", ()):
            raise AttributeError(name)
        return lambda *a, **kw: self._call(name, *a, **kw)

    def generate(self, prompts, params):
        return self._call("generate", prompts, params)

    def generate_each(self, prompts, params):
        return self._call("generate_each", prompts, params)

    def score(self, prompts, continuations):
        return self._call("score", prompts, continuations)

    def count_tokens(self, text: str) -> int:
        return self._call("count_tokens", text)

    def forget(self) -> None:
        self._call("forget")

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self._conn.send((None, (), {}))
                proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - it will not stop: end it
                proc.kill()
                proc.wait(timeout=5)
        self._conn.close()


if __name__ == "__main__":  # the engine's process: python -m cotscope.backends._isolated <fd>
    import sys
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C is the caller's to handle: it closes this process
    _serve(Connection(int(sys.argv[1])))
