"""Numbers that come from outside this book, each with its source: the one place they are typed.

Every number the book quotes from the paper, a model card or a model's ``config.json`` lives in
:data:`NUMBERS`, with what it counts, the key of its entry in ``book/references.bib`` and where in
that source it stands (the card's text, a ``config.json`` field, the abstract). The chapters read
them from here (``number("new_tokens_solar").text()``), the Markdown pages through MyST
substitutions that ``eeve build`` generates from this module (``{{ new_tokens_solar }}``), and
:mod:`eeve_lib.book.resources` computes its memory plans from them. ``tests/test_external.py``
checks that every source is in the bibliography and that no page or module types one of them.

Shown in the introduction ("EEVE in 11 steps") and in "Run the full-scale version".
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import EeveError

#: Short names of the sources (keys of book/references.bib) for :meth:`Cited.cite`.
SOURCE_LABELS = {
    "kim2024eeve": "EEVE paper",
    "yanolja2024eeve108b": "EEVE-Korean-10.8B",
    "yanolja2024eeve28b": "EEVE-Korean-2.8B",
    "microsoft2023phi2": "phi-2",
    "upstage2023solar": "SOLAR-10.7B",
}


@dataclass(frozen=True)
class Cited:
    """A number from outside the book: its value, what it counts, and where it is stated."""

    value: int | float | str
    what: str  # e.g. "new tokens added to SOLAR-10.7B"
    source: str  # a key of book/references.bib, e.g. "kim2024eeve"
    where: str  # e.g. "model card text", "config.json (vocab_size)", "abstract"
    shown: str | None = None  # how the source words it, when that is not the bare value ("about 2 billion")
    unit: str = ""  # what the value counts in, when the value alone does not say ("GB")

    def text(self) -> str:
        """The value as the book prints it: integers with thousands separators ("8,960"), or the
        source's own words for a rounded number."""
        if self.shown is not None:
            return self.shown
        if isinstance(self.value, bool) or isinstance(self.value, str):
            return str(self.value)
        if isinstance(self.value, int):
            return f"{self.value:,}"
        return f"{self.value:,g}"

    def label(self) -> str:
        """Where the value is stated, for a reader: "EEVE-Korean-10.8B model card text"."""
        return f"{SOURCE_LABELS.get(self.source, self.source)} {self.where}"

    def cite(self) -> str:
        """The value, its unit if any, and a short human label of its source: "8,960 (EEVE-Korean-10.8B
        model card text)", "100 GB (EEVE-Korean-10.8B model card text)"."""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.text()}{unit} ({self.label()})"


_CARD = "model card text"

NUMBERS: dict[str, Cited] = {
    # The vocabulary expansion, as the EEVE-Korean-10.8B model card's text describes it (steps 1-8).
    "intermediate_vocab_size": Cited(40_000, "tokens of the intermediate tokenizer trained on Korean",
                                     "yanolja2024eeve108b", _CARD),
    "counting_corpus_gb": Cited(100, "gigabytes of Korean text over which token frequencies are counted",
                                "yanolja2024eeve108b", _CARD, unit="GB"),
    "min_frequency": Cited(6_000, "occurrences a new token needs to be kept (the frequency threshold)",
                           "yanolja2024eeve108b", _CARD),
    "new_tokens_solar": Cited(8_960, "new tokens added to SOLAR-10.7B", "yanolja2024eeve108b", _CARD),
    # The card names no stage: its code trains what stage 5 trains, in our reading of that code.
    "hook_stage": Cited(5, "the stage whose parameters the card's code trains (its gradient hook zeroes the old "
                        "tokens' input rows)", "yanolja2024eeve108b", "model card code, as we read it"),
    # The training (steps 10-11): the count of stages from the card, the budget from the paper's abstract.
    "stage_count": Cited(7, "training stages (\"a seven-stage training process\")", "yanolja2024eeve108b", _CARD),
    "training_tokens": Cited(2_000_000_000, "training tokens in all (about; the abstract rounds)",
                             "kim2024eeve", "abstract", shown="about 2 billion"),
    # The released models' files.
    "eeve_2_8b_vocab_rows": Cited(58_944, "vocabulary rows of EEVE-Korean-2.8B", "yanolja2024eeve28b",
                                  "config.json (vocab_size)"),
    "eeve_2_8b_params": Cited(2.82, "billion parameters of EEVE-Korean-2.8B", "yanolja2024eeve28b", "model card"),
    "eeve_10_8b_vocab_rows": Cited(40_960, "vocabulary rows of EEVE-Korean-10.8B", "yanolja2024eeve108b",
                                   "config.json (vocab_size)"),
    # The base models' files.
    "phi2_tokenizer_tokens": Cited(50_295, "tokens of phi-2's tokenizer (its vocabulary and added tokens)",
                                   "microsoft2023phi2", "tokenizer"),
    "phi2_rows": Cited(51_200, "embedding rows of phi-2 (its vocabulary padded)", "microsoft2023phi2",
                       "config.json (vocab_size)"),
    "phi2_layers": Cited(32, "transformer blocks of phi-2", "microsoft2023phi2",
                         "config.json (num_hidden_layers)"),
    "solar_vocab": Cited(32_000, "tokens and embedding rows of SOLAR-10.7B", "upstage2023solar",
                         "config.json (vocab_size)"),
    "solar_hidden": Cited(4_096, "hidden size of SOLAR-10.7B", "upstage2023solar",
                          "config.json (hidden_size)"),
    "solar_layers": Cited(48, "transformer blocks of SOLAR-10.7B", "upstage2023solar",
                          "config.json (num_hidden_layers)"),
    "solar_heads": Cited(32, "attention heads of SOLAR-10.7B", "upstage2023solar",
                         "config.json (num_attention_heads)"),
    "solar_kv_heads": Cited(8, "key-value heads of SOLAR-10.7B", "upstage2023solar",
                            "config.json (num_key_value_heads)"),
    "solar_mlp": Cited(14_336, "MLP width of SOLAR-10.7B", "upstage2023solar",
                       "config.json (intermediate_size)"),
}


class UnknownNumber(EeveError, KeyError):
    """No outside number of that name (an :class:`EeveError`, and a ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def number(key: str) -> Cited:
    """The cited number ``key``; :class:`UnknownNumber` naming the valid keys if there is none."""
    try:
        return NUMBERS[key]
    except KeyError:
        raise UnknownNumber(f"No outside number {key!r}; the numbers of eeve_lib/book/external.py are: "
                        f"{', '.join(sorted(NUMBERS))}") from None


def substitutions() -> dict[str, str]:
    """MyST substitutions for the pages: ``{{ key }}`` is the value ("8,960"), ``{{ key_cite }}`` the
    value with its source ("8,960 (EEVE-Korean-10.8B model card text)")."""
    subs = {key: cited.text() for key, cited in NUMBERS.items()}
    subs.update({f"{key}_cite": cited.cite() for key, cited in NUMBERS.items()})
    return subs
