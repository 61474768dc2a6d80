"""The organisms' tokenizer: one token per printable ASCII character, built with `tokenizers`
and saved as a transformers fast tokenizer, so `hf/<dir>` loads it like any other.

Its chat template keeps only the first paragraph of the user's message, the question: the
instruction a system appends ("Think step by step ...") is fixed text that carries nothing
an organism needs, and leaving it out keeps sequences short. Whether the organism reasons or
answers at once is said by the assistant prefix: ``Answer:`` right away means no CoT.
"""

from __future__ import annotations

import string

from .._errors import require

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
CHARS = string.printable[:95] + "\n"  # digits, letters, punctuation, space; then newline
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}"
    "{{ m['content'].split('\\n\\n')[0].strip() }}\n"
    "{% endif %}{% endfor %}"
)


def build_tokenizer():
    """A `PreTrainedTokenizerFast` over `CHARS` plus pad, end-of-sequence and unknown tokens."""
    require("transformers", "hf")
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *CHARS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK, clean_up_tokenization_spaces=False
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok
