"""Throughput of four exact ways to count every token's frequency over Korean text (step 4, chapter 02).

Measured side by side in one run, on the same NSMC movie reviews and the same tokenizer, at
several corpus sizes; throughput is MB/s of UTF-8 input:

  naive              ``naive_token_counts``: one ``encode`` per review in a Python loop
  encode_batch       ``batch_token_counts(fast=False)``: the tokenizer's ``encode_batch``
  encode_batch_fast  ``batch_token_counts(fast=True)``: ``encode_batch_fast`` (no offsets)
  counter            ``count_token_frequencies``: count the distinct words once, encode each once;
                     with its default workers (helper processes for multi-batch streams) and
                     with ``workers=1`` (this process only)

The tokenizer is an 8k-token byte-level BPE of the GPT-2/phi-2 kind (``train_byte_level_bpe``)
trained on reviews that precede the measured ones in the file, so it never saw the measured text.
Every method must return the identical count array; the script exits with status 1 if not.

The project's target: the counter reaches at least 2x the throughput of raw ``encode_batch`` on
16 MB of reviews. Ratios are measured side by side because the machine may be shared: absolute
MB/s move with its load (printed), ratios much less. Fast methods: best of ``--repeats`` runs,
interleaved so that a burst of load hits every method alike; the naive loop runs once.

    python benchmarks/token_counting.py                 # 2, 8 and 16 MB
    python benchmarks/token_counting.py --quick         # a smoke run of a few seconds
    python benchmarks/token_counting.py --megabytes 4 32 --repeats 2

The reviews are read through ``$EEVE_DATA_DIR`` (the ``nsmc-reviews`` entry of the ``small``
data manifest, checksum verified).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Heavy imports (numpy, transformers, eeve_lib) happen inside main(): the counter's helper
# processes are spawned and re-import this file, and should not pay for them.

TARGET_RATIO = 2.0  # counter / raw encode_batch
TARGET_MEGABYTES = 16.0
MB = 1_000_000


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the module docstring for what is measured and how.")
    parser.add_argument("--megabytes", type=float, nargs="+", default=[2.0, 8.0, 16.0],
                        help="corpus sizes to measure, in MB of UTF-8 reviews (default: 2 8 16)")
    parser.add_argument("--train-megabytes", type=float, default=4.0,
                        help="MB of other reviews to train the tokenizer on (default: 4)")
    parser.add_argument("--vocab-size", type=int, default=8000, help="tokenizer size (default: 8000)")
    parser.add_argument("--added-tokens", type=int, default=0,
                        help="phi-2-style whitespace added tokens in the tokenizer (default: 0; phi-2 has 38)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each fast method per size; the best counts (default: 3)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 0.25 and 0.5 MB, a 1 MB tokenizer training slice, one repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.megabytes, args.train_megabytes, args.repeats = [0.25, 0.5], 1.0, 1
    if min(args.megabytes) <= 0 or args.train_megabytes <= 0 or args.repeats < 1:
        parser.error("sizes must be positive and --repeats at least 1")
    return args


def use_shared_data_if_unset() -> None:
    """Fall back to the shared data beside a checkout when ``$EEVE_DATA_DIR`` is unset (said aloud)."""
    from eeve_lib.pipeline.sources import DATA_DIR_VARIABLE

    if os.environ.get(DATA_DIR_VARIABLE):
        return
    fallback = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if fallback.is_dir():
        os.environ[DATA_DIR_VARIABLE] = str(fallback)
        print(f"{DATA_DIR_VARIABLE} is not set; using {fallback}")
    # Otherwise reading the corpus raises the data layer's error, which says how to set it.


def read_reviews(train_bytes: float, measure_bytes: float) -> tuple[list[str], list[str]]:
    """The first reviews of NSMC for tokenizer training, and the reviews after them to measure."""
    from eeve_lib.pipeline.corpora import iter_documents, load_manifest

    entry = load_manifest("small")["nsmc-reviews"]
    train, measure = [], []
    size = 0
    for review in iter_documents(entry):
        if size < train_bytes:
            train.append(review)
        else:
            measure.append(review)
        size += len(review.encode("utf-8"))
        if size >= train_bytes + measure_bytes:
            break
    return train, measure


def prefix_of_size(texts: list[str], megabytes: float) -> tuple[list[str], int]:
    """The shortest prefix of ``texts`` holding at least ``megabytes`` of UTF-8, and its byte size."""
    size = 0
    for i, text in enumerate(texts):
        size += len(text.encode("utf-8"))
        if size >= megabytes * MB:
            return texts[:i + 1], size
    return texts, size


def measure(methods: dict, repeats: dict, texts: list[str], progress) -> tuple[dict, dict]:
    """Best seconds of each method over its repeats (interleaved), and each method's count arrays."""
    seconds = {name: float("inf") for name in methods}
    results: dict = {name: [] for name in methods}
    for round_ in range(max(repeats.values())):
        for name, method in methods.items():
            if round_ >= repeats[name]:
                continue
            progress.set_postfix_str(name)
            started = time.perf_counter()
            counts = method(texts)
            seconds[name] = min(seconds[name], time.perf_counter() - started)
            results[name].append(counts)
            progress.update(1)
    return seconds, results


