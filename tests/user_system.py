"""A user-defined system, loaded by import path in the tests (the README shows the same)."""

from cotscope import Prompt, System
from cotscope.systems.prompts import format_question


class Terse(System):
    """Reason in at most three short lines, then answer."""

    def prompt(self, sample):
        return Prompt.chat(f"{format_question(sample)}\n\nThink in at most three short lines, then write 'Answer: <answer>'.")
