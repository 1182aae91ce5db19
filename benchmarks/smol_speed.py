"""Training speed of SmolLM2-135M on this CPU: float32 against bfloat16 autocast, activation
checkpointing and batch shapes, for every stage, all in one run (the smol profile's choice).

The model is the smol profile's base (de-quantised from its GGUF file as chapter 0 does), untied and
grown by ``--new-tokens`` rows initialised from their pieces' mean, as chapter 3 does; every stage
runs the project's own loop (``train_stage_loop``: ``install_stage``, the stage's AdamW,
``train_step``, ``merge_stage``) through ``benchmarks/stage_training.py``'s ``measure_stages``. Measured, in one
process and one after the other:

  dtype       float32, and bfloat16 autocast over float32 master weights (training.dtype), every
              stage at the profile's batch (8 windows of 128 tokens)
  checkpoint  bfloat16 with activation checkpointing, stages 1 and 6
  shape       bfloat16 at 4 x 256 and 16 x 64 tokens, stage 6

After each setting, every block a stage did not train must still equal the model's rows before
it, bit for bit (frozen rows stay exact whatever the dtype of the products). Tokens per second
are tokens of a step over its mean wall time. Model FLOPs utilisation (MFU) is each stage's model
FLOPs per second (chapter 04's estimate, ``benchmarks/stage_training.py`` says how) over the
matmul peak in the setting's dtype, measured at the start of the same run. Target (the
project's): stage 6 in the smol profile's setting (its ``training.dtype`` at its batch) at 50% of
that peak or more; the record also names the fastest setting that keeps frozen rows exact. The result, with commit, date, hardware and this
command, goes to ``results/benchmarks/smol_speed.json``; the performance page shows it.

    python benchmarks/smol_speed.py                # the whole comparison (about 10 minutes on 2 cores)
    python benchmarks/smol_speed.py --quick        # smoke run: a 2-layer cut, short batches, one timed step
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.stage_training import measure_stages  # noqa: E402

NEW_TOKENS = 13_763  # about 28% of SmolLM2's 49,152 tokens: the card's proportion, 8,960 to 32,000
RESULT = ROOT / "results" / "benchmarks" / "smol_speed.json"
MFU_TARGET = 0.5  # stage 6's share of the matmul peak (the project's target)


class _Progress:  # measure_stages reports progress through a tqdm-like object
    def set_postfix_str(self, text):
        pass

    def update(self, n):
        pass


def extended_smol(new_tokens: int, layers: int | None):
    """SmolLM2's de-quantised base, untied, with ``new_tokens`` rows initialised from piece means."""
    from transformers import AutoModelForCausalLM

    from eeve_lib.method.embedding_init import Extension, untie_embeddings
    from eeve_lib.pipeline.base import gguf_file
    from eeve_lib.pipeline.profiles import load_profile

    path = gguf_file(load_profile("smol"))
    if path is None:
        raise SystemExit("SmolLM2's GGUF file is missing: run `make setup` (eeve fetch-data --profile smol).")
    # transformers de-quantises while loading (behind a tqdm bar of its own, kept off the console);
    # the model is trained here, never saved
    with contextlib.redirect_stderr(io.StringIO()):
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    # SmolLM2's embedding has one row per token of its tokenizer (49,152): the rows are the base's
    # tokens, and the tokenizer is not parsed out of the file a second time (half the loading time).
    base_size = model.get_input_embeddings().weight.shape[0]
    if layers is not None:
        model.model.layers = model.model.layers[:layers]
        model.config.num_hidden_layers = layers
    untie_embeddings(model)
    g = torch.Generator().manual_seed(0)
    rows = base_size + new_tokens
    with torch.no_grad():
        old_in, old_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        pieces = torch.randint(256, base_size, (new_tokens, 3), generator=g)
        w_in = torch.cat([old_in, old_in[pieces].mean(1)])
        w_out = torch.cat([old_out, old_out[pieces[:, 0]]])
        model.set_input_embeddings(torch.nn.Embedding(rows, w_in.shape[1], _weight=w_in))
        head = torch.nn.utils.skip_init(torch.nn.Linear, w_out.shape[1], rows, bias=False)
        head.weight = torch.nn.Parameter(w_out)
        model.set_output_embeddings(head)
    model.config.vocab_size = rows
    return model, Extension(base_size, rows, base_size, rows, "subword_mean", untied=True)


