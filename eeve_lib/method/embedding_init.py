"""Step 9: grow the embeddings to the extended vocabulary and initialise the new rows.

EEVE's initialisation (from the paper's text): a new token's *input* row is the mean of the base
input rows of its pieces under the base tokenizer; its *output* row (and bias) is the base output
row of its *first* piece. For the ablation of chapter 05 there are two alternatives: transformers'
``mean_resizing`` (a normal draw around the mean of the old rows, with 1e-9 times their
covariance) and a plain normal draw with the model's ``initializer_range``.

Padded matrices are respected (phi-2 has more rows than tokens): new ids continue right
after the base tokenizer's last id, a padding row that now holds a new token gets that token's
initialisation, the matrices grow only as far as needed (to a multiple of ``pad_to_multiple_of``),
rows beyond the tokenizer stay inert padding that generation never samples
(``generation_config.suppress_tokens``) and ``config.vocab_size`` equals the matrix rows. A base
whose input and output embeddings are one matrix (SmolLM2) is untied first, its output matrix
an exact copy, so that each of the seven stages can train the rows it names; kept tied on
request (chapter 05's tied arm). Every old row stays bit-identical. Shown in chapter 03.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .base_model import padded_rows
from ..errors import TokenizerError
from ..runtime import generator

InitMethod = str  # a name in INIT_METHODS (below): the registry is the one list of init methods
PADDING_BIAS = -1.0e4  # logit of fresh padding rows: exp(-1e4) underflows to 0, also in bf16


@dataclass
class Extension:
    """How the rows of an extended model are laid out."""

    base_size: int  # tokens of the base tokenizer; ids below are base tokens
    target_size: int  # tokens of the extended tokenizer; ids in [base_size, target_size) are new
    base_rows: int  # embedding rows of the base model
    rows: int  # embedding rows of the extended model
    method: str
    pieces: list[list[int]] = field(default_factory=list)  # base pieces of each new id, in order
    tied: bool = False  # the extended model's input and output rows are one matrix
    untied: bool = False  # the base's were one matrix, and the extension gave the output its own copy

    @property
    def new_ids(self) -> range:
        return range(self.base_size, self.target_size)

    @property
    def n_new(self) -> int:
        return self.target_size - self.base_size

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("base_size", "target_size", "base_rows", "rows", "method", "tied",
                                              "untied")} | {
            "new_tokens": self.n_new, "padding_rows": self.rows - self.target_size}


def check_extends(base_tokenizer, target_tokenizer) -> None:
    """Raise unless every base token keeps its id in the target tokenizer and new ids come after."""
    base_vocab = base_tokenizer.get_vocab()
    target_vocab = target_tokenizer.get_vocab()
    moved = [t for t, i in base_vocab.items() if target_vocab.get(t) != i]
    if moved:
        raise TokenizerError(
            f"The extended tokenizer does not extend this base tokenizer: {len(moved)} base tokens are missing or "
            f"have other ids (e.g. {moved[0]!r}). Use the tokenizer that chapter 02 built from this base model."
        )
    if len(target_tokenizer) < len(base_tokenizer):
        raise TokenizerError("The extended tokenizer is smaller than the base tokenizer.")


def base_pieces(base_tokenizer, target_tokenizer, ids: range) -> list[list[int]]:
    """The ids of each new token's pieces under the base tokenizer's own BPE."""
    model = base_tokenizer.backend_tokenizer.model
    vocab = base_tokenizer.get_vocab()
    out = []
    for token in target_tokenizer.convert_ids_to_tokens(list(ids)):
        out.append([vocab[piece.value] for piece in model.tokenize(token)])
    return out


def plan_rows(base_rows: int, target_size: int, multiple: int) -> int:
    """Rows of the extended matrices: unchanged if the padding has room, else grown to a multiple."""
    return base_rows if target_size <= base_rows else padded_rows(target_size, multiple)


def _mean_resizing_rows(old: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """transformers' ``mean_resizing``: N(mean(old), 1e-9 * cov(old)), drawn from a private generator."""
    old = old.double()
    mean = old.mean(0)
    centered = old - mean
    covariance = centered.T @ centered / old.shape[0]
    try:
        chol = torch.linalg.cholesky(1e-9 * covariance)
    except RuntimeError:  # not positive definite: transformers falls back to the mean
        return mean.expand(n, -1).clone()
    z = torch.randn(n, old.shape[1], generator=g, dtype=torch.float64)
    return mean + z @ chol.T


