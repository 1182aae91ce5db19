"""Step 10: freezing exactly. Frozen rows are never parameters the optimizer sees.

Zeroing gradients (the model card's hook) is not enough to freeze a row: AdamW's decoupled
weight decay and its momentum still move rows whose gradient was zeroed. So during a stage the
input embedding and the output head are replaced by modules that hold the base rows, the new
rows and the padding rows as *separate* tensors, only the trainable ones being parameters that
the optimizer sees; they are merged back into ordinary ``nn.Embedding``/``nn.Linear`` modules
at the end of the stage. The optimizer is rebuilt at every stage boundary and holds state only
for what trains (stage 1 holds Adam state for the new input rows alone). When neither the input
rows nor the transformer train (stages 2 and 4), nothing upstream of the head requires a
gradient, so autograd never backpropagates through the transformer. Shown in chapter 04.
"""

from __future__ import annotations

import torch
from torch import nn

from .embedding_init import Extension, is_tied, tied_head
from .stages import Stage, as_tied


class SplitEmbedding(nn.Module):
    """An input embedding whose base, new and padding rows are separate tensors."""

    def __init__(self, weight: torch.Tensor, n_base: int, n_new: int, train_base: bool, train_new: bool):
        super().__init__()
        self.n_base, self.n_new = n_base, n_new
        self.base = nn.Parameter(weight[:n_base].detach().clone(), requires_grad=train_base)
        self.new = nn.Parameter(weight[n_base:n_base + n_new].detach().clone(), requires_grad=train_new)
        self.register_buffer("pad", weight[n_base + n_new:].detach().clone())

    def full_weight(self) -> torch.Tensor:
        return torch.cat([self.base, self.new, self.pad])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # Two lookups instead of concatenating the whole matrix at every step (phi-2: 600 MB).
        is_base = ids < self.n_base
        out = nn.functional.embedding(ids.clamp(max=self.n_base - 1), self.base)
        if self.n_new:
            new_rows = nn.functional.embedding((ids - self.n_base).clamp(0, self.n_new - 1), self.new)
            out = torch.where(is_base.unsqueeze(-1), out, new_rows)
        if bool((ids >= self.n_base + self.n_new).any()):  # padding ids are never real input; kept exact anyway
            out = nn.functional.embedding(ids, self.full_weight())
        return out


class SplitHead(nn.Module):
    """An output head (weight and bias) whose base, new and padding rows are separate tensors."""

    def __init__(self, linear: nn.Linear, n_base: int, n_new: int, train_base: bool, train_new: bool):
        super().__init__()
        w = linear.weight.detach()
        self.base = nn.Parameter(w[:n_base].clone(), requires_grad=train_base)
        self.new = nn.Parameter(w[n_base:n_base + n_new].clone(), requires_grad=train_new)
        self.register_buffer("pad", w[n_base + n_new:].clone())
        self.has_bias = linear.bias is not None
        if self.has_bias:
            b = linear.bias.detach()
            self.base_bias = nn.Parameter(b[:n_base].clone(), requires_grad=train_base)
            self.new_bias = nn.Parameter(b[n_base:n_base + n_new].clone(), requires_grad=train_new)
            self.register_buffer("pad_bias", b[n_base + n_new:].clone())

    def full_weight(self) -> torch.Tensor:
        return torch.cat([self.base, self.new, self.pad])

    def full_bias(self) -> torch.Tensor | None:
        return torch.cat([self.base_bias, self.new_bias, self.pad_bias]) if self.has_bias else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # One product per block: a frozen block needs no weight gradient, so backward skips it.
        parts = [nn.functional.linear(hidden, self.base, self.base_bias if self.has_bias else None),
                 nn.functional.linear(hidden, self.new, self.new_bias if self.has_bias else None),
                 nn.functional.linear(hidden, self.pad, self.pad_bias if self.has_bias else None)]
        return torch.cat(parts, dim=-1)


class TiedSplitHead(nn.Module):
    """The output head of a tied model during a stage: the split input embedding's own tensors."""

    def __init__(self, embedding: SplitEmbedding):
        super().__init__()
        object.__setattr__(self, "embedding", embedding)  # not a submodule: its tensors are the embedding's

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        e = self.embedding
        return torch.cat([nn.functional.linear(hidden, w) for w in (e.base, e.new, e.pad)], dim=-1)


def install_stage(model, stage: Stage, ext: Extension) -> list[tuple[str, nn.Parameter]]:
    """Freeze and split ``model`` for ``stage``; return the (name, parameter) pairs that train.

    On a tied model (one matrix for input and output) the stage trains the union of its rows.
    """
    tied = is_tied(model)
    if tied:
        stage = as_tied(stage)
    for p in model.parameters():
        p.requires_grad_(False)
    n_base, n_new = ext.base_size, ext.n_new
    emb = SplitEmbedding(model.get_input_embeddings().weight, n_base, n_new,
                         stage.input_rows == "all", stage.input_rows in ("new", "all"))
    head = TiedSplitHead(emb) if tied else SplitHead(model.get_output_embeddings(), n_base, n_new,
                                                     stage.output_rows == "all", stage.output_rows in ("new", "all"))
    body = []
    if stage.transformer:
        input_ids = {id(p) for p in model.get_input_embeddings().parameters()}
        output_ids = {id(p) for p in model.get_output_embeddings().parameters()}
        for name, p in model.named_parameters():
            if id(p) not in input_ids and id(p) not in output_ids:
                p.requires_grad_(True)
                body.append((name, p))
    model.set_input_embeddings(emb)
    model.set_output_embeddings(head)
    named = [(f"input.{n}", p) for n, p in emb.named_parameters()] + \
            [(f"output.{n}", p) for n, p in head.named_parameters()] + body
    return [(n, p) for n, p in named if p.requires_grad]


def merge_stage(model) -> None:
    """Put ordinary ``nn.Embedding``/``nn.Linear`` modules back, holding exactly the split values."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    with torch.no_grad():
        if isinstance(emb, SplitEmbedding):
            w = emb.full_weight().detach().clone()
            model.set_input_embeddings(nn.Embedding(w.shape[0], w.shape[1], _weight=w))
        if isinstance(head, TiedSplitHead):
            model.set_output_embeddings(tied_head(model.get_input_embeddings().weight))
        elif isinstance(head, SplitHead):
            w = head.full_weight().detach().clone()
            linear = torch.nn.utils.skip_init(nn.Linear, w.shape[1], w.shape[0], bias=head.has_bias,
                                              device=w.device, dtype=w.dtype)
            linear.weight = nn.Parameter(w)
            if head.has_bias:
                linear.bias = nn.Parameter(head.full_bias().detach().clone())
            model.set_output_embeddings(linear)
    for p in model.parameters():
        p.requires_grad_(True)


def stage_optimizer(trainable: list[tuple[str, nn.Parameter]], learning_rate: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over exactly the trainable tensors of a stage (no decay on biases and norms)."""
    decay = [p for _, p in trainable if p.dim() >= 2]
    no_decay = [p for _, p in trainable if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=learning_rate, betas=(0.9, 0.95))


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of tensor state the optimizer holds (Adam: two moments per trainable element).

    Sharded (FSDP), the bytes this process holds: its own share of each moment.
    """
    total = 0
    for state in optimizer.state.values():
        for v in state.values():
            if torch.is_tensor(v) and v.dim() > 0:
                v = v.to_local() if hasattr(v, "to_local") else v
                total += v.numel() * v.element_size()
    return total


__all__ = ["SplitEmbedding", "SplitHead", "TiedSplitHead", "install_stage", "merge_stage", "stage_optimizer",
           "optimizer_state_bytes"]
