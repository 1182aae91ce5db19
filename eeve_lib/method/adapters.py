"""Step 10: stage 6 as LoRA or QLoRA, merged back into an ordinary model at the end of the stage.

The paper trains stage 6 (all parameters) in full; its secondary descriptions report QLoRA for
that stage. With ``training.stage6: lora`` the transformer's weights stay frozen and low-rank
adapters train beside every linear layer of the transformer blocks (peft's LoRA: ``W x`` becomes
``W x + (alpha / r) B A x``, ``B`` starting at zero), while the stage's embedding rows (every
input and every output row) train exactly as in the full stage 6, split by :mod:`.row_split`.
``qlora`` also stores those frozen linear weights in 4 bits on the GPU (bitsandbytes' NF4); the
adapters and the rows train in full precision.

At the end of the stage the adapters are merged, ``W + (alpha / r) B A``, into the *original*
full-precision weights (QLoRA's too, never into their dequantised 4-bit copy), and the peft
modules are replaced by the ordinary ``nn.Linear`` they wrapped: the saved model loads with
``AutoModelForCausalLM`` and no peft. Layer norms, biases and padding rows do not train in a
LoRA stage 6 and stay bit-identical. Shown in chapter 05 (the ``stage6:lora`` ablation arm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import TrainingError
from ..runtime import seeded

ADAPTER = "default"


@dataclass
class Adapters:
    """What :func:`add_adapters` changed, for :func:`merge_adapters`."""

    targets: list[str]
    # QLoRA: the full-precision linear layers that the 4-bit ones replaced during the stage.
    originals: dict[str, nn.Linear] = field(default_factory=dict)

    def parameter_count(self, model) -> int:
        return sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)


def adapter_targets(model) -> list[str]:
    """Names of the linear layers that get adapters: every ``nn.Linear`` but the output head."""
    head = model.get_output_embeddings()
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head]


def require_qlora_support(device: torch.device) -> None:
    """QLoRA's 4-bit weights need bitsandbytes on a CUDA GPU: a clear error otherwise."""
    if device.type != "cuda" or not torch.cuda.is_available():
        raise TrainingError(f"training.stage6: qlora keeps the frozen weights in 4 bits with bitsandbytes, "
                            f"which needs a "
                            f"CUDA GPU; this run trains on {device.type}. Use training.stage6: lora here (the same "
                            f"adapters over full-precision weights).")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise TrainingError("training.stage6: qlora needs bitsandbytes: pip install -c requirements/lock.txt "
                            "'eeve-book[qlora]' (or use training.stage6: lora).") from e


def _quantize_4bit(model, targets: list[str], compute_dtype: torch.dtype) -> dict[str, nn.Linear]:
    """Replace each target linear by bitsandbytes' NF4 ``Linear4bit`` (quantised when moved to the GPU)."""
    import bitsandbytes as bnb

    originals = {}
    for name in targets:
        linear = model.get_submodule(name)
        quantized = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                      compute_dtype=compute_dtype, quant_type="nf4", device="meta")
        quantized.weight = bnb.nn.Params4bit(linear.weight.detach().clone(), requires_grad=False, quant_type="nf4")
        if linear.bias is not None:
            quantized.bias = linear.bias  # the same (frozen) tensor
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, quantized)
        originals[name] = linear
    return originals


def add_adapters(model, *, rank: int, alpha: float, dropout: float, seed: int, quantize: bool = False,
                 compute_dtype: torch.dtype = torch.bfloat16) -> tuple[Adapters, list[tuple[str, nn.Parameter]]]:
    """Put LoRA adapters on the transformer's linear layers; return them and their trainable tensors.

    Call after :func:`~.row_split.install_stage`: what it set to train keeps training (peft would
    otherwise freeze everything but the adapters). ``quantize`` (QLoRA) needs bitsandbytes and a GPU.
    """
    from peft import LoraConfig, inject_adapter_in_model

    targets = adapter_targets(model)
    if not targets:
        raise TrainingError("LoRA stage 6: the model has no linear layers outside its head to put adapters on.")
    originals = _quantize_4bit(model, targets, compute_dtype) if quantize else {}
    trains = {id(p): p.requires_grad for p in model.parameters()}
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    with seeded(seed):  # adapter A matrices are drawn from the global RNG: a fixed draw, caller's state kept
        inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    adapters = []
    for name, p in model.named_parameters():
        if id(p) in trains:
            p.requires_grad_(trains[id(p)])
        else:
            p.requires_grad_(True)
            adapters.append((f"adapter.{name}", p))
    return Adapters(targets, originals), adapters


def merge_adapters(model, adapters: Adapters) -> None:
    """Fold every adapter into its original weight and put ordinary ``nn.Linear`` modules back."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if not isinstance(module, LoraLayer):
            continue
        delta = module.get_delta_weight(ADAPTER).detach()
        base = adapters.originals.pop(name, None) or module.get_base_layer()
        with torch.no_grad():
            base.weight += delta.to(device=base.weight.device, dtype=base.weight.dtype)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, base)
    if "peft_config" in vars(model):  # peft's note on the model that it carries adapters: it no longer does
        del model.peft_config


__all__ = ["Adapters", "ADAPTER", "adapter_targets", "add_adapters", "merge_adapters", "require_qlora_support"]