def tied_head(weight: torch.Tensor):
    """An output head without bias whose weight *is* ``weight`` (the input embedding's)."""
    from torch import nn

    head = torch.nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias=False, device=weight.device,
                                    dtype=weight.dtype)
    head.weight = weight
    return head


def is_tied(model) -> bool:
    """Whether the model's output matrix is its input matrix (SmolLM2; phi-2 and SOLAR-10.7B are untied)."""
    out = model.get_output_embeddings()
    return out is None or out.weight is model.get_input_embeddings().weight


def untie_embeddings(model) -> bool:
    """Give a tied model an output head of its own, starting as an exact copy of the shared matrix.

    EEVE's stages train input and output rows separately (stage 2 trains new output rows alone,
    stage 4 every output row with the input rows frozen), which one shared matrix cannot do. The
    copy costs a second matrix of parameters; the model computes exactly what it computed before.
    Returns whether anything was untied.
    """
    from torch import nn

    if not is_tied(model):
        return False
    weight = model.get_input_embeddings().weight
    rows, hidden = weight.shape
    head = torch.nn.utils.skip_init(nn.Linear, hidden, rows, bias=False, device=weight.device, dtype=weight.dtype)
    head.weight = nn.Parameter(weight.detach().clone())
    model.set_output_embeddings(head)
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        config.tie_word_embeddings = False
    return True


@dataclass(frozen=True)
class InitRule:
    """One way to fill the new rows (step 9 and chapter 05's alternatives). Each function gets the
    base's real rows as float32 (one per base token), the :class:`Extension`, the run's private
    generator and the config's ``initializer_range``; draws happen input rows first, then output
    rows, so that a rule's numbers depend only on the seed."""

    input_rows: Callable[[torch.Tensor, Extension, torch.Generator, float], torch.Tensor]
    output_rows: Callable[[torch.Tensor, Extension, torch.Generator, float], torch.Tensor]
    output_bias: Callable[[torch.Tensor, Extension], torch.Tensor]  # from the base's bias of its real rows


def _subword_mean_input(real_in, ext, g, init_range):
    """The paper's input rule: the mean of the pieces' input rows."""
    return torch.stack([real_in[p].mean(0) for p in ext.pieces]) if ext.pieces else real_in[:0]


def _first_piece(ext: Extension) -> torch.Tensor:
    return torch.tensor([p[0] for p in ext.pieces], dtype=torch.long)


def _random_rows(real, ext, g, init_range):
    """A plain normal draw with the model's ``initializer_range``."""
    return torch.randn(ext.n_new, real.shape[1], generator=g) * init_range


INIT_METHODS: dict[str, InitRule] = {
    # EEVE's: input row = mean of its pieces' input rows; output row and bias = its first piece's.
    "subword_mean": InitRule(_subword_mean_input, lambda real_out, ext, g, r: real_out[_first_piece(ext)],
                             lambda bias, ext: bias[_first_piece(ext)]),
    # transformers' mean_resizing; the bias is the mean of the old biases.
    "mean_resizing": InitRule(lambda real, ext, g, r: _mean_resizing_rows(real, ext.n_new, g),
                              lambda real, ext, g, r: _mean_resizing_rows(real, ext.n_new, g),
                              lambda bias, ext: bias.float().mean().expand(ext.n_new)),
    "random": InitRule(_random_rows, _random_rows, lambda bias, ext: torch.zeros(ext.n_new)),
}


