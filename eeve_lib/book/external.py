"""Every number the book takes from outside this project, with its source.

The chapters never type such a number: they read it here (``number("new_tokens_solar")``) and
glue it into their prose, next to a ``{cite}`` of its bibtex key in ``references.bib``.
``where`` says where in the source the number stands: the model card's text, a ``config.json``
field, the paper's abstract.
"""

from __future__ import annotations

from dataclasses import dataclass

# How a source is named in running text (the bibtex key is what the pages cite).
SOURCE_NAMES = {
    "kim2024eeve": "EEVE paper",
    "eeve_card_10_8b": "EEVE-Korean-10.8B",
    "eeve_card_2_8b": "EEVE-Korean-2.8B",
    "phi2": "phi-2",
    "kim2023solar": "SOLAR-10.7B",
}


@dataclass(frozen=True)
class Cited:
    """A number from outside the project: its value, what it is, and where it comes from."""

    value: int | float | str
    what: str
    source: str  # bibtex key, e.g. "kim2024eeve"
    where: str  # "model card text", "config.json (vocab_size)", "abstract", ...

    def text(self) -> str:
        """The value as running text: ``8,960``; ``2e9`` as ``about 2 billion``."""
        v = self.value
        if isinstance(v, str):
            return v
        if isinstance(v, float) and v >= 1e9:
            return f"about {v / 1e9:g} billion"
        if isinstance(v, float) and not v.is_integer():
            return f"{v:,g}"
        return f"{int(v):,}"

    def cite(self) -> str:
        """The value with its source in words: ``8,960 (EEVE-Korean-10.8B model card text)``."""
        return f"{self.text()} ({SOURCE_NAMES.get(self.source, self.source)} {self.where})"


NUMBERS: dict[str, Cited] = {
    "intermediate_vocab_size": Cited(
        40000, "tokens of the intermediate Korean tokenizer", "eeve_card_10_8b", "model card text"),
    "min_frequency": Cited(
        6000, "occurrences a new token needs in the counting corpus", "eeve_card_10_8b",
        "model card text"),
    "counting_corpus_gb": Cited(
        100, "gigabytes of Korean text the tokens were counted over", "eeve_card_10_8b",
        "model card text"),
    "new_tokens_solar": Cited(
        8960, "Korean tokens added to SOLAR-10.7B", "eeve_card_10_8b", "model card text"),
    "eeve_2_8b_vocab_rows": Cited(
        58944, "embedding rows of EEVE-Korean-2.8B", "eeve_card_2_8b", "config.json (vocab_size)"),
    "training_tokens": Cited(2e9, "training tokens", "kim2024eeve", "abstract"),
    "phi2_tokenizer_tokens": Cited(
        50295, "tokens of phi-2's tokenizer", "phi2", "tokenizer (len)"),
    "phi2_rows": Cited(51200, "embedding rows of phi-2", "phi2", "config.json (vocab_size)"),
    "solar_vocab": Cited(
        32000, "tokens (and embedding rows) of SOLAR-10.7B", "kim2023solar",
        "config.json (vocab_size)"),
    "hook_stage": Cited(
        5, "the stage the model card's freezing code (a gradient hook) trains", "eeve_card_10_8b",
        "model card code"),
    "stage_count": Cited(7, "training stages", "kim2024eeve", "paper (figure and text)"),
}


def number(key: str) -> Cited:
    """The outside number called ``key``; a clear error for an unknown key."""
    if key not in NUMBERS:
        raise KeyError(f"No outside number {key!r}; known: {', '.join(NUMBERS)}.")
    return NUMBERS[key]


__all__ = ["Cited", "NUMBERS", "number", "SOURCE_NAMES"]
