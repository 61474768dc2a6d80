"""The engine's running decode batch: rows join and leave between steps (continuous batching)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from .draft import RowIndex
from .._errors import CotscopeError
from .cache import grow_layer
from .rows import FED_SLACK, eos_ids, greedy, fill_from_end, pad_left, Row, similar_lengths
from ..backends.base import Completion, GenerationParams, Prompt, common_prefix

DRAFT_SLOTS = 32  # tokens a check step runs (rows x (1 + draft)) up to which a row's draft may be longer than one, see _check
JOIN_TOKENS = 8  # prompt tokens past its stored KV up to which a row may join the decode stream's next check, see DecodeStream._joining
HOLE_SLACK = 32  # columns the decode stream's rows may leave unused (drafts not kept) before it packs them, see DecodeStream._crop


class DecodeStream:
    """Greedy decoding of a running batch that rows join and leave between steps.

    `add` queues a call's prompts (a ticket); `step` first admits queued rows while the batch
    has room (`batch_size`; their prompts run through the model together, sharing KV prefixes
    as in `generate`), then decodes one token for every row. A row that ends (an end token, a
    stop string, its budget) leaves at once; a ticket whose rows have all ended is returned
    with its completions. The text of a row is what `generate` would give it alone: rows are
    left-padded and masked, and positions follow each row's own tokens.

    Queued rows are admitted shortest budget first: an answer forced after a CoT or a continuation
    that has just ended runs on that text's KV while the store still holds it, instead of waiting
    behind long continuations that would push it out (docs/performance.md gives the measurement).

    A row whose params ask for an answer after it (`GenerationParams.then`) goes on, when it ends,
    as that answer's row: the answer's prompt starts with the tokens the row holds (or all but a
    few), so the row's KV is cut to the shared part and the rest of the prompt runs in the next
    check, as a row joining on stored KV does. Neither part goes to the store (nothing else reads
    a continuation), so continuations do not push out the KV that later calls read. An answer whose
    prompt shares too little with its row is queued as a row of its own, after the row's KV is
    stored. The ticket gets the generation's completion with the answer's attached.
    """

    def __init__(self, engine, row_of) -> None:  # an Engine, and the adapter's prompt -> Row
        self.b = engine
        self.row_of = row_of
        self.eos = eos_ids(engine.model, engine.tok)
        self.queue: list[tuple[int, int, Prompt, GenerationParams]] = []
        self.rows: list[_Live] = []
        self.tickets: dict[int, list[Completion | None]] = {}
        self.waiting: dict[tuple[int, int], tuple[Completion, Callable[[Completion], Completion]]] = {}  # (ticket, index) -> the generation's completion, how its answer reads
        self.n_tickets = 0
        self.cache = self.mask = self.last = None
        self.fed_width = 0  # columns the last forward added: a draft's check, or 1

    def add(self, prompts: Sequence[Prompt], params: Sequence[GenerationParams]) -> int:
        if any(q.temperature > 0 for q in params):
            raise CotscopeError("the decode stream is greedy; sampled generations go through generate")
        ticket, self.n_tickets = self.n_tickets, self.n_tickets + 1
        self.tickets[ticket] = [None] * len(prompts)
        self.queue += [(ticket, i, p, q) for i, (p, q) in enumerate(zip(prompts, params, strict=True))]
        self.queue.sort(key=lambda x: x[3].max_new_tokens)  # shortest first (stable), see the class's docstring
        return ticket

    def busy(self) -> bool:
        return bool(self.rows or self.queue)

    def reset(self) -> None:
        self.queue, self.rows, self.tickets, self.waiting = [], [], {}, {}
        self.cache = self.mask = self.last = None

    def step(self) -> list[tuple[int, list[Completion]]]:
        import torch

        b = self.b
        self._admit()
        if not self.rows:
            return []
        keep = self._take()
        if not keep:
            self.rows, self.cache = [], None
            self.mask = self.last = None
        else:
            if len(keep) < len(self.rows):
                order = fill_from_end(keep)
                sel = torch.tensor(order, device=b.model.device)
                self.cache.batch_select_indices(sel)
                self.mask, self.last = self.mask[sel], self.last[sel]
                self.rows = [self.rows[j] for j in order]
            self._crop()
            self._check()
        b.release()
        done = [t for t, outs in self.tickets.items() if all(o is not None for o in outs)]
        return [(t, self.tickets.pop(t)) for t in done]  # type: ignore[misc]

    def _take(self) -> list[int]:
        """Each row keeps the tokens the last forward chose for it: the one after its last token,
        then, while each matched its draft, the one after that draft token. Columns of draft
        tokens not kept are masked out. A row that ends gets its completion and leaves its KV
        in the store. Returns the rows that go on."""
        import torch

        b = self.b
        keep, ended, took, answering = [], [], [], []
        for j, row in enumerate(self.rows):
            if row.feed:  # joined this step on stored KV: its prompt's last tokens run in the next check
                keep.append(j)
                took.append(0)
                continue
            n = 0
            k = len(row.draft) + 1
            for i, (t, lp) in enumerate(zip(row.pred[:k], row.pred_lp[:k], strict=True)):
                row.new.append(t)
                row.new_lp.append(lp)
                n += 1
                stopped = b.ends(row.new, row.params.stop, row.tail, self.eos)
                if stopped or len(row.new) >= row.params.max_new_tokens:
                    done = b.completion(row.new, row.params, stopped, row.n_prompt, row.new_lp)
                    if row.params.then is not None and (row.ticket, row.index) not in self.waiting:
                        after = self._answer_after(row, done, len(self.rows))
                        if after is not None:  # the row goes on as its answer's
                            answering.append((j, *after))
                            keep.append(j)
                            break
                    else:
                        self._finish(row, done)
                    ended.append(j)
                    break
                if i == len(row.draft) or row.draft[i] != t:
                    keep.append(j)
                    break
            b.n_decode_row_steps += n
            b.n_draft_kept += n - 1
            # Columns of the last forward that hold (the row's text but its last token): those it
            # ran for certain (its last token, or the prompt tokens it joined with), then the kept drafts.
            took.append(row.fed - len(row.draft) + n - 1)
        if self.fed_width > 1:  # a draft was checked: the columns not kept are masked out
            width = self.mask.shape[1]
            base = width - self.fed_width
            cols = torch.arange(self.fed_width, device=self.mask.device)
            ends = torch.tensor([t if row.fed else self.fed_width for row, t in zip(self.rows, took, strict=True)], device=self.mask.device)
            self.mask = torch.cat([self.mask[:, :base], self.mask[:, base:] * (cols[None, :] < ends[:, None]).to(self.mask.dtype)], dim=1)
        self.last = self.last + torch.tensor(took, device=self.last.device)
        for j in ended:
            row = self.rows[j]
            if row.store:
                self._keep_kv(j, row)
            if b.drafter is not None:
                b.drafter.learn((row.ids or []) + row.new)
        for j, ids, m, params in answering:
            self._become_answer(j, ids, m, params)
        return keep

    def _finish(self, row: "_Live", done: Completion) -> None:
        """A row's completion in its ticket: an answer's attached to the generation it follows."""
        key = (row.ticket, row.index)
        if key in self.waiting:
            first, read = self.waiting.pop(key)
            done = replace(first, answer=read(done))
        self.tickets[row.ticket][row.index] = done

    def _answer_after(self, row: "_Live", done: Completion, n_rows: int):
        """When a row that asked for an answer after it ends: the answer's prompt (`Then.ask`).
        If it starts with all but a few of the tokens the row holds (the columns it adds cost
        the running rows at most what a row joining on stored KV may), (its tokens, how many
        the row keeps, its params) for `_become_answer`; else None, and the answer waits in the
        queue as a row of its own (the row's KV goes to the store as it leaves)."""
        b = self.b
        prompt, params, read = row.params.then.ask(done)  # type: ignore[union-attr]
        self.waiting[(row.ticket, row.index)] = (done, read)
        ids = self.row_of(prompt)
        m = min(common_prefix((row.ids or []) + row.new[:-1], ids.ids), ids.limit)
        if b.answer_in_row and row.ids is not None and self._may_feed(len(ids.ids) - m, n_rows):
            return ids.ids, m, params
        self.queue.append((row.ticket, row.index, prompt, params))
        self.queue.sort(key=lambda x: x[3].max_new_tokens)
        return None

    def _become_answer(self, j: int, ids: list[int], m: int, params: GenerationParams) -> None:
        """Row `j`, which has just ended, goes on as the answer after it: its KV cut to the first
        `m` tokens it holds (the answer prompt's), the prompt's other tokens run in the next check."""
        import torch

        row = self.rows[j]
        held = len(row.ids or []) + len(row.new) - 1  # the tokens the row's KV holds: all but its last, never fed
        drop = held - m
        if drop > 0:  # the row's last `drop` columns leave its attention
            cols = torch.nonzero(self.mask[j]).flatten()[-drop:]
            self.mask[j, cols] = 0
            self.last[j] -= drop
        self.b.n_prefill_tokens += len(ids) - m
        self.b.n_answers_in_row += 1
        self.rows[j] = _Live(row.ticket, row.index, params, len(ids), self.b.stop_tail(params.stop), ids=ids, feed=ids[m:], store=False)

    def _check(self) -> None:
        """One forward of every row's last token and its draft (see `draft`): the model's
        choice after each (`pred`), for `_take`."""
        import torch

        b = self.b
        dev = b.model.device
        runs = []  # per row: its last token and its draft, or the prompt tokens it joined with
        most = max(_most_draft(len(self.rows)), max(len(row.feed) for row in self.rows) - 1)  # columns a joining row takes anyway
        for row in self.rows:
            room = min(most, row.params.max_new_tokens - len(row.new) - 1)
            if row.feed:
                runs.append(row.feed)
            elif b.drafter is None or room <= 0:
                runs.append([row.new[-1]])
            else:
                runs.append([row.new[-1], *b.drafter.propose((row.ids or []) + row.new, row.grams, room)])
        width = max(len(r) for r in runs)
        ids = torch.tensor([r + [r[-1]] * (width - len(r)) for r in runs], device=dev)
        fed = torch.tensor([len(r) for r in runs], device=dev)
        cols = torch.arange(width, device=dev)
        self.mask = torch.cat([self.mask, (cols[None, :] < fed[:, None]).to(self.mask.dtype)], dim=1)
        with torch.inference_mode():
            out = b.model(input_ids=ids, attention_mask=self.mask, position_ids=self.last[:, None] + 1 + cols[None, :], cache=self.cache, use_cache=True)
        self.cache = out.cache
        pred, pred_lp = greedy(out.logits)
        for row, r, p, lp in zip(self.rows, runs, pred, pred_lp, strict=True):
            row.fed = len(r)
            if row.feed:
                row.pred, row.pred_lp, row.draft, row.feed = [p[len(r) - 1]], [lp[len(r) - 1]], [], []
                continue
            row.pred, row.pred_lp, row.draft = p[: len(r)], lp[: len(r)], r[1:]
            b.n_draft_tokens += len(r) - 1
        self.fed_width = width

    def _keep_kv(self, j: int, row: "_Live") -> None:
        """Put a finished row's KV in the backend's prefix store (`Engine.keep_generated`)."""
        if row.ids is None:
            return
        valid = self.mask[j].bool()
        self.b.keep_generated(row.ids + row.new[:-1], [(layer.keys[j][:, valid], layer.values[j][:, valid]) for layer in self.cache.layers])

    def _admit(self) -> None:
        """Run queued prompts through the model and add them to the running batch."""
        import torch

        b = self.b
        if not self.queue or len(self.rows) >= b.batch_size:
            return
        room = b.batch_size - len(self.rows)
        take, self.queue = self.queue[:room], self.queue[room:]
        rows = b.families([self.row_of(prompt) for _, _, prompt, _ in take])
        live = [_Live(ticket, index, params, len(row.ids), b.stop_tail(params.stop), ids=row.ids,
                      store=b.keeps(params) and (ticket, index) not in self.waiting)
                for (ticket, index, _, params), row in zip(take, rows, strict=True)]
        # Prompts that feed a similar number of tokens past their shared prefix run together
        # (little padding); then all join the batch at once.
        parts = [(self.cache, self.mask, self.last, None, self.rows)] if self.rows else []
        alone = b.alone(rows)
        joining = self._joining(rows, alone, live)
        if joining:
            parts.append(joining)
            alone = [i for i in alone if not live[i].feed]
        for cache, mask, last, logits, which in b.start_alone([rows[i] for i in alone], [not b.keeps(live[i].params) for i in alone]) if alone else ():
            parts.append((cache, mask, last, logits, [live[alone[j]] for j in which]))
        rest = sorted(set(range(len(rows))) - set(alone) - {i for i, row in enumerate(live) if row.feed})
        fed = dict(zip(rest, b.fed_lengths([rows[i] for i in rest]), strict=True))
        for chunk in similar_lengths(rest, lambda i: fed[i], b.padding_waste(), FED_SLACK):
            cache, ids, mask, lp = b.layout([rows[i] for i in chunk], list(range(len(chunk))))
            cache, logits, last = b.start(cache, ids, mask, lp)
            parts.append((cache, mask, last, logits, [live[i] for i in chunk]))
        for _, _, _, logits, rows_ in parts[1 if self.rows else 0 :]:
            if logits is None:  # rows joining on stored KV: their first token comes from the next check
                continue
            for row, t, lp in zip(rows_, *greedy(logits), strict=True):
                row.pred, row.pred_lp = [t], [lp]
        if len(parts) == 1:
            self.cache, self.mask, self.last, _, self.rows = parts[0]
            self.fed_width = 0
            for layer in self.cache.layers:
                layer.running = True  # the batch's buffers from now on (see grow_layer)
            return
        # Join: every part left-padded to the widest, then stacked along the batch.
        width = max(mask.shape[1] for _, mask, _, _, _ in parts)
        total = sum(len(rows_) for *_, rows_ in parts)
        room = min(b.batch_size, 2 * total) if b.on_cpu() else total  # spare rows cost a CPU nothing until written (large buffers are mapped lazily)
        merged = b.new_cache()
        grow = grow_layer()
        for layer_idx, layers in enumerate(zip(*(cache.layers for cache, *_ in parts), strict=True)):
            if all(type(x) is grow for x in layers):  # into the batch's buffer, or one copy into a new one
                merged.layers[layer_idx] = grow.joined(layers, width, rows=room)
                continue
            merged.update(torch.cat([pad_left(x.keys, width) for x in layers]), torch.cat([pad_left(x.values, width) for x in layers]), layer_idx)
            for x in layers:
                x.keys = x.values = None
        self.cache = merged
        self.mask = torch.cat([pad_left(mask, width) for _, mask, _, _, _ in parts])
        self.last = torch.cat([last for _, _, last, _, _ in parts])
        self.rows = [row for *_, rows_ in parts for row in rows_]

    def _joining(self, rows: Sequence[Row], alone: Sequence[int], live: Sequence["_Live"]):
        """Rows that join on the KV the store holds for all but a few tokens of their prompt (at
        most `JOIN_TOKENS`, and the columns they add past a check's usual width cost the running
        rows at most `FED_SLACK` slots): those tokens run in the next check, beside the running
        rows' tokens, instead of in a prompt pass of their own (the answer forced after a
        finished CoT feeds a few). A part for the join (cache, mask, last positions, no
        logits, rows), or None."""
        import torch

        b = self.b
        if not alone:
            return None
        n_rows = len(self.rows) + len(alone)
        parts = []
        for i in alone:
            m, hit = b.stored(rows[i].group, rows[i].ids)
            m = min(m, rows[i].limit)
            if hit is not None and self._may_feed(len(rows[i].ids) - m, n_rows):
                parts.append((i, m, hit))
        if not parts:
            return None
        wm = max(m for _, m, _ in parts)
        cache = b.stack_kv([(hit[1], m) for _, m, hit in parts], wm)
        mask = torch.zeros((len(parts), wm), dtype=torch.long)
        for r, (i, m, _) in enumerate(parts):
            mask[r, wm - m :] = 1
            live[i].feed = rows[i].ids[m:]
        b.n_prefill_tokens += sum(len(rows[i].ids) - m for i, m, _ in parts)
        last = torch.tensor([m - 1 for _, m, _ in parts])
        dev = b.model.device
        return cache, mask.to(dev), last.to(dev), None, [live[i] for i, _, _ in parts]

    def _may_feed(self, fed: int, n_rows: int) -> bool:
        """Whether `fed` prompt tokens of a row may run in a check of `n_rows` rows rather than in a
        prompt pass of their own: at most `JOIN_TOKENS`, and the columns they add past a check's
        usual width (its widest row's last token and draft) cost every row at most `FED_SLACK`
        slots in all; a few are cheaper than a pass."""
        width = 1 + _most_draft(n_rows) if self.b.drafter is not None else 1
        return 0 < fed <= JOIN_TOKENS and n_rows * (fed - width) <= FED_SLACK

    def _crop(self) -> None:
        """Drop the columns that are padding in every row (left by rows that have gone), and
        pack each row's columns to the right once drafts not kept have left more than
        `HOLE_SLACK` unused columns beside the longest row."""
        import torch

        if any(type(layer) is not grow_layer() for layer in self.cache.layers):
            return
        width, longest = self.mask.shape[1], int(self.mask.sum(dim=1).max())
        if width - longest > HOLE_SLACK:
            order = torch.sort(self.mask, dim=1, stable=True).indices[:, width - longest :]  # each row's used columns, right-aligned
            for layer in self.cache.layers:
                layer.pack(order)
            self.mask = self.mask.gather(1, order)
            return
        first = int(self.mask.any(dim=0).int().argmax())
        if first == 0:
            return
        for layer in self.cache.layers:
            layer.crop_left(first)
        self.mask = self.mask[:, first:]


@dataclass
class _Live:
    ticket: int
    index: int
    params: GenerationParams
    n_prompt: int
    tail: int  # tokens decoded again to look for a stop string
    new: list[int] = field(default_factory=list)
    ids: list[int] | None = None  # the prompt's tokens, for the KV store once the row ends
    pred: list[int] = field(default_factory=list)  # the model's next token after its last, then after each draft token
    pred_lp: list[float] = field(default_factory=list)  # the log-probability of each of `pred`
    new_lp: list[float] = field(default_factory=list)  # the log-probability of each of `new`
    draft: list[int] = field(default_factory=list)  # the draft the last forward checked (see _draft)
    fed: int = 0  # tokens the last forward ran for the row (its last and its draft, or the prompt tokens it joined with); 0 after its prompt pass
    feed: list[int] = field(default_factory=list)  # prompt tokens the next check runs (a row that joined on stored KV)
    grams: RowIndex = field(default_factory=RowIndex)  # where n-grams of its text occur, for drafts
    store: bool = True  # its KV goes to the store when it ends (not an answer's, see DecodeStream)


def _most_draft(n_rows: int) -> int:
    """The most draft tokens a row checks in a step of `n_rows` rows: one when the rows fill
    `DRAFT_SLOTS`, more when few run, for a step costs about the same."""
    return max(1, DRAFT_SLOTS // n_rows - 1)
