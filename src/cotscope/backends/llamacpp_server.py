"""llama-cpp-python's OpenAI-compatible server with cotscope's llama.cpp load settings.

``python -m cotscope.backends.llamacpp_server --model m.gguf ...`` takes ``python -m
llama_cpp.server``'s arguments and runs it with the weights loaded as `llamacpp/` loads them:
on a CPU with AMX, llama.cpp's repacked buffers off (its AMX kernel segfaulted there on the
first matrix product; see `llamacpp`). Point ``openai/<alias>@http://host:port/v1`` at it.
"""

from __future__ import annotations

import runpy

from .llamacpp import _model_params, default_extra_bufts

if __name__ == "__main__":
    with _model_params(use_extra_bufts=default_extra_bufts()):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
