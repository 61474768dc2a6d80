"""llama.cpp's own server (``llama-server``) as the decoder of ``llamacpp/``.

``llama-server`` is llama.cpp's maintained server: parallel slots that decode side by side in
one batch (continuous batching), a prompt cache per slot and in host memory (``cache_prompt``),
llama.cpp's own sampler. With ``llamacpp/<file.gguf>?server=auto`` (the default) cotscope starts
one for the model when it finds the program (``$COTSCOPE_LLAMA_SERVER``, or ``llama-server`` on
``PATH``), sends it every generation row at once, ``parallel`` at a time, and stops it at the
end; ``server=off`` decodes in the engine's process, one row at a time; ``server=<path>`` names
the program. Scoring, tokenizing and the chat template stay in the engine's process (the server
reports no log-probability of a given token).

The server is a process of its own: when it dies, the call that was waiting on it raises
`EngineDied` naming the model, the server and its exit, and the run keeps what it saved.

Rows decoded beside other rows may round differently from a row decoded alone (llama.cpp's
kernels take other paths at other batch sizes); a greedy row's text can then differ after a
near tie. docs/performance.md gives what was measured.

Getting ``llama-server``: llama.cpp's release archives and package managers carry it (``brew
install llama.cpp``, the ``llama.cpp`` Debian package); ``bench/build_llama_server.sh`` builds it
from the llama.cpp source that llama-cpp-python's source package carries.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection

from collections.abc import Sequence

from .._errors import CotscopeError, EngineDied
from ._isolated import how_it_ended
from .base import Completion, GenerationParams, decoded_completion, row_seed

ENV = "COTSCOPE_LLAMA_SERVER"


def find_server(choice: str) -> str | None:
    """The ``llama-server`` program ``server=<choice>`` names: ``off`` none, ``auto`` the one
    ``$COTSCOPE_LLAMA_SERVER`` or ``PATH`` gives (None if neither does), else that path."""
    if choice == "off":
        return None
    if choice == "auto":
        named = os.environ.get(ENV, "").strip()
        if named.lower() == "off":
            return None
        return shutil.which(named) if named else shutil.which("llama-server")
    found = shutil.which(choice)
    if found is None:
        raise CotscopeError(f"llamacpp/: server={choice}: no such program (give the path of llama-server, auto or off)")
    return found


def _die_with_parent() -> None:
    """In the server's process before it starts: end it when the process that started it ends
    (Linux's PR_SET_PDEATHSIG), so that no server outlives a killed run."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: close() and atexit stop it
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """One ``llama-server`` for one GGUF file, on a free local port, for as long as it is open."""

    def __init__(self, program: str, model: str, *, parallel: int, n_ctx: int, threads: int, n_batch: int,
                 repack: bool, label: str, timeout_s: float = 300.0) -> None:
        self.label = label
        self.port = _free_port()
        self._log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)  # noqa: SIM115 - kept open
        # one KV pool of n_ctx cells that the slots share (--kv-unified): a slot takes what its row needs
        cmd = [program, "-m", model, "--host", "127.0.0.1", "--port", str(self.port), "--parallel", str(parallel),
               "--kv-unified", "--ctx-size", str(n_ctx), "--threads", str(threads), "--threads-batch", str(threads),
               "--batch-size", str(n_batch), "--ubatch-size", str(min(n_batch, 512)), "--no-webui", "--seed", "0"]
        if not repack:
            cmd.append("--no-repack")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="llama-server")
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                why, tail = how_it_ended(self.proc.returncode), self.log_tail()
                self.close()  # its log file and request threads
                raise EngineDied(f"{label}: llama-server did not start ({why}): {tail}")
            try:
                if self._request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.close()
                raise CotscopeError(f"{label}: llama-server did not answer within {timeout_s:.0f} s: {tail}")
            time.sleep(0.2)

    def log_tail(self, n: int = 600) -> str:
        if getattr(self, "_log", None) is None:
            return "(no log)"
        try:
            with open(self._log.name, "rb") as fh:
                fh.seek(max(0, os.path.getsize(self._log.name) - n))
                return fh.read().decode("utf-8", "replace").strip().replace("\n", " | ")
        except OSError:
            return "(no log)"

    def _request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = HTTPConnection("127.0.0.1", self.port, timeout=3600)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, ConnectionError) as exc:
            conn.close()
            self._local.conn = None
            raise OSError(str(exc)) from exc
        try:
            return resp.status, json.loads(data or b"{}")
        except json.JSONDecodeError:
            return resp.status, {"error": data[:300].decode("utf-8", "replace")}

    def complete(self, body: dict) -> dict:
        """One ``/completion`` request; a server that died meanwhile is `EngineDied`. A kept-alive
        connection the server closed while idle is opened again (the server lives on)."""
        for attempt in range(3):
            try:
                status, out = self._request("POST", "/completion", body)
                break
            except OSError as exc:
                if self.proc.poll() is None and attempt < 2:
                    continue
                try:
                    code = self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    code = None
                raise EngineDied(f"{self.label}: llama-server died while decoding ({how_it_ended(code)}; {exc}); nothing of this call came back. "
                                 "What finished before it is saved: run the same command again to resume (with the same --out); "
                                 f"?server=off decodes without it. Its log: {self.log_tail()}") from exc
        if status != 200:
            raise CotscopeError(f"{self.label}: llama-server refused a request (HTTP {status}): {out.get('error', out)}")
        return out

    def complete_all(self, bodies: list[dict]) -> list[dict]:
        """Every request at once, ``parallel`` in flight (the server's slots), results in order."""
        return list(self._pool.map(self.complete, bodies))


    def close(self) -> None:
        proc, self.proc = getattr(self, "proc", None), None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
            try:
                os.unlink(log.name)
            except OSError:
                pass
            self._log = None