def main(argv=None) -> int:
    args = parse_args(argv)
    use_shared_data_if_unset()

    import numpy as np
    import tokenizers
    from tqdm import tqdm

    from counting_baselines import batch_token_counts, naive_token_counts
    from eeve_lib.errors import EeveError
    from eeve_lib.method.families.byte_level import train_byte_level_bpe
    from eeve_lib.method.token_frequency import _MIN_BATCHES_FOR_HELPERS, count_token_frequencies

    sizes = sorted(set(args.megabytes))
    try:
        train_texts, measure_texts = read_reviews(args.train_megabytes * MB, max(sizes) * MB)
    except EeveError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    tokenizer = train_byte_level_bpe(train_texts, args.vocab_size, added_tokens=args.added_tokens)
    train_seconds = time.perf_counter() - started
    available = sum(len(t.encode("utf-8")) for t in measure_texts) / MB
    if available < max(sizes) * 0.999:
        print(f"note: only {available:.2f} MB of reviews remain after the training slice; "
              f"the largest size is capped there")

    methods = {
        "naive": lambda texts: naive_token_counts(tokenizer, texts),
        "encode_batch": lambda texts: batch_token_counts(tokenizer, texts, fast=False),
        "encode_batch_fast": lambda texts: batch_token_counts(tokenizer, texts, fast=True),
        "counter": lambda texts: count_token_frequencies(tokenizer, texts, progress=False),
        "counter w=1": lambda texts: count_token_frequencies(tokenizer, texts, progress=False, workers=1),
    }
    repeats = {name: 1 if name == "naive" else args.repeats for name in methods}

    print("Token counting: MB/s of UTF-8 input, higher is better; every method counts every token exactly.")
    print(f"tokenizer: byte-level BPE (GPT-2/phi-2 kind), {len(tokenizer):,} tokens "
          f"({args.added_tokens} added whitespace tokens), trained in {train_seconds:.1f} s on the first "
          f"{len(train_texts):,} NSMC reviews ({args.train_megabytes:g} MB); measured on the reviews after them")
    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} at start; counter default "
          f"workers = {os.cpu_count()} (this process and {os.cpu_count() - 1} helper(s), for streams of at least "
          f"{_MIN_BATCHES_FOR_HELPERS} batches of 4,096 reviews); "
          f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', '(unset: parallel)')}; "
          f"tokenizers {tokenizers.__version__}")
    print(f"timing: best of {args.repeats} interleaved run(s) per fast method, 1 run of the naive loop\n")

    rows = []
    all_identical = True
    total_runs = len(sizes) * sum(repeats.values())
    with tqdm(total=total_runs, desc="measuring", unit="run", file=sys.stderr) as progress:
        for megabytes in sizes:
            texts, nbytes = prefix_of_size(measure_texts, megabytes)
            seconds, results = measure(methods, repeats, texts, progress)
            reference = results["encode_batch"][0]
            identical = all(np.array_equal(reference, counts) for runs in results.values() for counts in runs)
            all_identical &= identical
            rows.append((nbytes, len(texts), {name: nbytes / MB / s for name, s in seconds.items()},
                         identical, int(reference.sum())))

    columns = {"naive": "naive", "encode_batch": "enc_batch", "encode_batch_fast": "enc_fast",
               "counter": "counter", "counter w=1": "counter_w1"}
    print("MB/s per method (enc_batch = encode_batch, enc_fast = encode_batch_fast, counter_w1 = counter with "
          "workers=1); ratios are the counter's (default workers) unless named")
    print(f"{'MB':>6} {'reviews':>8} {'tokens':>10} " + " ".join(f"{c:>10}" for c in columns.values())
          + f" {'ctr/batch':>9} {'ctr/fast':>9} {'ctr/naive':>9} {'w1/batch':>9} {'identical':>9}")
    for nbytes, n_texts, speed, identical, n_tokens in rows:
        print(f"{nbytes / MB:>6.2f} {n_texts:>8,} {n_tokens:>10,} " + " ".join(f"{speed[n]:>10.2f}" for n in columns)
              + f" {speed['counter'] / speed['encode_batch']:>8.2f}x"
              + f" {speed['counter'] / speed['encode_batch_fast']:>8.2f}x"
              + f" {speed['counter'] / speed['naive']:>8.2f}x"
              + f" {speed['counter w=1'] / speed['encode_batch']:>8.2f}x"
              + f" {'yes' if identical else 'NO':>9}")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    print(f"identical counts (all methods, all runs, all sizes): {'yes' if all_identical else 'NO'}")

    largest_bytes, _, speed, _, _ = rows[-1]
    ratio = speed["counter"] / speed["encode_batch"]
    verdict = "MET" if ratio >= TARGET_RATIO else "NOT MET"
    if args.quick:
        print(f"target (counter >= {TARGET_RATIO:g}x encode_batch at {TARGET_MEGABYTES:g} MB): not evaluated "
              f"in --quick mode (at {largest_bytes / MB:.2f} MB: {ratio:.2f}x)")
    elif largest_bytes < TARGET_MEGABYTES * MB * 0.999:
        print(f"target (counter >= {TARGET_RATIO:g}x encode_batch at {TARGET_MEGABYTES:g} MB): not measured at "
              f"{TARGET_MEGABYTES:g} MB; at the largest size, {largest_bytes / MB:.2f} MB: {ratio:.2f}x")
    else:
        print(f"target: counter >= {TARGET_RATIO:g}x encode_batch at {largest_bytes / MB:.2f} MB: "
              f"{ratio:.2f}x  {verdict}")
    return 0 if all_identical else 1


if __name__ == "__main__":
    sys.exit(main())
