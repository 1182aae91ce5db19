"""Step 10: a stage sharded across processes (PyTorch's FSDP2), its frozen rows still exactly frozen.

Data parallelism keeps the whole model, its gradients and its Adam state on every GPU; stage 6 of
SOLAR-10.7B in float32 AdamW needs about 16 bytes per parameter, more than one GPU holds.
Sharding splits every parameter, its gradient and its Adam moments along the first dimension
across the processes, each process gathering one block's weights just for the moment it computes
with them (``torch.distributed.fsdp.fully_shard``: one unit per transformer block, one for the
input embedding, one for the output head, the rest in the root). It runs the same way on GPUs
(NCCL) and on CPUs (gloo), which is how the tests run it.

**The row split survives sharding.** FSDP2 shards each parameter on its own (a ``DTensor`` per
parameter, not one flat buffer per unit), so a unit may mix frozen and trainable tensors: the
frozen base rows and the trainable new rows of a :class:`~.row_split.SplitEmbedding` are two
parameters, sharded separately; only tensors that require a gradient are reduce-scattered, and
the optimizer is built over the sharded trainable tensors alone, so Adam state exists only for
(each process's share of) the rows that train. Padding rows are buffers, replicated.

**The host model never changes its frozen tensors.** What trains is a sharded *copy*: its
skeleton is built on the meta device (no memory), sharded, and each process loads its shard of
every tensor from the host model, which stays whole on the CPU. At the end of the stage only the
trainable tensors are gathered back into the host model, so every frozen tensor of the host is
bit-identical by construction.

**Checkpoints are independent of the number of processes.** Trainable tensors and Adam moments
are gathered into whole tensors in the layout of a one-process run (the optimizer's parameter
order is the same in both), so a stage checkpointed by two processes resumes on one, or eight.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
from torch import nn


def _is_dtensor(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def device_mesh(device: torch.device, world: int):
    """A one-dimensional mesh over every process (the process group accelerate set up)."""
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device.type, (world,))


def block_modules(model) -> list[nn.Module]:
    """The transformer blocks: modules of the classes the model says must not be split (HF's
    ``_no_split_modules``: ``PhiDecoderLayer``, ``LlamaDecoderLayer``...)."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def shard_copy(model: nn.Module, mesh, *, param_dtype: torch.dtype | None = None,
               reshard_after_forward: bool = True) -> nn.Module:
    """A sharded copy of ``model`` for this process; ``model`` itself is left untouched.

    ``param_dtype`` (bfloat16 on GPUs) is the dtype blocks are gathered and computed in; the
    shards, gradients' reduction and Adam state stay float32.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor import distribute_tensor

    # The skeleton: every parameter on the meta device (no memory), buffers copied (they are small).
    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
            for p in model.parameters()}
    skeleton = copy.deepcopy(model, memo)
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32 if param_dtype else None)
    kwargs = {"mesh": mesh, "mp_policy": mp}
    for block in block_modules(skeleton):
        fully_shard(block, reshard_after_forward=reshard_after_forward, **kwargs)
    fully_shard(skeleton.get_input_embeddings(), reshard_after_forward=reshard_after_forward, **kwargs)
    # The head runs last in the forward pass and first in the backward: keep it gathered in between.
    fully_shard(skeleton.get_output_embeddings(), reshard_after_forward=False, **kwargs)
    fully_shard(skeleton, **kwargs)
    host = dict(model.named_parameters())
    shards = {}
    for name, p in skeleton.named_parameters():
        # Every process holds the whole host tensor: it takes its own chunk, no communication.
        shards[name] = distribute_tensor(host[name].detach().to(mesh.device_type), p.device_mesh, p.placements,
                                         src_data_rank=None)
    missing = set(host) - set(shards)
    if missing:
        raise RuntimeError(f"sharded copy lacks parameters {sorted(missing)[:5]}")
    skeleton.load_state_dict(shards, strict=False, assign=True)
    for name, p in skeleton.named_parameters():
        p.requires_grad_(host[name].requires_grad)
    return skeleton


def gather(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a shard (a collective: every process must call it), else ``t`` itself."""
    return t.full_tensor() if _is_dtensor(t) else t


def local(t: torch.Tensor) -> torch.Tensor:
    """This process's part of ``t`` (the tensor itself when it is not sharded)."""
    return t.to_local() if _is_dtensor(t) else t


def full_optimizer_state(state_dict: dict[str, Any]) -> dict[str, Any]:
    """An optimizer ``state_dict`` with every sharded tensor gathered, on the CPU (a collective)."""
    state = {index: {k: gather(v).detach().cpu() if torch.is_tensor(v) else v for k, v in entry.items()}
             for index, entry in state_dict["state"].items()}
    return {"state": state, "param_groups": copy.deepcopy(state_dict["param_groups"])}


def sharded_optimizer_state(state_dict: dict[str, Any], params: Iterable[torch.Tensor]) -> dict[str, Any]:
    """A whole optimizer ``state_dict`` (one process's layout) cut into this process's shards.

    ``params`` are the optimizer's parameters in order (the indices of ``state_dict``); a state
    tensor shaped like its sharded parameter is sharded like it, anything else (Adam's step) is kept.
    """
    from torch.distributed.tensor import distribute_tensor

    params = list(params)
    state = {}
    for index, entry in state_dict["state"].items():
        p = params[int(index)]
        state[index] = {k: distribute_tensor(v.to(p.device), p.device_mesh, p.placements, src_data_rank=None)
                        if _is_dtensor(p) and torch.is_tensor(v) and v.shape == p.shape else v
                        for k, v in entry.items()}
    return {"state": state, "param_groups": copy.deepcopy(state_dict["param_groups"])}


__all__ = ["device_mesh", "block_modules", "shard_copy", "gather", "local", "full_optimizer_state",
           "sharded_optimizer_state"]
