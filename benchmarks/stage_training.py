"""Step time, peak memory and optimizer state of each of the seven training stages (step 10, chapter 04).

Two models with random weights (fixed seed) whose embeddings already have the extended rows:

  tiny  the tiny profile's phi: hidden 128, MLP 512, 4 layers, 4 heads; 4,000 base tokens in
        4,032 rows, extended to 5,523 tokens; the tiny profile's batch (8 x 64 tokens)
  phi2  phi-2's shape (the full-dry profile's architecture: hidden 2560, 32 heads, MLP 10240,
        partial rotary factor 0.4, phi-2's dropout); 50,295 base tokens in 51,200 rows, extended
        by 8,960 new tokens. On a CPU the layers and the batch are cut down so that stage 6 with
        AdamW fits in memory (what was cut is printed); on a GPU the default is all 32 layers
        and 2048-token windows in bf16 autocast, as the full profile trains.

Each stage runs the project's own loop, ``eeve_lib.method.training_loop.train_stage_loop``, with
its plain engine (one process, plain torch) timed: ``install_stage`` splits and freezes the
model, ``stage_optimizer`` (the AdamW every profile trains with) is built over the trainable
tensors, one warm-up step and ``--steps`` timed steps of the library's ``train_step`` run
(forward, loss, backward, gradient clipping, optimizer step), and ``merge_stage`` puts the model
back together. Printed
per stage, all measured side by side in one run:

  step s           mean wall time of a timed step (after the warm-up step)
  peak MB          peak memory of the warm-up step (the one that allocates the optimizer state
                   and the gradients) above the memory just before it: on the CPU, the process's
                   RSS sampled every millisecond by a thread (psutil), after returning freed
                   memory to the system; on CUDA, ``torch.cuda.max_memory_allocated``
  optimizer state  ``eeve_lib.method.row_split.optimizer_state_bytes`` after the first step
  MFU              model FLOPs utilisation: the stage's model FLOPs per token as chapter 04
                   estimates them (``eeve_lib.method.stages.flops_per_token``: forward, activation
                   gradients where the stage needs them, weight gradients of what trains; attention's
                   sequence-length term left out, so MFU reads a little low) times tokens per second,
                   over the machine's matmul peak in the step's dtype, measured in the same run
                   (:func:`matmul_peak`: the best rate of ``torch.mm`` on large square matrices at the
                   process's torch threads)

On a CPU every setup runs twice, in float32 and in bfloat16 autocast over float32 master weights
(what a profile's ``training.dtype: bfloat16`` trains with), from the same weights; on a GPU in
bfloat16 autocast (``--dtypes`` chooses).

Targets (the project's): steps of stage 2 and stage 4 take at most 0.4x a stage-6 step; stage
1's optimizer state is at most 1.1x new rows x hidden x 8 bytes (Adam's two fp32 moments of the
new input rows alone).

    python benchmarks/stage_training.py                       # tiny and the cut-down phi2, CPU
    python benchmarks/stage_training.py --quick               # smoke run: tiny only, 1 timed step
    python benchmarks/stage_training.py --device cuda --models phi2   # 32 layers, 2048 tokens, bf16

The result, with commit, date, machine and command, goes to ``results/benchmarks/stage_training.json``
(``--record-dir`` elsewhere; ``--quick`` records only with ``--record-dir``); the performance page
shows it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import torch

from eeve_lib.method.row_split import optimizer_state_bytes
from eeve_lib.method.stage_loop import stage_accounting
from eeve_lib.method.stages import STAGES
from eeve_lib.method.training_loop import PlainEngine, train_stage_loop

PHI2_LAYERS = 32
EEVE_NEW_TOKENS = 8_960  # EEVE-Korean's new tokens
TINY_TARGET_TOKENS = 5_523  # the size of a tiny run's extended tokenizer
FULL_SEQ_LEN, FULL_BATCH = 2048, 8  # the full profile's training windows
STEP_RATIO_TARGET = 0.4  # stages 2 and 4 against stage 6
STATE_RATIO_TARGET = 1.1  # stage 1's optimizer state against new rows x hidden x 8 bytes
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the module docstring for what is measured and how.")
    parser.add_argument("--models", nargs="+", choices=["tiny", "phi2"], default=None,
                        help="models to measure (default: tiny phi2; with --quick: tiny)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                        help="cpu (default), cuda, or auto (cuda when available)")
    parser.add_argument("--layers", type=int, default=None,
                        help=f"phi2's layers (default: 2 on cpu, {PHI2_LAYERS} on cuda)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help=f"phi2's tokens per window (default: 64 on cpu, {FULL_SEQ_LEN} on cuda)")
    parser.add_argument("--batch", type=int, default=None, help="phi2's windows per step (default: 1)")
    parser.add_argument("--new-tokens", type=int, default=EEVE_NEW_TOKENS,
                        help=f"tokens added to phi2's vocabulary (default: {EEVE_NEW_TOKENS:,}, EEVE's)")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=None,
                        help="float32 and/or bfloat16 autocast over float32 weights (default: both on a CPU, "
                             "bfloat16 on a GPU, as the full profile trains)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per stage after the warm-up (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and token ids (default: 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; on a shared machine fewer threads than "
                             "cores avoid stalls while other processes run)")
    parser.add_argument("--quick", action="store_true", help="smoke run: the tiny model only, one timed step")
    parser.add_argument("--record-dir", type=Path, default=None,
                        help="where to write stage_training.json (default: results/benchmarks; --quick records "
                             "only here)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 1
        args.models = args.models or ["tiny"]
    args.models = args.models or ["tiny", "phi2"]
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


# ---------------------------------------------------------------------------------------------
# Measuring


def _release_freed_memory() -> None:
    """Return freed heap memory to the system, so that a later RSS increase is real new memory."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS deltas may read low after large frees
        pass


