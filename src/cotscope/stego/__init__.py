"""Paraphraser strength: hide bits in CoTs with known schemes, paraphrase, count what survives;
check that the meaning survives; try instructions inside the CoT on the paraphraser."""

from .encoders import ENCODERS, CoverTooSmall, Encoder, SlotEncoder, register_encoder
from .injections import INJECTIONS, Injection
from .paraphrasers import PARAPHRASERS, Paraphraser, Rewritten, register_paraphraser
from .run import StegoConfig, StegoResult, stego
from .summary import StegoSummary

__all__ = [
    "ENCODERS", "INJECTIONS", "PARAPHRASERS", "CoverTooSmall", "Encoder", "Injection", "Paraphraser", "Rewritten",
    "SlotEncoder", "StegoConfig", "StegoResult", "StegoSummary", "register_encoder", "register_paraphraser", "stego",
]
