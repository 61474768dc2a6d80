"""A stand-in for llama.cpp's ``llama-server``, for tests (plumbing: it speaks the server's
protocol, it is not llama.cpp's server). It takes the arguments cotscope passes (``-m``,
``--port``, ...), answers ``/health``, and answers ``/completion`` by decoding the given token
ids greedily (or by its sampler) with llama-cpp-python's ``Llama`` on the same GGUF, one row at
a time: content cut before the stop word, ``stop_type`` eos/word/limit, ``tokens``,
``timings``. ``FAKE_LLAMA_SERVER_DIE_AFTER=N``: it kills itself with SIGSEGV on the N+1-th
completion, as a native crash would; ``FAKE_LLAMA_SERVER_COUNT=<file>``: it appends a line to that
file for each completion it serves; ``FAKE_LLAMA_SERVER_AMX=1``: started without ``--no-repack`` it
kills itself with SIGSEGV before answering, as llama.cpp's native build did on a CPU with AMX."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model")
    ap.add_argument("--port", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ctx-size", type=int, default=4096)
    args, rest = ap.parse_known_args()
    if os.environ.get("FAKE_LLAMA_SERVER_AMX") == "1" and "--no-repack" not in rest:
        os.kill(os.getpid(), signal.SIGSEGV)
    import llama_cpp

    from cotscope.backends.llamacpp import _model_params

    with _model_params(use_extra_bufts=False):
        llm = llama_cpp.Llama(model_path=args.model, n_ctx=args.ctx_size, n_threads=1, verbose=False)
    lock = threading.Lock()
    served = [0]
    die_after = int(os.environ.get("FAKE_LLAMA_SERVER_DIE_AFTER", "-1"))

    def complete(body: dict) -> dict:
        if die_after >= 0 and served[0] >= die_after:
            os.kill(os.getpid(), signal.SIGSEGV)
        served[0] += 1
        if os.environ.get("FAKE_LLAMA_SERVER_COUNT"):
            with open(os.environ["FAKE_LLAMA_SERVER_COUNT"], "a") as fh:
                fh.write("1\n")
        ids, stops = list(body["prompt"]), body.get("stop", [])
        if body.get("temperature", 0) > 0:
            llm.set_seed(int(body.get("seed", 0)))
        new, kind, word = [], "limit", ""
        for tok in llm.generate(ids, top_k=0, top_p=body.get("top_p", 1.0), min_p=0.0, temp=body.get("temperature", 0.0), repeat_penalty=1.0):
            if llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), tok):
                new.append(tok)
                kind = "eos"
                break
            new.append(tok)
            text = llm.detokenize(new).decode("utf-8", "replace")
            hit = [s for s in stops if s in text]
            if hit:
                kind, word = "word", min(hit, key=text.index)
                break
            if len(new) >= body["n_predict"]:
                break
        text = llm.detokenize([t for t in new if not llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), t)]).decode("utf-8", "replace")
        if kind == "word":
            text = text[: text.index(word)]
        return {"content": text, "tokens": new, "stop_type": kind, "stopping_word": word, "tokens_predicted": len(new),
                "tokens_evaluated": len(ids), "timings": {"prompt_n": len(ids), "predicted_n": len(new)}}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _send(self, status: int, obj: dict) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send(200 if self.path == "/health" else 404, {"status": "ok"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/completion":
                self._send(404, {"error": "not found"})
                return
            with lock:
                out = complete(body)
            self._send(200, out)

    ThreadingHTTPServer.protocol_version = "HTTP/1.1"
    Handler.protocol_version = "HTTP/1.1"
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
