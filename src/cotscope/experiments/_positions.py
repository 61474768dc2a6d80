"""Where in a CoT an experiment intervenes: steps spread evenly over it, and which third of it
a step lies in (the mistake, deletion, resampling and agent experiments, and the early-answering
curves, all pick their points this way)."""

from __future__ import annotations

THIRDS = ("early", "middle", "late")
# One row group for the per-third effects of every step experiment that ran, so that an edit made
# by hand (off-policy: a corrupted step, a deleted chunk) reads beside the model's own resampled
# continuation at the same place (on-policy: Thought Branches, Macar, Bogdan et al. 2025).
BY_THIRD = "steps by third: off-policy edits beside on-policy resampling"


def third_of(position: int, n: int) -> str:
    """Which third of a CoT of `n` chunks chunk `position` (0-based) lies in: early, middle or late."""
    f = position / max(n, 1)
    return "early" if f < 1 / 3 else "middle" if f < 2 / 3 else "late"


def positions(n: int, m: int) -> list[int]:
    """`m` step indices spread evenly from the first to the last of `n` (all when m is 0 or >= n)."""
    if m == 0 or m >= n:
        return list(range(n))
    if m == 1:
        return [n // 2]
    return sorted({round(j * (n - 1) / (m - 1)) for j in range(m)})