def frozen_blocks_kept(before: dict[str, torch.Tensor], model, results, ext) -> bool:
    """Whether each measured stage left exactly the blocks it does not train as they were.

    Stages run one after the other on one model, so a block counts as trained from the first
    stage that trains it on; before that it must equal ``before`` bit for bit.
    """
    from eeve_lib.method.stages import trained_so_far

    trained = trained_so_far([SimpleNamespace(stage=r.number) for r in results])
    last = trained[-1][1] if trained else frozenset()
    n = ext.base_size
    now = model.state_dict()
    checks = {"input": torch.equal(now["model.embed_tokens.weight"][:n], before["model.embed_tokens.weight"][:n]),
              "output": torch.equal(now["lm_head.weight"][:n], before["lm_head.weight"][:n]),
              "body": all(torch.equal(now[k], v) for k, v in before.items()
                          if "embed_tokens" not in k and "lm_head" not in k)}
    return all(ok for block, ok in checks.items() if block not in last)


def run_setting(model, ext, label: str, stages: list[int], batch: int, seq_len: int, dtype: torch.dtype,
                checkpointing: bool, steps: int, peak: dict) -> dict:
    """Every stage of ``stages`` in one setting; ``peak``: the matmul peak in ``dtype``, for MFU."""
    from benchmarks.stage_training import autocast_for, mfu
    from eeve_lib.method import stages as stage_table

    settings = SimpleNamespace(weight_decay=0.01, grad_clip=1.0)
    g = torch.Generator().manual_seed(1)
    batches = torch.randint(0, ext.target_size, (steps + 1, batch, seq_len), generator=g)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    original = dict(stage_table.STAGES)
    stage_table.STAGES.clear()
    stage_table.STAGES.update({n: original[n] for n in stages})
    try:
        results = measure_stages(model, ext, batches, settings, {n: 1e-4 for n in stages}, torch.device("cpu"),
                                 autocast_for(torch.device("cpu"), dtype), _Progress())
    finally:
        stage_table.STAGES.clear()
        stage_table.STAGES.update(original)
        if checkpointing:
            model.activation_checkpointing_disable()
    kept = frozen_blocks_kept(before, model, results, ext)
    model.load_state_dict(before)  # the next setting starts from the same weights
    tokens = batch * seq_len
    return {"setting": label, "dtype": str(dtype).removeprefix("torch."), "checkpointing": checkpointing,
            "batch": batch, "seq_len": seq_len, "frozen_rows_exact": kept,
            "stages": {r.number: {"tokens_per_second": tokens / r.step_seconds, "step_seconds": r.step_seconds,
                                  "peak_mb": r.peak_bytes / 1e6, "mfu": mfu(r, tokens, peak)} for r in results}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per stage after the warm-up (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2: chapter 4's run)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 layers, batches a quarter as wide and long, 1 timed step, not recorded")
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    import transformers

    # the console shows what is measured: no loading bars, no notices of the library's own
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    steps = 1 if args.quick else args.steps
    from benchmarks.stage_training import matmul_peak
    from eeve_lib.pipeline.profiles import load_profile

    cpu = torch.device("cpu")
    peaks = {dtype: matmul_peak(cpu, dtype, sizes=(512,) if args.quick else (1024, 2048))
             for dtype in (torch.float32, torch.bfloat16)}
    for dtype, peak in peaks.items():
        print(f"matmul peak, {peak['dtype']}: {peak['flops_per_second'] / 1e9:.1f} GFLOP/s "
              f"({peak['size']}^3, {peak['threads']} threads)", flush=True)
    training = load_profile("smol").training
    profile_setting = ("bfloat16 autocast" if training.dtype == "bfloat16" else "float32",
                       training.batch_size, training.seq_len)
    model, ext = extended_smol(NEW_TOKENS, 2 if args.quick else None)
    all_stages = list(range(1, 8))
    plan = [("float32", all_stages, 8, 128, torch.float32, False),
            ("bfloat16 autocast", all_stages, 8, 128, torch.bfloat16, False),
            ("bfloat16 + checkpointing", [1, 6], 8, 128, torch.bfloat16, True),
            ("bfloat16, 4 x 256", [6], 4, 256, torch.bfloat16, False),
            ("bfloat16, 16 x 64", [6], 16, 64, torch.bfloat16, False)]
    if args.quick:  # a smoke run checks that every setting runs and keeps frozen rows: a quarter of each side
        plan = [(label, stages, batch // 4, seq_len // 4, dtype, ckpt)
                for label, stages, batch, seq_len, dtype, ckpt in plan]
    rows = []
    started = time.time()
    for label, stages, batch, seq_len, dtype, checkpointing in plan:
        row = run_setting(model, ext, label, stages, batch, seq_len, dtype, checkpointing, steps, peaks[dtype])
        rows.append(row)
        speeds = ", ".join(f"{n}: {s['tokens_per_second']:.0f} ({s['mfu']:.0%})" for n, s in row["stages"].items())
        print(f"{label:26s} tokens/s (MFU) by stage {speeds}; frozen rows exact: {row['frozen_rows_exact']}",
              flush=True)
    fp32, bf16 = rows[0]["stages"], rows[1]["stages"]
    ratios = {n: bf16[n]["tokens_per_second"] / fp32[n]["tokens_per_second"] for n in fp32}
    print("bfloat16 / float32 tokens per second by stage: "
          + ", ".join(f"{n}: {r:.2f}x" for n, r in ratios.items()))
    assert all(r["frozen_rows_exact"] for r in rows), "a setting moved a frozen row"
    if args.quick:
        return 0
    from benchmarks import records

    exact = all(r["frozen_rows_exact"] for r in rows)
    chosen = next(r for r in rows if not r["checkpointing"] and r["setting"].startswith(profile_setting[0])
                  and (r["batch"], r["seq_len"]) == profile_setting[1:])
    fastest = max((r for r in rows if r["frozen_rows_exact"] and 6 in r["stages"]),
                  key=lambda r: r["stages"][6]["tokens_per_second"])
    six = chosen["stages"][6]["mfu"]
    print(f"stage 6 in the smol profile's setting ({chosen['setting']}): MFU {six:.1%} of the "
          f"{chosen['dtype']} matmul peak; fastest exact setting for stage 6: {fastest['setting']}")
    targets = [records.target("frozen rows exact", "every block a stage does not train stays bit-identical, in "
                              "every setting", 1.0, float(exact), exact),
               records.target("SmolLM2 stage 6 MFU", f"stage 6 in the smol profile's setting ({chosen['setting']}) "
                              f"at >= {MFU_TARGET:.0%} of the measured {chosen['dtype']} matmul peak", MFU_TARGET,
                              six, six >= MFU_TARGET)]
    path = records.write("smol_speed", {"threads": args.threads, "new_tokens": NEW_TOKENS, "rows": ext.rows,
                                        "timed_steps": steps, "settings": rows, "bf16_over_fp32": ratios,
                                        "matmul_peak": {p["dtype"]: p for p in peaks.values()},
                                        "profile_setting": chosen["setting"],
                                        "fastest_exact_setting_stage6": fastest["setting"]},
                         script="smol_speed.py", argv=argv, directory=RESULT.parent, quick=False, targets=targets,
                         started=started, load_at_start=load_at_start)
    print(f"recorded in {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
