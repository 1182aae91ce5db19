"""Throughput and peak memory of exact token counting over Korean text, up to 1 GB (step 4, chapter 02).

The paper counted token frequencies over about 100 GB of Korean text. This measures, side by side
in one run on the same text and the same tokenizer, at 16 MB, 128 MB and 1 GB (1 MB = 10^6 bytes
of UTF-8):

  counter            ``count_token_frequencies``: count the distinct words once (streamed in
                     batches, in this process and one helper process per further core), then
                     encode each distinct word once
  encode_batch       ``batch_token_counts``: ``encode_batch`` over batches of 4,096 documents,
                     the counts of each batch summed (it streams too)
  naive              ``naive_token_counts``: one ``encode`` per document in a Python loop
  encode_batch_fast  ``encode_batch_fast`` (no offsets), and
  counter w=1        the counter in this process only (``workers=1``)

The last three run at 16 MB and below only (the naive loop would take an hour at 1 GB). Every
method must return the identical count array at every size; the script exits with status 1 if not.

The text: the reviews of NSMC (the ``nsmc-reviews`` entry of the ``small`` data manifest) after
the first ``--train-megabytes`` (on which the 8k-token byte-level BPE of the GPT-2/phi-2 kind is
trained, so it never sees the measured text), preceded by the law texts of KoNLPy (the
Constitution of Korea, ``konlpy-kolaw``): about 70 MB in all. Where a size needs more, the same
documents follow again, each pass in a new shuffled order (fixed seeds), so the 1 GB corpus is
that text about fourteen times: its distinct words stop growing after the first pass, which fresh
text would not do (the record says so, and fits Heaps' law to the first pass for the
extrapolation). The corpus is written once to a temporary file, one document per line, and every
method streams it from there.

Each measurement runs in a fresh process; its time is the method's wall time inside that process
(imports and the tokenizer's loading excluded), its memory the peak resident set size of the
process tree (the process and its helper processes, summed), sampled every 20 ms with psutil, and
the process's start size before the method ran. Fast methods at 16 MB and below: best time of
``--repeats`` runs, interleaved; above 16 MB each method runs once.

Targets (the project's): the counter at least 3x the throughput of ``encode_batch`` at 1 GB; the
counter's peak memory at 1 GB within 1.5x of its peak at 128 MB; and (the earlier target) at least
2x ``encode_batch`` at 16 MB. From the numbers it extrapolates the time to count 100 GB on 2 and on
64 cores (the assumptions are printed and recorded).

The result, with commit, date, machine and command, goes to ``results/benchmarks/token_counting.json``
(``--record-dir`` elsewhere; ``--quick`` records only with ``--record-dir``). Ratios are measured
side by side because the machine may be shared: absolute MB/s move with its load (recorded).

    python benchmarks/token_counting.py                      # 16 MB, 128 MB, 1 GB (8-20 min on 2 cores)
    python benchmarks/token_counting.py --quick              # a smoke run of seconds, not recorded
    python benchmarks/token_counting.py --megabytes 16 128 --record-dir /tmp/records
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Heavy imports (numpy, transformers, eeve_lib) happen inside functions: the counter's helper
# processes are spawned and re-import this file, and should not pay for them.

MB = 1_000_000
SIZES = [16.0, 128.0, 1000.0]  # MB
SMALL_MEGABYTES = 16.0  # at and below: every method, and repeats
SPEED_TARGET = (3.0, 1000.0)  # counter / encode_batch, at this many MB
MEMORY_TARGET = (1.5, 128.0, 1000.0)  # counter's peak at the second size / at the first
EARLIER_TARGET = (2.0, 16.0)  # counter / encode_batch at 16 MB (the project's first target)
BATCH = 4096  # documents per batch (the counter's and the encode_batch baseline's)
SAMPLE_SECONDS = 0.02
SMALL_METHODS = ("naive", "encode_batch", "encode_batch_fast", "counter", "counter w=1")
LARGE_METHODS = ("encode_batch", "counter")
HEAPS_CHECKPOINTS_MB = (1, 2, 4, 8, 16, 32, 64)
SHUFFLE_SEED = 25


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the module docstring for what is measured and how.")
    parser.add_argument("--megabytes", type=float, nargs="+", default=SIZES,
                        help="corpus sizes, in MB of UTF-8 text (default: 16 128 1000)")
    parser.add_argument("--train-megabytes", type=float, default=4.0,
                        help="MB of the first reviews to train the tokenizer on (default: 4)")
    parser.add_argument("--pool-megabytes", type=float, default=None,
                        help="use only this many MB of reviews after the training slice (default: all)")
    parser.add_argument("--vocab-size", type=int, default=8000, help="tokenizer size (default: 8000)")
    parser.add_argument("--added-tokens", type=int, default=0,
                        help="phi-2-style whitespace added tokens in the tokenizer (default: 0; phi-2 has 38)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each fast method at 16 MB and below; the best counts (default: 3)")
    parser.add_argument("--record-dir", type=Path, default=None,
                        help="where to write token_counting.json (default: results/benchmarks; "
                             "--quick records only here)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the temporary corpus file goes (default: the system's temporary folder)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 0.2 and 0.5 MB from a pool of 0.3 MB (so repeated and shuffled), "
                             "a 1 MB tokenizer training slice, one repeat")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one measurement, in its own process
    args = parser.parse_args(argv)
    if args.quick:
        args.megabytes, args.train_megabytes, args.repeats = [0.2, 0.5], 1.0, 1
        args.pool_megabytes = 0.3
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


# ---------------------------------------------------------------------------------------------
# The corpus


def read_texts(train_bytes: float, pool_bytes: float | None) -> tuple[list[str], list[str], dict]:
    """The first NSMC reviews (tokenizer training), and the law texts followed by the reviews after them."""
    from eeve_lib.pipeline.corpora import iter_documents, load_manifest

    manifest = load_manifest("small")
    law = [doc for doc in iter_documents(manifest["konlpy-kolaw"]) if "\n" not in doc]
    train, reviews = [], []
    size = pool = 0
    for review in iter_documents(manifest["nsmc-reviews"]):
        n = len(review.encode("utf-8"))
        if "\n" in review:
            continue  # one document per line in the corpus file (NSMC has none)
        if size < train_bytes:
            train.append(review)
            size += n
            continue
        if pool_bytes is not None and pool >= pool_bytes:
            break
        reviews.append(review)
        pool += n
    sources = {"law": {"entry": "konlpy-kolaw", "documents": len(law),
                       "bytes": sum(len(d.encode("utf-8")) for d in law)},
               "reviews": {"entry": "nsmc-reviews", "documents": len(reviews), "bytes": pool,
                           "skipped_for_training": {"documents": len(train), "bytes": size}}}
    return train, law + reviews, sources


def write_corpus(path: Path, pool: list[str], sizes_bytes: list[float]) -> dict[float, dict]:
    """Write documents of ``pool`` to ``path``, one per line, until the largest size is reached: the
    pool in order, then again in a new shuffled order per pass. Returns, for each size, the number
    of documents (the shortest prefix of at least that many bytes), their bytes and the passes."""
    import numpy as np

    nbytes = np.fromiter((len(d.encode("utf-8")) for d in pool), dtype=np.int64, count=len(pool))
    rng = np.random.default_rng(SHUFFLE_SEED)
    wanted = sorted(sizes_bytes)
    cuts: dict[float, dict] = {}
    written = documents = passes = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        while len(cuts) < len(wanted):
            order = np.arange(len(pool)) if passes == 0 else rng.permutation(len(pool))
            ends = written + np.cumsum(nbytes[order])
            last = len(order)  # documents of this pass written: all, unless the largest size ends in it
            for size in wanted:
                if size in cuts or ends[-1] < size:
                    continue
                k = int(np.searchsorted(ends, size)) + 1  # documents of this pass in the prefix
                cuts[size] = {"documents": documents + k, "bytes": int(ends[k - 1]), "passes": passes + k / len(order)}
                if size == wanted[-1]:
                    last = k
            for start in range(0, last, 65536):
                f.write("".join(pool[i] + "\n" for i in order[start:min(last, start + 65536)]))
            written, documents, passes = int(ends[last - 1]), documents + last, passes + 1
    return cuts


def stream(path: str, documents: int):
    """The first ``documents`` lines of the corpus file, without their newline: read as they are used."""
    import itertools
    import operator

    handle = open(path, encoding="utf-8", newline="\n")
    return map(operator.itemgetter(slice(None, -1)), itertools.islice(handle, documents))


def heaps_curve(tokenizer, pool: list[str], total_bytes: int) -> list[tuple[int, int]]:
    """Distinct words against bytes over the first pass (the pool in order): (bytes, distinct words)."""
    from collections import Counter

    from eeve_lib.method.families import family_of, tokenizer_json
    from eeve_lib.method.token_frequency import _Splitter

    splitter = _Splitter(family_of(tokenizer).splitter_settings(tokenizer_json(tokenizer)))
    words: Counter = Counter()
    added: Counter = Counter()
    points, nbytes = [], 0
    checkpoints = [c * MB for c in HEAPS_CHECKPOINTS_MB if c * MB < total_bytes] + [total_bytes]
    for start in range(0, len(pool), BATCH):
        _, b = splitter.count_into(pool[start:start + BATCH], words, added)
        nbytes += b
        while checkpoints and nbytes >= checkpoints[0] * 0.999:
            points.append((nbytes, len(words)))
            checkpoints.pop(0)
    return points


def heaps_fit(points: list[tuple[int, int]]) -> dict | None:
    """Distinct words = k x bytes^beta, least squares on logs (points of at least 1 MB; needs 3)."""
    import numpy as np

    usable = [(b, v) for b, v in points if b >= MB]
    if len(usable) < 3:
        return None
    x, y = np.log([b for b, _ in usable]), np.log([v for _, v in usable])
    beta, log_k = np.polyfit(x, y, 1)
    return {"k": float(np.exp(log_k)), "beta": float(beta), "points": len(usable)}


# ---------------------------------------------------------------------------------------------
# One measurement, in a fresh process


def child(spec: dict) -> None:
    """Run one method on the first ``documents`` lines of the corpus; print its time and counts' file."""
    import numpy as np
    import psutil
    import tokenizers

    from counting_baselines import batch_token_counts, naive_token_counts
    from eeve_lib.method import token_frequency

    tokenizer = tokenizers.Tokenizer.from_file(spec["tokenizer"])
    phases: dict = {}
    if spec["method"].startswith("counter"):
        encode = token_frequency.token_counts

        def timed_token_counts(tok, word_counts, **kwargs):
            # count_token_frequencies' second phase: encoding the distinct words once each
            phases["words_seconds"] = time.perf_counter() - started
            phases["distinct_words"] = len(word_counts.words)
            begun = time.perf_counter()
            out = encode(tok, word_counts, **kwargs)
            phases["encode_seconds"] = time.perf_counter() - begun
            return out

        token_frequency.token_counts = timed_token_counts
    methods = {
        "naive": lambda texts: naive_token_counts(tokenizer, texts),
        "encode_batch": lambda texts: batch_token_counts(tokenizer, texts, fast=False, batch_size=BATCH),
        "encode_batch_fast": lambda texts: batch_token_counts(tokenizer, texts, fast=True, batch_size=BATCH),
        "counter": lambda texts: token_frequency.count_token_frequencies(tokenizer, texts, progress=False,
                                                                         batch_size=BATCH),
        "counter w=1": lambda texts: token_frequency.count_token_frequencies(tokenizer, texts, progress=False,
                                                                             batch_size=BATCH, workers=1),
    }
    import resource

    def cpu_seconds() -> float:  # this process and its helpers (counted once they have exited)
        own, helpers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + helpers.ru_utime + helpers.ru_stime

    texts = stream(spec["corpus"], spec["documents"])
    start_rss = psutil.Process().memory_info().rss
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    counts = methods[spec["method"]](texts)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    np.save(spec["counts"], counts)
    print("RESULT " + json.dumps({"seconds": seconds, "cpu_seconds": cpu, "start_rss": start_rss, **phases,
                                  "peak_rss_self": own_peak_rss(),
                                  "peak_rss_largest_helper": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                                  * 1024}))