def extend_model(model, base_tokenizer, target_tokenizer, method: InitMethod = "subword_mean", seed: int = 0,
                 pad_to_multiple_of: int = 64, untie: bool = True) -> Extension:
    """Resize ``model`` in place to the extended vocabulary and initialise the new rows (chapter 03).

    A tied base is untied first (:func:`untie_embeddings`) unless ``untie`` is False; then its
    output rows start as copies of its input rows and new output rows follow the paper's rule.
    """
    from torch import nn

    if method not in INIT_METHODS:
        raise ValueError(f"unknown initialisation {method!r}: use {', '.join(INIT_METHODS)}")
    check_extends(base_tokenizer, target_tokenizer)
    untied = untie_embeddings(model) if untie else False
    inp = model.get_input_embeddings()
    out = model.get_output_embeddings()
    base_rows, hidden = inp.weight.shape
    base_size, target_size = len(base_tokenizer), len(target_tokenizer)
    if base_rows < base_size:
        raise TokenizerError(f"The base model has {base_rows} embedding rows but its tokenizer has {base_size} tokens: "
                             f"they do not belong together.")
    tied = is_tied(model)
    rows = plan_rows(base_rows, target_size, pad_to_multiple_of)
    ext = Extension(base_size, target_size, base_rows, rows, method, tied=tied, untied=untied)
    ext.pieces = base_pieces(base_tokenizer, target_tokenizer, ext.new_ids)
    dtype = inp.weight.dtype
    new_ids = torch.arange(base_size, target_size)
    g = generator(seed)

    rule = INIT_METHODS[method]
    init_range = getattr(model.config, "initializer_range", 0.02)

    with torch.no_grad():
        # >>> the core, shown in the book
        old_in = inp.weight.detach()
        w_in = torch.zeros(rows, hidden, dtype=dtype, device=old_in.device)
        w_in[:base_rows] = old_in  # old rows: copied bit for bit
        real_in = old_in[:base_size].float()
        w_in[new_ids] = rule.input_rows(real_in, ext, g, init_range).to(dtype=dtype, device=w_in.device)
        # <<< the core
        new_inp = nn.Embedding(rows, hidden, _weight=w_in)
        model.set_input_embeddings(new_inp)

        if not tied:
            old_out = out.weight.detach()
            w_out = torch.zeros(rows, hidden, dtype=old_out.dtype, device=old_out.device)
            w_out[:base_rows] = old_out
            has_bias = out.bias is not None
            if has_bias:
                b_out = torch.full((rows,), PADDING_BIAS, dtype=out.bias.dtype, device=out.bias.device)
                b_out[:base_rows] = out.bias.detach()
            # >>> the core, shown in the book
            real_out = old_out[:base_size].float()
            if ext.n_new:
                w_out[new_ids] = rule.output_rows(real_out, ext, g, init_range).to(old_out.dtype)
                if has_bias:
                    b_out[new_ids] = rule.output_bias(out.bias.detach()[:base_size], ext).to(out.bias.dtype)
            # <<< the core
            # skip_init: no random initialisation that would draw from the global RNG.
            head = torch.nn.utils.skip_init(nn.Linear, hidden, rows, bias=has_bias, device=old_out.device,
                                            dtype=old_out.dtype)
            head.weight = nn.Parameter(w_out)
            if has_bias:
                head.bias = nn.Parameter(b_out)
            model.set_output_embeddings(head)
        else:  # one matrix: the output head is the input embedding's weight itself
            model.set_output_embeddings(tied_head(new_inp.weight))

    model.config.vocab_size = rows
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().vocab_size = rows
    model.generation_config.suppress_tokens = list(range(target_size, rows)) or None
    return ext


def piece_similarity(model, ext: Extension) -> torch.Tensor:
    """Cosine similarity of each new input row to each of its pieces' rows, averaged per token."""
    w = model.get_input_embeddings().weight.detach().float()
    sims = []
    for i, pieces in zip(ext.new_ids, ext.pieces):
        sims.append(torch.nn.functional.cosine_similarity(w[i].unsqueeze(0), w[pieces], dim=-1).mean())
    return torch.stack(sims) if sims else torch.empty(0)


def nearest_base_tokens(model, token_id: int, base_size: int, k: int = 5) -> list[tuple[int, float]]:
    """The ids of the ``k`` base tokens whose input rows are most cosine-similar to ``token_id``'s,
    each with its cosine similarity."""
    w = model.get_input_embeddings().weight.detach().float()
    sims = torch.nn.functional.cosine_similarity(w[token_id].unsqueeze(0), w[:base_size], dim=-1)
    top = torch.topk(sims, k)
    return [(i, round(float(s), 3)) for s, i in zip(top.values, top.indices.tolist())]