def start(backend, program: str, path: str, got: dict, threads: int) -> tuple[LlamaServer, str]:
    """Start llama-server for `backend` (a `LlamaCppBackend`, options `got`) and probe it with a
    short batch of two rows; the server and how it decodes. Its repacked weights (llama.cpp's
    fast batched kernels) are tried first unless ``extra_bufts`` says otherwise: a build whose
    AMX kernel crashes on this CPU dies in the probe, and the server starts again without them."""
    probe = backend.encode("The quick brown fox jumps over the lazy dog. " * 8)[:64]
    body = {"prompt": probe, "n_predict": 4, "temperature": 0.0, "cache_prompt": False}
    tries = [got["extra_bufts"]] if got["extra_bufts"] is not None else [True, False]
    for i, on in enumerate(tries):
        server = None
        try:  # a crash in its warm-up kills it before it answers; one in the probe, in the probe
            server = LlamaServer(program, path, parallel=got["parallel"], n_ctx=got["n_ctx"], threads=threads, n_batch=got["n_batch"],
                                 repack=on, label=f"llamacpp/{path}")
            server.complete_all([body, {**body, "prompt": probe[:48]}])
        except CotscopeError:
            if server is not None:
                server.close()
            if i + 1 == len(tries):
                raise
            continue
        weights = "repacked weights" if on else "plain weights" + (": repacked ones crashed it on this CPU" if i else "")
        return server, f"llama-server ({got['parallel']} slots, {weights})"
    raise AssertionError("unreachable")


def generate(backend, all_ids: list[list[int]], params: Sequence[GenerationParams], keys) -> list[Completion]:
    """`backend`'s rows (token ids, with their sampling seeds `keys`) through its llama-server,
    all at once, in token order (rows that share a prefix reach the slots together); each row as
    the in-process decoder decodes it, by llama.cpp's sampler with the row's own seed."""
    bodies = {}
    for i in sorted(range(len(all_ids)), key=lambda i: all_ids[i]):
        q, ids = params[i], all_ids[i]
        budget = min(q.max_new_tokens, backend._room(ids))
        if budget <= 0:
            continue
        seed = row_seed(q, keys[i]) if q.temperature > 0 else 0
        bodies[i] = {"prompt": ids, "n_predict": budget, "temperature": max(q.temperature, 0.0), "top_k": 0, "top_p": q.top_p,
                     "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0, "seed": seed, "stop": [s for s in q.stop if s],
                     "cache_prompt": True, "return_tokens": True}
    got = dict(zip(bodies, backend.server.complete_all(list(bodies.values())), strict=True))
    out = []
    for i, ids in enumerate(all_ids):
        if i not in got:  # no room to decode
            out.append(Completion("", len(ids), 0, "length", stop_hit=False))
            continue
        r, q = got[i], params[i]
        kind = r.get("stop_type", "limit")
        text = r.get("content", "") + (r.get("stopping_word", "") if kind == "word" else "")
        n_new = len(r.get("tokens") or ()) or int(r.get("tokens_predicted", 0))
        timings = r.get("timings") or {}
        ran = int(timings.get("prompt_n", len(ids)))
        backend.n_prefill_tokens += ran
        backend.n_server_prompt_tokens += ran
        backend.n_server_prompt_ms += round(float(timings.get("prompt_ms", 0.0)))
        backend.n_server_decode_ms += round(float(timings.get("predicted_ms", 0.0)))
        backend.n_decode_row_steps += max(n_new - 1, 0)
        c = decoded_completion(text, n_new, q, kind in ("eos", "word"), len(ids), backend.count_tokens)
        backend.n_generated_tokens += c.n_generated_tokens
        out.append(c)
    return out