def own_peak_rss() -> int | None:
    """This process's peak RSS in bytes (Linux's VmHWM; ``ru_maxrss`` would carry over the forking
    parent's peak across ``exec``), or None where /proc does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class LoadSampler(threading.Thread):
    """The machine's one-minute load average every 10 s while the benchmark runs: how busy it was."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples, self.done = [], threading.Event()

    def run(self):
        while not self.done.is_set():
            self.samples.append(os.getloadavg()[0])
            self.done.wait(10.0)

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {"mean": sum(s) / len(s), "max": max(s), "min": min(s), "samples": len(s), "interval_seconds": 10.0}


class TreePeak(threading.Thread):
    """The peak of the summed RSS of a process and all its descendants, sampled every SAMPLE_SECONDS."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self):
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.done.is_set():
            try:
                total = root.memory_info().rss
                for p in root.children(recursive=True):
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            self.done.wait(SAMPLE_SECONDS)


def measure_once(method: str, corpus: Path, documents: int, tokenizer: Path, counts: Path) -> dict:
    spec = {"method": method, "corpus": str(corpus), "documents": documents, "tokenizer": str(tokenizer),
            "counts": str(counts)}
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreePeak(process.pid)
    sampler.start()
    try:
        out, err = process.communicate()
    finally:
        if process.poll() is None:  # this script was stopped: stop the measurement too
            process.kill()
            process.wait()
        sampler.done.set()
        sampler.join()
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"measuring {method} on {documents:,} documents failed (exit {process.returncode}):\n"
                           + err[-4000:])
    result = json.loads(lines[-1][len("RESULT "):])
    result["peak_tree_rss"] = sampler.peak
    return result


def measure_size(methods: list[str], repeats: dict[str, int], corpus: Path, documents: int, tokenizer: Path,
                 work: Path, progress, label: str) -> tuple[dict, bool]:
    """Every method on one prefix (interleaved rounds); each method's best time, largest peak, and
    whether every run's counts equal the first encode_batch run's."""
    import numpy as np

    best: dict[str, dict] = {}
    reference = None
    identical = True
    for round_ in range(max(repeats.values())):
        for method in methods:
            if round_ >= repeats[method]:
                continue
            progress.set_postfix_str(f"{label}, {method}")
            path = work / "counts.npy"
            result = measure_once(method, corpus, documents, tokenizer, path)
            progress.update(1)
            counts = np.load(path)
            if reference is None:
                reference = counts
            identical &= bool(np.array_equal(reference, counts))
            result["tokens"] = int(counts.sum())
            kept = best.get(method)
            if kept is None or result["seconds"] < kept["seconds"]:
                peak = max(result["peak_tree_rss"], kept["peak_tree_rss"] if kept else 0)
                best[method] = {**result, "peak_tree_rss": peak, "runs": round_ + 1}
            else:
                kept["peak_tree_rss"] = max(kept["peak_tree_rss"], result["peak_tree_rss"])
                kept["runs"] = round_ + 1
    return best, identical


# ---------------------------------------------------------------------------------------------
# Reading the numbers


def feed_rate(corpus: Path, documents: int, nbytes: int) -> float:
    """MB/s at which one process reads the corpus file, cuts it into batches and pickles them: what
    the counter's first process must do for every batch it hands to a helper (an upper bound on
    how fast any number of helpers can be fed)."""
    import itertools
    import pickle

    texts = stream(str(corpus), documents)
    started = time.perf_counter()
    while batch := list(itertools.islice(texts, BATCH)):
        pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    return nbytes / MB / (time.perf_counter() - started)


def extrapolate(rows: list[dict], cores_here: int, feed: float, heaps: dict | None, target_gb: float) -> dict:
    """Time to count ``target_gb`` GB on 2 and on 64 cores, from the largest size's counter run.

    Assumptions (recorded with the numbers): word counting takes time linear in the text, and
    spreads linearly over processes at this run's rate per process, up to the rate at which one
    process can feed batches (``feed``); encoding the distinct words takes time linear in their
    number at this run's rate, spread linearly over cores (the tokenizer's threads); the distinct
    words of fresh text follow the Heaps' law fitted to the first pass (without a fit, as many as
    at the largest size). The final merge of the helpers' tables is not modelled. Memory: the
    tree's peak grows with the distinct words at the rate measured between the smallest and the
    largest size (bytes per distinct word); with more processes, each may hold every distinct word."""
    row = rows[-1]
    counter = row["methods"]["counter"]
    mb = row["bytes"] / MB
    words_rate = mb / counter["words_seconds"]  # MB/s with the counter's processes on this machine
    per_process = words_rate / counter["processes"]
    # the same work with a core to itself per process: the counter's MB per CPU second (all its processes)
    per_core = mb / counter["cpu_seconds"]
    encode_rate = counter["distinct_words"] / counter["encode_seconds"] / cores_here  # words/s per core
    total_mb = target_gb * 1000
    distinct = heaps["k"] * (total_mb * MB) ** heaps["beta"] if heaps else counter["distinct_words"]
    first = rows[0]["methods"]["counter"]
    grown = counter["distinct_words"] - first["distinct_words"]
    same = first["processes"] == counter["processes"]
    per_word = (counter["peak_tree_rss"] - first["peak_tree_rss"]) / grown if same and grown > 0 else None
    out = {"gigabytes": target_gb, "distinct_words": distinct, "per_process_words_mb_per_s": per_process,
           "feed_mb_per_s": feed, "encode_words_per_s_per_core": encode_rate, "cores": {},
           "tree_bytes_per_distinct_word": per_word, "processes_measured": counter["processes"]}
    out["per_core_cpu_mb_per_s"] = per_core
    for cores in (2, 64):
        counting = min(cores * per_process, feed)
        seconds = total_mb / counting + distinct / (encode_rate * cores)
        idle = total_mb / min(cores * per_core, feed)  # encoding included: per_core is the whole counter's
        memory = None
        if per_word is not None and per_word > 0:
            # each process's table may hold every distinct word: scale the per-process share
            per_process_bytes = counter["start_rss"] + per_word * distinct / counter["processes"]
            memory = cores * per_process_bytes
        out["cores"][str(cores)] = {"seconds": seconds, "hours": seconds / 3600, "peak_memory_bytes": memory,
                                    "seconds_a_core_each": idle, "feed_bound_a_core_each": cores * per_core > feed,
                                    "counting_mb_per_s": counting, "feed_bound": cores * per_process > feed}
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` still removes the temporary corpus
    started_at = time.time()
    load_at_start = os.getloadavg()[0]
    use_shared_data_if_unset()

    import tokenizers
    from tqdm import tqdm

    from eeve_lib.book.external import number
    from eeve_lib.errors import EeveError
    from eeve_lib.method.families.byte_level import train_byte_level_bpe
    from eeve_lib.method.token_frequency import _MIN_BATCHES_FOR_HELPERS

    sizes = sorted(set(args.megabytes))
    try:
        train_texts, pool, sources = read_texts(args.train_megabytes * MB,
                                                None if args.pool_megabytes is None else args.pool_megabytes * MB)
    except EeveError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    tokenizer = train_byte_level_bpe(train_texts, args.vocab_size, added_tokens=args.added_tokens)
    train_seconds = time.perf_counter() - started
    pool_bytes = sources["law"]["bytes"] + sources["reviews"]["bytes"]
    import records

    record_dir = args.record_dir or (None if args.quick else records.default_directory())
    load = LoadSampler()
    load.start()

    print("Token counting: MB/s of UTF-8 input (higher is better) and peak memory of the process tree; "
          "every method counts every token exactly.")
    print(f"tokenizer: byte-level BPE (GPT-2/phi-2 kind), {len(tokenizer):,} tokens ({args.added_tokens} added "
          f"whitespace tokens), trained in {train_seconds:.1f} s on the first {len(train_texts):,} NSMC reviews "
          f"({args.train_megabytes:g} MB)")
    print(f"text: the law texts ({sources['law']['documents']:,} lines, {sources['law']['bytes'] / MB:.2f} MB) "
          f"and the {sources['reviews']['documents']:,} NSMC reviews after the training slice "
          f"({sources['reviews']['bytes'] / MB:.2f} MB): {pool_bytes / MB:.2f} MB, then the same documents again, "
          f"shuffled anew each pass, as far as a size needs")
    print(f"machine: {os.cpu_count()} CPU cores, load average {load_at_start:.2f} at start; the counter uses "
          f"{os.cpu_count()} process(es) for streams of at least {_MIN_BATCHES_FOR_HELPERS} batches of {BATCH:,} "
          f"documents; TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', '(unset: parallel)')}; "
          f"tokenizers {tokenizers.__version__}")
    print(f"timing: each run in a fresh process; at {SMALL_MEGABYTES:g} MB and below the best of {args.repeats} "
          f"interleaved run(s) per fast method and one naive run, above it one run of encode_batch and the counter; "
          f"memory: peak RSS summed over the process tree, sampled every {SAMPLE_SECONDS * 1000:.0f} ms\n")

    work = Path(tempfile.mkdtemp(prefix="eeve-token-counting-", dir=args.work_dir))
    try:
        import shutil

        free = shutil.disk_usage(work).free
        if free < max(sizes) * MB * 1.2:
            print(f"error: the corpus file needs {max(sizes) * 1.2:.0f} MB in {work}, which has {free / MB:.0f} MB "
                  f"free; give --work-dir elsewhere", file=sys.stderr)
            return 2
        corpus, tokenizer_file = work / "corpus.txt", work / "tokenizer.json"
        tokenizer.backend_tokenizer.save(str(tokenizer_file))
        started = time.perf_counter()
        cuts = write_corpus(corpus, pool, [s * MB for s in sizes])
        heaps_points = heaps_curve(tokenizer, pool, pool_bytes)
        heaps = heaps_fit(heaps_points)
        del pool, train_texts
        print(f"corpus file: {max(c['bytes'] for c in cuts.values()) / MB:,.0f} MB written and the first pass's "
              f"distinct words counted in {time.perf_counter() - started:.0f} s\n")

        rows, all_identical = [], True
        plans = []
        for size in sizes:
            methods = list(SMALL_METHODS if size <= SMALL_MEGABYTES else LARGE_METHODS)
            repeats = {m: 1 if (m == "naive" or size > SMALL_MEGABYTES) else args.repeats for m in methods}
            plans.append((size, methods, repeats))
        with tqdm(total=sum(sum(r.values()) for _, _, r in plans), desc="measuring", unit="run",
                  file=sys.stderr) as bar:
            for size, methods, repeats in plans:
                cut = cuts[size * MB]
                results, identical = measure_size(methods, repeats, corpus, cut["documents"], tokenizer_file,
                                                  work, bar, f"{size:g} MB")
                all_identical &= identical
                mb = cut["bytes"] / MB
                for r in results.values():
                    r["mb_per_s"] = mb / r["seconds"]
                    r["mb_per_cpu_second"] = mb / r["cpu_seconds"]
                batches = -(-cut["documents"] // BATCH)
                for name in ("counter", "counter w=1"):
                    if name in results:  # the processes it counted words in (helpers only for long streams)
                        many = name == "counter" and batches >= _MIN_BATCHES_FOR_HELPERS
                        results[name]["processes"] = (os.cpu_count() or 1) if many else 1
                rows.append({"megabytes": size, "bytes": cut["bytes"], "documents": cut["documents"],
                             "passes": cut["passes"], "tokens": results["encode_batch"]["tokens"],
                             "identical": identical, "methods": results,
                             "counter_over_encode_batch": results["counter"]["mb_per_s"]
                             / results["encode_batch"]["mb_per_s"]})
        feed_row = max((r for r in rows if r["megabytes"] <= MEMORY_TARGET[1]), key=lambda r: r["bytes"],
                       default=rows[0])
        feed = feed_rate(corpus, feed_row["documents"], feed_row["bytes"])
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)

    load_at_end = os.getloadavg()[0]
    load.done.set()
    print_table(rows)
    print(f"\nload average at end: {load_at_end:.2f}")
    print(f"identical counts (all methods, all runs, all sizes): {'yes' if all_identical else 'NO'}")

    targets = evaluate_targets(rows, args.quick)
    print("targets:")
    for t in targets:
        verdict = {True: "MET", False: "MISSED", None: "not evaluated"}[t["met"]]
        value = "" if t["measured"] is None else f"{t['measured']:.2f}{t['unit']}  "
        print(f"  {t['goal']}: {value}{verdict}" + (f" ({t['note']})" if t["note"] else ""))

    target_gb = float(number("counting_corpus_gb").value)
    projection = extrapolate(rows, os.cpu_count() or 1, feed, heaps, target_gb)
    print_extrapolation(projection, rows[-1], heaps, heaps_points)

    if record_dir is not None:
        numbers = {"sizes_megabytes": sizes, "rows": rows, "identical": all_identical,
                   "corpus": {**sources, "pool_bytes": pool_bytes, "shuffle_seed": SHUFFLE_SEED,
                              "repeated": any(r["passes"] > 1 for r in rows),
                              "note": "the law texts and the NSMC reviews after the tokenizer's training slice, "
                                      "then the same documents again in a new shuffled order each pass"},
                   "tokenizer": {"kind": "byte-level BPE (GPT-2/phi-2 kind)", "size": len(tokenizer),
                                 "added_tokens": args.added_tokens, "train_megabytes": args.train_megabytes},
                   "method": {"timing": f"each run in a fresh process; best of {args.repeats} at "
                                        f"{SMALL_MEGABYTES:g} MB and below, one run above",
                              "memory": f"peak RSS summed over the process tree (psutil, every "
                                        f"{SAMPLE_SECONDS * 1000:.0f} ms); as a check, the measuring process's own "
                                        f"peak (VmHWM) and its largest helper's (ru_maxrss of its children)",
                              "batch_documents": BATCH, "megabyte": MB},
                   "feed_mb_per_s": feed, "heaps": {"fit": heaps, "points": heaps_points},
                   "extrapolation": projection, "load_average_during": load.summary()}
        path = records.write("token_counting", numbers, script="token_counting.py", argv=argv,
                             directory=record_dir, quick=args.quick, targets=targets, started=started_at,
                             load_at_start=load_at_start)
        print(f"recorded in {path}")
    else:
        print("not recorded (--quick without --record-dir)")
    return 0 if all_identical else 1


def print_table(rows: list[dict]) -> None:
    names = {"naive": "naive", "encode_batch": "enc_batch", "encode_batch_fast": "enc_fast", "counter": "counter",
             "counter w=1": "counter_w1"}
    print("MB/s and peak MB of the process tree per method (enc_batch = encode_batch, enc_fast = "
          "encode_batch_fast, counter_w1 = the counter with workers=1); ctr/batch = counter / encode_batch")
    print(f"{'MB':>8} {'passes':>6} {'tokens':>13} " + " ".join(f"{n + ' MB/s':>15}" for n in names.values())
          + f" {'ctr/batch':>9} {'counter MB':>10} {'enc_batch MB':>12} {'identical':>9}")
    for row in rows:
        m = row["methods"]
        speeds = " ".join(f"{m[n]['mb_per_s']:>15.2f}" if n in m else f"{'-':>15}" for n in names)
        print(f"{row['bytes'] / MB:>8.1f} {row['passes']:>6.2f} {row['tokens']:>13,} {speeds}"
              f" {row['counter_over_encode_batch']:>8.2f}x {m['counter']['peak_tree_rss'] / MB:>10.0f}"
              f" {m['encode_batch']['peak_tree_rss'] / MB:>12.0f} {'yes' if row['identical'] else 'NO':>9}")
    for row in rows:
        c, e = row["methods"]["counter"], row["methods"]["encode_batch"]
        print(f"  {row['bytes'] / MB:.1f} MB, counter: words counted in {c['words_seconds']:.1f} s, "
              f"{c['distinct_words']:,} distinct words encoded in {c['encode_seconds']:.1f} s; the process started "
              f"at {c['start_rss'] / MB:.0f} MB (its own peak {(c.get('peak_rss_self') or 0) / MB:.0f} MB, its "
              f"helper's {(c.get('peak_rss_largest_helper') or 0) / MB:.0f} MB); MB per CPU second (all processes "
              f"and threads): counter "
              f"{c['mb_per_cpu_second']:.2f}, encode_batch {e['mb_per_cpu_second']:.2f} "
              f"({c['mb_per_cpu_second'] / e['mb_per_cpu_second']:.2f}x)")


def _row_at(rows: list[dict], megabytes: float) -> dict | None:
    return next((r for r in rows if abs(r["megabytes"] - megabytes) < 1e-9), None)


def evaluate_targets(rows: list[dict], quick: bool) -> list[dict]:
    import records

    out = []
    ratio, at = SPEED_TARGET
    row = _row_at(rows, at)
    goal = f"counter >= {ratio:g}x encode_batch at {at:g} MB"
    if row is None or quick:
        out.append(records.target("speed at 1 GB", goal, ratio, None, None, "x", "not measured in this run"))
    else:
        measured = row["counter_over_encode_batch"]
        out.append(records.target("speed at 1 GB", goal, ratio, measured, measured >= ratio, "x"))
    ratio, small, large = MEMORY_TARGET
    first, second = _row_at(rows, small), _row_at(rows, large)
    goal = f"counter's peak memory at {large:g} MB <= {ratio:g}x its peak at {small:g} MB"
    if first is None or second is None or quick:
        out.append(records.target("memory from 128 MB to 1 GB", goal, ratio, None, None, "x", "not measured in this run"))
    else:
        measured = second["methods"]["counter"]["peak_tree_rss"] / first["methods"]["counter"]["peak_tree_rss"]
        out.append(records.target("memory from 128 MB to 1 GB", goal, ratio, measured, measured <= ratio, "x"))
    ratio, at = EARLIER_TARGET
    row = _row_at(rows, at)
    goal = f"counter >= {ratio:g}x encode_batch at {at:g} MB"
    if row is None or quick:
        out.append(records.target("speed at 16 MB", goal, ratio, None, None, "x", "not measured in this run"))
    else:
        measured = row["counter_over_encode_batch"]
        out.append(records.target("speed at 16 MB", goal, ratio, measured, measured >= ratio, "x"))
    return out


def print_extrapolation(projection: dict, row: dict, heaps: dict | None, points: list) -> None:
    gb = projection["gigabytes"]
    print(f"\nextrapolated to {gb:g} GB (the paper's corpus), from the counter at {row['bytes'] / MB:,.1f} MB:")
    if heaps:
        print(f"  distinct words: Heaps' law fitted to the first pass ({heaps['points']} points from 1 MB), "
              f"words = {heaps['k']:.3g} x bytes^{heaps['beta']:.3f}: {projection['distinct_words']:,.0f} at {gb:g} GB "
              f"(here {row['methods']['counter']['distinct_words']:,}; the repeated corpus adds none after "
              f"the first pass)")
    else:
        print(f"  distinct words: no Heaps fit ({len(points)} point(s)); taken as at the largest size")
    print(f"  word counting {projection['per_process_words_mb_per_s']:.2f} MB/s per process (measured here with "
          f"{row['methods']['counter']['processes']} process(es)), linear in processes up to the feed rate of one process, "
          f"{projection['feed_mb_per_s']:.0f} MB/s; distinct words encoded at "
          f"{projection['encode_words_per_s_per_core']:,.0f} per second per core, linear in cores; "
          f"the helpers' final merge not modelled")
    if projection["tree_bytes_per_distinct_word"] is not None:
        print(f"  memory: {projection['tree_bytes_per_distinct_word']:.0f} bytes of the process tree per distinct "
              f"word (between the smallest and the largest size, {projection['processes_measured']} process(es)); "
              f"with more processes each may hold every distinct word")
    for cores, p in projection["cores"].items():
        bound = " (bound by the feed rate)" if p["feed_bound"] else ""
        memory = "" if p["peak_memory_bytes"] is None else f", peak memory about {p['peak_memory_bytes'] / 1e9:,.0f} GB"
        idle = " (bound by the feed rate)" if p["feed_bound_a_core_each"] else ""
        print(f"  {cores} cores: {p['hours']:.2f} h at {p['counting_mb_per_s']:.0f} MB/s{bound}{memory}; with a core "
              f"to itself per process ({projection['per_core_cpu_mb_per_s']:.2f} MB per CPU second): "
              f"{p['seconds_a_core_each'] / 3600:.2f} h{idle}")


if __name__ == "__main__":
    sys.exit(main())