class PeakMemory:
    """Peak memory inside a ``with`` block above the memory at its start, in bytes (``.peak``)."""

    def __init__(self, device: torch.device, interval: float = 0.001):
        self.device, self.interval = device, interval
        self.peak = 0

    def __enter__(self):
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
            return self
        _release_freed_memory()
        self.process = psutil.Process()
        self.baseline = self.highest = self.process.memory_info().rss
        self.stop = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(self.interval):
            self.highest = max(self.highest, self.process.memory_info().rss)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.baseline
        else:
            self.stop.set()
            self.sampler.join()
            self.highest = max(self.highest, self.process.memory_info().rss)
            self.peak = self.highest - self.baseline
        return False


def matmul_peak(device: torch.device, dtype: torch.dtype, sizes=(1024, 2048), repeats: int = 5) -> dict:
    """The machine's matmul peak for ``dtype`` in this process, at its torch threads: the best rate
    of ``torch.mm`` on square matrices of ``sizes`` (2 n^3 FLOPs a product), after one warm-up."""
    best = {"flops_per_second": 0.0, "size": None}
    g = torch.Generator(device=device).manual_seed(0)
    for n in sizes:
        a = torch.randn(n, n, generator=g, device=device).to(dtype)
        b = torch.randn(n, n, generator=g, device=device).to(dtype)
        torch.mm(a, b)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            torch.mm(a, b)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            rate = 2 * n**3 / (time.perf_counter() - started)
            if rate > best["flops_per_second"]:
                best = {"flops_per_second": rate, "size": n}
    return {**best, "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads()}


def autocast_for(device: torch.device, dtype: torch.dtype):
    """What train_stage's ``accelerator.autocast()`` is: bf16 autocast in bf16 mixed precision, else nothing."""
    if dtype == torch.bfloat16:
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


@dataclass
class StageResult:
    number: int
    name: str
    trainable: int
    step_seconds: float
    peak_bytes: int
    optimizer_state_bytes: int
    flops_per_token: float


def measure_stages(model, ext, batches: torch.Tensor, settings, learning_rates: dict[int, float],
                   device: torch.device, autocast, progress) -> list[StageResult]:
    """Run every stage in turn through the library's own loop (``train_stage_loop``) with a
    :class:`TimedEngine`; ``batches`` holds one batch per step, the first a warm-up."""
    results = []
    for stage in STAGES.values():
        progress.set_postfix_str(f"stage {stage.number}")
        engine = TimedEngine(batches, [learning_rates[stage.number]] * len(batches), vocab_limit=ext.target_size,
                             grad_clip=settings.grad_clip, weight_decay=settings.weight_decay, autocast=autocast,
                             device=device, progress=progress)
        _, model_flops = stage_accounting(model, stage, ext)
        train_stage_loop(model, stage, ext, engine)
        results.append(StageResult(stage.number, stage.name, engine.trainable_count,
                                   sum(engine.seconds) / len(engine.seconds), engine.peak, engine.state_bytes,
                                   model_flops))
        del engine
        _release_freed_memory()
    return results


class TimedEngine(PlainEngine):
    """The plain engine (one process, plain torch) with every step after the first timed, and the
    first step's peak memory (it allocates the optimizer state and the gradients) measured."""

    def __init__(self, *args, device: torch.device, progress, **kwargs):
        super().__init__(*args, **kwargs)
        self.device, self.progress, self.seconds, self.peak, self.state_bytes = device, progress, [], 0, 0

    def prepare(self, model, trainable):
        self.trainable_count = sum(p.numel() for _, p in trainable)
        return super().prepare(model, trainable)

    def _synchronize(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self, train_model, batch, optimizer, params):
        if not self.state_bytes:  # the warm-up step
            with PeakMemory(self.device) as memory:
                loss = super().step(train_model, batch, optimizer, params)
            self.peak, self.state_bytes = memory.peak, optimizer_state_bytes(optimizer)
        else:
            self._synchronize()
            started = time.perf_counter()
            loss = super().step(train_model, batch, optimizer, params)
            self._synchronize()
            self.seconds.append(time.perf_counter() - started)
        self.progress.update(1)
        return loss


# ---------------------------------------------------------------------------------------------
# Models


@dataclass
class Setup:
    """One model to measure, and how."""

    label: str
    architecture: dict
    base_size: int
    base_rows: int
    target_size: int
    batch: int
    seq_len: int
    pad_to_multiple_of: int  # the extended rows are padded to this (the profile's vocabulary setting)
    profile: str  # whose training settings (weight decay, clipping, learning rates) apply
    notes: list[str]  # what was cut down, said in the report
    full_layers: int | None = None  # the depth of the model this one stands for, if it was cut down


def setups(args, device: torch.device) -> list[Setup]:
    from eeve_lib.method.base_model import padded_rows
    from eeve_lib.pipeline.profiles import load_profile

    out = []
    if "tiny" in args.models:
        tiny = load_profile("tiny")
        base = tiny.base_model.tokenizer_vocab_size
        out.append(Setup("tiny phi (the tiny profile's architecture)", dict(tiny.base_model.architecture), base,
                         padded_rows(base, tiny.base_model.pad_vocab_to_multiple_of), TINY_TARGET_TOKENS,
                         tiny.training.batch_size, tiny.training.seq_len, tiny.vocabulary.pad_to_multiple_of,
                         "tiny", []))
    if "phi2" in args.models:
        # full-dry's base model is phi-2's configuration and tokenizer size with random weights.
        phi2 = load_profile("full-dry").base_model
        architecture = dict(phi2.architecture)
        on_gpu = device.type == "cuda"
        architecture["num_hidden_layers"] = args.layers or (PHI2_LAYERS if on_gpu else 2)
        seq_len = args.seq_len or (FULL_SEQ_LEN if on_gpu else 64)
        batch = args.batch or 1
        notes = []
        if architecture["num_hidden_layers"] != PHI2_LAYERS:
            notes.append(f"layers: {architecture['num_hidden_layers']} of phi-2's {PHI2_LAYERS}")
        if (batch, seq_len) != (FULL_BATCH, FULL_SEQ_LEN):
            notes.append(f"batch: {batch} x {seq_len} tokens (the full profile trains {FULL_BATCH} x {FULL_SEQ_LEN})")
        base = phi2.tokenizer_vocab_size
        out.append(Setup("phi-2-shaped phi, random weights", architecture, base,
                         padded_rows(base, phi2.pad_vocab_to_multiple_of), base + args.new_tokens, batch, seq_len,
                         load_profile("full").vocabulary.pad_to_multiple_of, "full", notes, PHI2_LAYERS))
    return out


def build_model(setup: Setup, seed: int, device: torch.device):
    """A phi whose embeddings already have the extended rows, and the Extension describing them."""
    from transformers import PhiForCausalLM

    from eeve_lib.method.base_model import build_phi_config
    from eeve_lib.method.embedding_init import Extension, plan_rows
    from eeve_lib.runtime import deterministic, seeded

    rows = plan_rows(setup.base_rows, setup.target_size, setup.pad_to_multiple_of)
    ext = Extension(setup.base_size, setup.target_size, setup.base_rows, rows, "random")
    config = build_phi_config(setup.architecture, rows, eos_id=0)
    with seeded(seed), deterministic(), torch.device(device):
        model = PhiForCausalLM(config)
    return model, ext


def parameter_counts(model) -> dict[str, int]:
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    embedding_ids = {id(p) for m in (inp, out) for p in m.parameters()}
    return {"total": sum(p.numel() for p in model.parameters()),
            "input embedding": inp.weight.numel(),
            "output embedding (with bias)": sum(p.numel() for p in out.parameters()),
            "transformer": sum(p.numel() for p in model.parameters() if id(p) not in embedding_ids)}


# ---------------------------------------------------------------------------------------------
# Report


def partial_rotary_factor(config) -> float:
    """Where the config keeps it: ``rope_parameters`` in transformers 5, an attribute before."""
    rope = getattr(config, "rope_parameters", None) or {}
    return rope.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", None))


def _records():
    """benchmarks/records.py, whether this file runs as a script or is imported as ``benchmarks.stage_training``."""
    try:
        import records
    except ImportError:
        from benchmarks import records
    return records


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def mfu(result: StageResult, tokens_per_step: int, peak: dict) -> float:
    """Model FLOPs utilisation of a stage: its model FLOPs per second over the matmul peak."""
    return result.flops_per_token * tokens_per_step / result.step_seconds / peak["flops_per_second"]


def report(setup: Setup, model_config, ext, counts: dict[str, int], results: list[StageResult], device, dtype,
           steps: int, build_seconds: float, peak: dict) -> tuple[dict, list[dict]]:
    """Print one setup's table and targets; return them for the record (the setup, its targets).
    ``peak``: the matmul peak in ``dtype`` (:func:`matmul_peak`), for MFU."""
    records = _records()
    kind = "bf16 autocast" if dtype == torch.bfloat16 else "float32"
    tokens = setup.batch * setup.seq_len

    hidden = model_config.hidden_size
    print(f"\n== {setup.label}, {kind} ==")
    print(f"architecture: hidden {hidden}, {model_config.num_attention_heads} heads, MLP "
          f"{model_config.intermediate_size}, {model_config.num_hidden_layers} layers, partial rotary factor "
          f"{partial_rotary_factor(model_config)}")
    print(f"vocabulary: {ext.base_size:,} base tokens in {ext.base_rows:,} rows -> {ext.target_size:,} tokens "
          f"({ext.n_new:,} new) in {ext.rows:,} rows")
    print("parameters: " + ", ".join(f"{name} {n:,}" for name, n in counts.items())
          + f" (random init in {build_seconds:.1f} s)")
    print(f"run: {device.type}, {kind}, "
          f"batch {setup.batch} x {setup.seq_len} tokens, {steps} timed step(s) per stage after 1 warm-up step, "
          f"torch threads {torch.get_num_threads()}, training settings of the {setup.profile} profile")
    if setup.notes:
        print(f"reduced to fit this {device.type.upper()}: " + "; ".join(setup.notes))
    layers = model_config.num_hidden_layers
    if setup.full_layers and layers != setup.full_layers:
        embeddings = counts["input embedding"] + counts["output embedding (with bias)"]
        full_body = counts["transformer"] / layers * setup.full_layers
        print(f"note: the embeddings hold {embeddings / counts['total']:.0%} of the parameters with {layers} layers "
              f"but {embeddings / (embeddings + full_body):.0%} with {setup.full_layers}, so stages that train only "
              f"embeddings cost relatively more here than at full depth")
    six = next(r for r in results if r.number == 6)
    print(f"matmul peak ({kind.split()[0]}, {peak['threads']} threads, {peak['size']}^3): "
          f"{peak['flops_per_second'] / 1e9:.1f} GFLOP/s")
    print(f"{'stage':<5} {'what trains':<36} {'trainable':>13} {'step s':>9} {'x stage 6':>9} "
          f"{'peak MB':>9} {'x stage 6':>9} {'MFU':>6} {'optimizer state B':>18}")
    for r in results:
        print(f"{r.number:<5} {r.name:<36} {r.trainable:>13,} {r.step_seconds:>9.4f} "
              f"{r.step_seconds / six.step_seconds:>9.2f} {r.peak_bytes / 2**20:>9.1f} "
              f"{r.peak_bytes / six.peak_bytes if six.peak_bytes > 0 else float('nan'):>9.2f} "
              f"{mfu(r, tokens, peak):>6.1%} {r.optimizer_state_bytes:>18,}")
    by_number = {r.number: r for r in results}
    short = setup.label.split(",")[0].split(" (")[0] + f", {kind}"
    targets = []
    print("targets:")
    for number in (2, 4):
        ratio = by_number[number].step_seconds / six.step_seconds
        print(f"  stage {number} step <= {STEP_RATIO_TARGET:g} x stage 6 step: {ratio:.3f}x  "
              f"{verdict(ratio <= STEP_RATIO_TARGET)}")
        targets.append(records.target(f"{short}: stage {number} step", f"{short}: stage {number} step <= "
                                      f"{STEP_RATIO_TARGET:g}x stage 6 step", STEP_RATIO_TARGET, ratio,
                                      ratio <= STEP_RATIO_TARGET, "x"))
    bound = ext.n_new * hidden * 8
    ratio = by_number[1].optimizer_state_bytes / bound
    print(f"  stage 1 optimizer state <= {STATE_RATIO_TARGET:g} x new rows x hidden x 8 B ({bound:,} B): "
          f"{by_number[1].optimizer_state_bytes:,} B = {ratio:.3f}x  {verdict(ratio <= STATE_RATIO_TARGET)}")
    targets.append(records.target(f"{short}: stage 1 optimizer state", f"{short}: stage 1 optimizer state <= "
                                  f"{STATE_RATIO_TARGET:g}x new rows x hidden x 8 B", STATE_RATIO_TARGET, ratio,
                                  ratio <= STATE_RATIO_TARGET, "x"))
    numbers = {"label": f"{setup.label}, {kind}", "device": device.type,
               "dtype": "bfloat16 autocast" if dtype == torch.bfloat16 else "float32", "matmul_peak": peak, "batch": setup.batch, "seq_len": setup.seq_len, "timed_steps": steps,
               "torch_threads": torch.get_num_threads(), "reduced": setup.notes, "parameters": counts,
               "architecture": {"hidden": hidden, "heads": model_config.num_attention_heads,
                                "mlp": model_config.intermediate_size, "layers": layers},
               "vocabulary": {"base": ext.base_size, "base_rows": ext.base_rows, "target": ext.target_size,
                              "rows": ext.rows},
               "run": f"{device.type}, {kind}, batch "
                      f"{setup.batch} x {setup.seq_len} tokens, torch threads {torch.get_num_threads()}"
                      + (f"; reduced: {'; '.join(setup.notes)}" if setup.notes else ""),
               "stages": {str(r.number): {**asdict(r), "step_over_stage6": r.step_seconds / six.step_seconds,
                                          "tokens_per_second": tokens / r.step_seconds,
                                          "peak_over_stage6": r.peak_bytes / six.peak_bytes
                                          if six.peak_bytes > 0 else None, "mfu": mfu(r, tokens, peak)}
                          for r in results}}
    return numbers, targets


def main(argv=None) -> int:
    args = parse_args(argv)
    started_at, load_at_start = time.time(), os.getloadavg()[0]
    from tqdm import tqdm

    from eeve_lib.errors import EeveError
    from eeve_lib.pipeline.profiles import load_profile
    from eeve_lib.runtime import deterministic, generator, resolve_device

    try:
        device = resolve_device(args.device)
    except EeveError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    dtypes = [DTYPES[d] for d in args.dtypes] if args.dtypes else \
        ([torch.bfloat16] if device.type == "cuda" else list(DTYPES.values()))
    print("Seven-stage training: time per step, peak memory, optimizer state and model FLOPs utilisation of "
          "each stage, side by side.")
    print(f"machine: {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
          f"{psutil.cpu_count()} CPU cores, {psutil.virtual_memory().total / 2**30:.1f} GiB memory, "
          f"load average {psutil.getloadavg()[0]:.2f}; torch {torch.__version__}")
    # measured first, in this process and at its threads: what MFU is measured against
    peaks = {dtype: matmul_peak(device, dtype, sizes=(512,) if args.quick else (1024, 2048)) for dtype in dtypes}

    recorded, targets = [], []
    for setup, dtype in ((setup, dtype) for setup in setups(args, device) for dtype in dtypes):
        settings = load_profile(setup.profile).training
        learning_rates = {b.stage: b.learning_rate for b in settings.schedule}
        started = time.perf_counter()
        model, ext = build_model(setup, args.seed, device)
        build_seconds = time.perf_counter() - started
        counts = parameter_counts(model)
        g = generator(args.seed + 1)
        batches = torch.randint(0, ext.target_size, (args.steps + 1, setup.batch, setup.seq_len),
                                generator=g).to(device)
        with tqdm(total=7 * (args.steps + 1), desc=setup.label.split(",")[0], unit="step", file=sys.stderr) as bar, \
                deterministic():  # as run_schedule trains
            results = measure_stages(model, ext, batches, settings, learning_rates, device,
                                     autocast_for(device, dtype), bar)
        numbers, setup_targets = report(setup, model.config, ext, counts, results, device, dtype, args.steps,
                                        build_seconds, peaks[dtype])
        recorded.append(numbers)
        targets += setup_targets
        del model
        _release_freed_memory()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    record_dir = args.record_dir or (None if args.quick else _records().default_directory())
    if record_dir is not None:
        path = _records().write("stage_training", {"setups": recorded, "seed": args.seed,
                                                "matmul_peak": {str(d).removeprefix("torch."): p
                                                                for d, p in peaks.items()}},
                             script="stage_training.py", argv=argv, directory=record_dir, quick=args.quick,
                             targets=targets, started=started_at, load_at_start=load_at_start)
        print(f"\nrecorded in {path}")
    else:
        print("\nnot recorded (--quick without --record-dir)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
