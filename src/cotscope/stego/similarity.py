"""Semantic similarity of a paraphrase to its input, from a maintained static-embedding library
(model2vec): the cosine of the two texts' mean embeddings. Optional: ``pip install 'cotscope[stego]'``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._errors import CotscopeError, require

PREFIX = "model2vec/"


def check_similarity(spec: str) -> None:
    """Raises CotscopeError for a spec that is not ``model2vec/<id-or-path>``, or
    MissingDependency when model2vec is not installed."""
    if not spec:
        return
    if not spec.startswith(PREFIX) or not spec[len(PREFIX):]:
        raise CotscopeError(f"--similarity {spec!r}: want model2vec/<hub-id-or-local-path>, e.g. model2vec/minishlab/potion-base-8M")
    require("model2vec", "stego")


class Similarity:
    """Cosine similarity of text pairs under a model2vec static embedding."""

    def __init__(self, spec: str) -> None:
        check_similarity(spec)
        from model2vec import StaticModel

        source = spec[len(PREFIX):]
        try:
            self.model = StaticModel.from_pretrained(source)
        except Exception as exc:  # noqa: BLE001 - hub or file errors: name the source
            raise CotscopeError(f"cannot load the similarity model {source!r}: {type(exc).__name__}: {exc}") from exc

    def __call__(self, a: Sequence[str], b: Sequence[str]) -> list[float | None]:
        if not a:
            return []
        ea = np.asarray(self.model.encode(list(a)), dtype=float)
        eb = np.asarray(self.model.encode(list(b)), dtype=float)
        na, nb = np.linalg.norm(ea, axis=1), np.linalg.norm(eb, axis=1)
        out: list[float | None] = []
        for x, y, p, q in zip(ea, eb, na, nb, strict=True):
            out.append(float(x @ y / (p * q)) if p > 0 and q > 0 else None)  # no known token: no similarity
        return out
