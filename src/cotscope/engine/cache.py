"""A KV cache layer that grows in place: rows join and leave a running batch without reallocating."""

from __future__ import annotations

import functools

GROW_TOKENS = 64  # free columns a cache layer keeps for the tokens still to come, see grow_layer
@functools.cache
def grow_layer():
    """transformers' DynamicLayer, but its keys and values are views of buffers with room for
    `GROW_TOKENS` more columns. DynamicLayer concatenates on every update, so each decode step
    copies the whole KV of the batch (about a third of a 32-row step at 768 tokens) and the
    allocator is left with ever-larger holes; here a step writes its one column in place, and a
    buffer is reallocated once every `GROW_TOKENS` steps, or when the keys were replaced. The
    numbers are the same: attention reads the same values.

    The running decode batch's buffers (`running`) also keep room for more rows on a CPU, so
    rows that join are written into free rows and rows that leave are replaced from the end, and
    leading columns that only pad are cropped by moving the rest left: none of these
    reallocates."""
    import torch
    from transformers.cache_utils import DynamicLayer

    class GrowLayer(DynamicLayer):
        buf: tuple | None = None
        running: bool = False

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n, k = self.get_seq_length(), key_states.shape[0]
            need = n + key_states.shape[-2]
            if not self._inside() or need > self.buf[0].shape[-2]:
                spare = self.running and self.buf is not None and key_states.device.type == "cpu"  # as in _admit: spare rows only on a CPU
                rows = max(k, self.buf[0].shape[0]) if spare else k
                self.buf = tuple(self._room(old if n else None, new, need, rows)
                                 for old, new in ((self.keys, key_states), (self.values, value_states)))
            bk, bv = self.buf
            bk[:k, :, n:need] = key_states
            bv[:k, :, n:need] = value_states
            self.keys, self.values = bk[:k, :, :need], bv[:k, :, :need]
            return self.keys, self.values

        def _inside(self) -> bool:
            """Whether the keys are still the leading rows and columns of the buffer (nothing replaced them)."""
            b = self.buf[0] if self.buf is not None else None
            return (b is not None and self.get_seq_length() > 0 and self.keys.data_ptr() == b.data_ptr()
                    and self.keys.shape[0] <= b.shape[0] and self.keys.stride() == b.stride())

        @staticmethod
        def _room(old, new, need: int, rows: int):
            shape = list(new.shape)
            shape[0], shape[-2] = rows, need + GROW_TOKENS
            buf = new.new_empty(shape)
            if old is not None:
                buf[: old.shape[0], :, : old.shape[-2]] = old
            return buf

        def batch_select_indices(self, indices) -> None:
            """Keep the rows `indices` (in that order). When each row that moves comes from beyond
            the rows kept (a finished row's slot filled from the end, as the decode stream
            orders them), the moved rows are copied within the buffer: no new buffer."""
            if not self._inside():
                return super().batch_select_indices(indices)
            n, keep = self.get_seq_length(), indices.tolist()  # one read of a device tensor, not one per row
            moves = [(j, i) for j, i in enumerate(keep) if i != j]
            if len(set(keep)) == len(keep) and all(i >= len(keep) for _, i in moves):
                if moves:
                    dst, src = (torch.tensor(x, device=self.keys.device) for x in zip(*moves, strict=True))
                    with torch.inference_mode():  # the buffers were made in inference mode
                        for b in self.buf:
                            b[dst, :, :n] = b[src, :, :n]
            else:
                self.buf = tuple(b[indices] for b in self.buf)
            self.keys, self.values = self.buf[0][: len(keep), :, :n], self.buf[1][: len(keep), :, :n]

        def crop_left(self, first: int) -> None:
            """Drop the first `first` columns; in a buffer, the rest moves to its start."""
            if not self._inside():
                self.keys, self.values = self.keys[:, :, first:], self.values[:, :, first:]
                return
            r, n = self.keys.shape[0], self.get_seq_length()
            with torch.inference_mode():
                for b in self.buf:
                    b[:r, :, : n - first] = b[:r, :, first:n].clone()  # the ranges overlap
            self.keys, self.values = self.buf[0][:r, :, : n - first], self.buf[1][:r, :, : n - first]

        def pack(self, order) -> None:
            """Keep, for each row r, the columns `order[r]` (in that order) as its first ones."""
            r, w = order.shape
            pick = order[:, None, :, None].expand(r, self.keys.shape[1], w, self.keys.shape[-1])
            with torch.inference_mode():
                packed = [t.gather(2, pick) for t in (self.keys, self.values)]
                if not self._inside():
                    self.keys, self.values = packed
                    return
                for b, t in zip(self.buf, packed, strict=True):
                    b[:r, :, :w] = t
            self.keys, self.values = self.buf[0][:r, :, :w], self.buf[1][:r, :, :w]

        @classmethod
        def joined(cls, layers, width: int, rows: int = 0):
            """One layer holding the rows of `layers` one after another, each right-aligned in
            `width` columns (zeros on its left). When the first layer's buffer has the rows and
            columns, the others are written into it (its own rows moved right if `width` is
            wider than they are); otherwise into a new buffer of at least `rows` rows. Each
            part's KV is freed as it is copied."""
            total = sum(x.keys.shape[0] for x in layers)
            base = layers[0]
            if base._inside() and total <= base.buf[0].shape[0] and width <= base.buf[0].shape[-2]:
                out, at, rest = base, base.keys.shape[0], layers[1:]
            else:
                first = next(x for x in layers if x.keys is not None and x.keys.numel())
                out, at, rest = cls(), 0, layers
                out.lazy_initialization(first.keys, first.values)
                out.buf = tuple(ref.new_empty((max(rows, total), ref.shape[1], width + GROW_TOKENS, ref.shape[3]))
                                for ref in (first.keys, first.values))
            with torch.inference_mode():  # a batch's buffers were made in inference mode
                n = out.get_seq_length() if out is base else width
                if width > n:
                    for b in out.buf:
                        b[:at, :, width - n : width] = b[:at, :, :n].clone()  # the ranges overlap
                        b[:at, :, : width - n] = 0
                for x in rest:
                    r, w = x.keys.shape[0], x.keys.shape[-2]
                    for b, t in zip(out.buf, (x.keys, x.values), strict=True):
                        b[at : at + r, :, : width - w] = 0
                        b[at : at + r, :, width - w : width] = t
                    at += r
                    x.keys = x.values = None
                    x.buf = None
            out.running = True
            out.keys, out.values = out.buf[0][:total, :, :width], out.buf[1][:total, :, :width]
            return out

    return GrowLayer
