"""The Performance page's reading of ``results/benchmarks/*.json``: each record's machine and date,
its tables, and sentences computed from its numbers (the page types none).

A record is written by a benchmark script (``make benchmarks``; see ``benchmarks/records.py``);
a ``--quick`` smoke run's record is never shown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..pipeline.paths import results_root

MB = 1_000_000


def recorded_benchmarks(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every readable record under ``<results>/benchmarks``, by benchmark name (quick runs left out)."""
    folder = (root or results_root()) / "benchmarks"
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and not record.get("quick"):
            found[path.stem] = record
    return found


def machine(record: dict[str, Any]) -> str:
    """The machine a record comes from, in words: "AMD EPYC, 2 cores, 24 GiB, torch 2 threads"."""
    h = record.get("hardware") or {}
    cpu = f"{h.get('cpu_model') or 'CPU'}, {h.get('cpu_count')} cores"
    if h.get("memory_bytes"):
        cpu += f", {h['memory_bytes'] / 2**30:.0f} GiB"
    if h.get("cuda"):
        return f"{h['cuda']} ({cpu})"
    threads = record.get("threads") or h.get("torch_threads")
    return cpu + (f", torch {threads} threads" if threads else "")


def when(record: dict[str, Any]) -> str:
    """The record's date as "2026-01-02 03:04 UTC"."""
    date = str(record.get("date") or "")
    return f"{date[:10]} {date[11:16]} UTC" if len(date) >= 16 else date or "unknown"


def commit(record: dict[str, Any]) -> str:
    git = record.get("git") or {}
    short = (git.get("commit") or "unknown")[:12]
    return short + (" (modified)" if git.get("dirty") else "")


def verdict(target: dict[str, Any]) -> str:
    return {True: "met", False: "missed"}.get(target.get("met"), "not measured")


def records_table(records: dict[str, dict[str, Any]]):
    """One row per recorded benchmark: date, commit, machine, load, command, targets met."""
    import pandas as pd

    rows = {}
    for name, r in records.items():
        load = r.get("load_average") or {}
        counts = [verdict(t) for t in r.get("targets", [])]
        rows[name] = {"date": when(r), "commit": commit(r), "machine": machine(r),
                      "load average (start, end)": ", ".join(f"{load[k]:.1f}" for k in ("start", "end")
                                                             if load.get(k) is not None) or "not recorded",
                      "targets": ", ".join(f"{counts.count(v)} {v}" for v in ("met", "missed", "not measured")
                                           if counts.count(v)) or "none",
                      "command": r.get("command", "")}
    return pd.DataFrame(rows).T


def targets_table(record: dict[str, Any]):
    """A record's targets: what each asks, the measured value, met or missed."""
    import pandas as pd

    return pd.DataFrame([{"target": t["goal"],
                          "measured": "" if t.get("measured") is None else f"{t['measured']:.2f}{t.get('unit', '')}",
                          "verdict": t["note"] if t.get("met") is None and t.get("note")
                          else verdict(t) + (f" ({t['note']})" if t.get("note") else "")}
                         for t in record.get("targets", [])]).set_index("target")


def size_label(megabytes: float) -> str:
    """16 -> "16 MB", 1000 -> "1 GB" (1 MB = 10^6 bytes)."""
    return f"{megabytes / 1000:g} GB" if megabytes >= 1000 else f"{megabytes:g} MB"


COUNTING_METHODS = ("counter", "encode_batch", "naive", "encode_batch_fast", "counter w=1")


def counting_table(record: dict[str, Any]):
    """One column per corpus size, one row per measure: passes over the text, MB/s and peak memory of each
    method, the ratio. Sizes run across so that the table stays narrow (a phone's width at three sizes)."""
    import pandas as pd

    rows = {}
    for row in record["rows"]:
        m = row["methods"]
        cells: dict[str, Any] = {"passes over the text": round(row["passes"], 2)}
        for name in COUNTING_METHODS:
            if name in m:
                cells[f"{name} MB/s"] = round(m[name]["mb_per_s"], 2)
        cells["counter / encode_batch"] = f"{row['counter_over_encode_batch']:.2f}x"
        for name in ("counter", "encode_batch"):
            cells[f"{name} peak MB"] = round(m[name]["peak_tree_rss"] / MB)
        cells["identical counts"] = "yes" if row["identical"] else "NO"
        rows[size_label(row["megabytes"])] = cells
    return pd.DataFrame(rows).fillna("")


def counting_series(record: dict[str, Any]) -> tuple[list[float], dict[str, list], dict[str, list]]:
    """Sizes, and each method's MB/s and peak MB per size (None where it did not run): the figure's data."""
    sizes = [row["megabytes"] for row in record["rows"]]
    shown = [n for n in COUNTING_METHODS[:3] if any(n in row["methods"] for row in record["rows"])]

    def series(name, value):
        return [value(row["methods"][name]) if name in row["methods"] else None for row in record["rows"]]

    speed = {n: series(n, lambda r: r["mb_per_s"]) for n in shown}
    memory = {n: series(n, lambda r: r["peak_tree_rss"] / MB) for n in shown}
    return sizes, speed, memory


def _target(record: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in record.get("targets", []) if t.get("name") == name), None)


def _hours(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def _bytes(n: float) -> str:
    if n >= 1e12:
        return f"{n / 1e12:,.1f} TB"
    return f"{n / 1e9:,.0f} GB" if n >= 10e9 else f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / MB:,.0f} MB"


def counting_sentences(record: dict[str, Any], corpus_gb: float) -> dict[str, str]:
    """What the counting record says, as sentences for the page: the text, speed, memory, 100 GB."""
    rows, corpus = record["rows"], record["corpus"]
    largest, first = rows[-1], rows[0]
    out = {}
    repeated = (f"; the larger sizes repeat those documents, each pass in a new shuffled order "
                f"({largest['passes']:.1f} passes at {size_label(largest['megabytes'])}), so past the first pass "
                f"they add no new words") if corpus.get("repeated") else ""
    out["counting_corpus"] = (
        f"The text is the Constitution of Korea ({corpus['law']['documents']:,} lines of the law texts) followed by "
        f"{corpus['reviews']['documents']:,} NSMC reviews, {corpus['pool_bytes'] / MB:.0f} MB in all{repeated}")
    c, e = largest["methods"]["counter"], largest["methods"]["encode_batch"]
    speed = _target(record, "speed at 1 GB")
    goal = (f", which {'meets' if speed['met'] else 'misses'} the target of at least {speed['threshold']:g} times"
            if speed and speed.get("met") is not None else "")
    small_ratio, large_ratio = first["counter_over_encode_batch"], largest["counter_over_encode_batch"]
    why = (", because encoding each distinct word once costs most where the text is short"
           if small_ratio < large_ratio else "")
    cpu = (f" Per second of CPU time (all processes and threads, so less dependent on the machine's other load) "
           f"the counter does {c['mb_per_cpu_second'] / e['mb_per_cpu_second']:.1f} times the work of encode_batch."
           if "mb_per_cpu_second" in c and "mb_per_cpu_second" in e else "")
    out["counting_speed"] = (
        f"At {size_label(largest['megabytes'])} the counter reads {c['mb_per_s']:.1f} MB/s and encode_batch "
        f"{e['mb_per_s']:.1f} MB/s: {large_ratio:.1f} times as fast{goal}.{cpu} At "
        f"{size_label(first['megabytes'])} it is {small_ratio:.1f} times as fast{why}. "
        + ("Every method's counts are identical at every size" if record.get("identical")
           else "Some methods' counts differ: the table says where"))
    memory = _target(record, "memory from 128 MB to 1 GB")
    if memory and memory.get("measured") is not None:
        small = next(r for r in rows if r["megabytes"] == 128.0)
        out["counting_memory"] = (
            f"From 128 MB to {size_label(largest['megabytes'])}, {largest['bytes'] / small['bytes']:.1f} times the "
            f"text, the counter's peak memory goes from {small['methods']['counter']['peak_tree_rss'] / MB:,.0f} MB to "
            f"{c['peak_tree_rss'] / MB:,.0f} MB ({memory['measured']:.2f} times; the target, at most "
            f"{memory['threshold']:g} times, is {verdict(memory)}): it streams the text and "
            f"keeps only its table of {c['distinct_words']:,} distinct words, against "
            f"{e['peak_tree_rss'] / MB:,.0f} MB for encode_batch, which keeps nothing but a batch")
    else:
        out["counting_memory"] = "This record does not measure memory at both 128 MB and 1 GB"
    x = record.get("extrapolation") or {}
    heaps = (record.get("heaps") or {}).get("fit")
    if x and heaps:
        cores = x["cores"]
        idle = ""
        if "seconds_a_core_each" in cores["2"]:
            idle = (f", or {_hours(cores['2']['seconds_a_core_each'])} and "
                    f"{_hours(cores['64']['seconds_a_core_each'])} with a core to itself per process (the "
                    f"counter's {x['per_core_cpu_mb_per_s']:.1f} MB per second of CPU time)")
        memory_note = ""
        if cores["2"].get("peak_memory_bytes") and cores["64"].get("peak_memory_bytes"):
            memory_note = (f". Their table would take the counter's peak memory to about "
                           f"{_bytes(cores['2']['peak_memory_bytes'])} on 2 cores and, with a table in each of 64 "
                           f"processes, to about {_bytes(cores['64']['peak_memory_bytes'])} on 64 (at the "
                           f"{x['tree_bytes_per_distinct_word']:.0f} bytes per distinct word measured here)")
        out["counting_extrapolation"] = (
            f"Counting {corpus_gb:g} GB would take about {_hours(cores['2']['seconds'])} on 2 cores and "
            f"{_hours(cores['64']['seconds'])} on 64 at the rates measured here{idle}. This assumes time linear in "
            f"the text; word counting spread linearly over processes up to the rate at which one process can hand "
            f"out batches ({x['feed_mb_per_s']:.0f} MB/s"
            f"{', which bounds the 64-core figures' if cores['64']['feed_bound'] else ''}); and distinct words "
            f"growing as the Heaps' law fitted to the first pass (exponent {heaps['beta']:.2f}): about "
            f"{x['distinct_words'] / 1e6:,.0f} million at {corpus_gb:g} GB{memory_note}")
    else:
        out["counting_extrapolation"] = "This record has no extrapolation (it measured too little text to fit one)"
    return out


def gpu_records(records: dict[str, dict[str, Any]]) -> list[str]:
    """The benchmarks recorded on a GPU."""
    return [name for name, r in records.items() if (r.get("hardware") or {}).get("cuda")]


def stage_table(setup: dict[str, Any]):
    """One row per stage of a stage_training setup: step time, tokens/s, peak memory, optimizer state."""
    import pandas as pd

    return pd.DataFrame({f"stage {n}": {"what trains": s["name"], "step (s)": round(s["step_seconds"], 4),
                                        "x stage 6": round(s["step_over_stage6"], 2),
                                        "tokens/s": round(s["tokens_per_second"]),
                                        "MFU": "" if s.get("mfu") is None else f"{s['mfu']:.0%}",
                                        "peak MB": round(s["peak_bytes"] / 2**20, 1),
                                        "optimizer state (B)": f"{s['optimizer_state_bytes']:,}"}
                         for n, s in setup["stages"].items()}).T


def _short(label: str) -> str:
    """"tiny phi (the tiny profile's architecture), float32" -> "tiny phi, float32"."""
    model, _, dtype = label.rpartition(", ")
    return f"{model.split(',')[0].split(' (')[0]}, {dtype}"


def mfu_series(stages: dict[str, Any] | None, smol: dict[str, Any] | None) -> dict[str, list[float | None]]:
    """Model FLOPs utilisation of stages 1-7 (None where not measured), one series per model and
    dtype: each setup of a stage_training record, and each setting of a smol_speed record that ran
    every stage. Records made before MFU was measured give none."""
    out: dict[str, list[float | None]] = {}
    for setup in (stages or {}).get("setups", []):
        if any(s.get("mfu") is not None for s in setup["stages"].values()):
            out[_short(setup["label"])] = [setup["stages"].get(str(n), {}).get("mfu") for n in range(1, 8)]
    for row in (smol or {}).get("settings", []):
        if len(row["stages"]) == 7 and all("mfu" in s for s in row["stages"].values()):
            out[f"SmolLM2-135M, {row['setting']}"] = [row["stages"][str(n)]["mfu"] for n in range(1, 8)]
    return out


def peaks_sentence(*records: dict[str, Any] | None) -> str:
    """The matmul peaks MFU is measured against, as each record measured them."""
    found = [f"{p['dtype']} {p['flops_per_second'] / 1e9:.0f} GFLOP/s ({p['threads']} threads, "
             f"{record['benchmark']})" for record in records if record
             for p in (record.get("matmul_peak") or {}).values()]
    return "; ".join(found) if found else "not measured"


def mfu_sentence(record: dict[str, Any] | None) -> str:
    """Model FLOPs utilisation per stage, where a stage_training record has it; otherwise "not yet measured"."""
    if not record:
        return "not yet measured (no stage benchmark is recorded)"
    series = mfu_series(record, None)
    if not series:
        return "not yet measured (the recorded run does not measure the matmul peak)"
    return "; ".join(f"{name}: {min(v for v in values if v is not None):.0%} to "
                     f"{max(v for v in values if v is not None):.0%} (stage 6: {values[5]:.0%})"
                     for name, values in series.items())


def smol_table(record: dict[str, Any]):
    """SmolLM2's tokens per second by stage in each setting, and whether frozen rows stayed exact."""
    import pandas as pd

    def cell(v: dict[str, Any]) -> str:
        return f"{v['tokens_per_second']:.0f}" + (f" ({v['mfu']:.0%})" if v.get("mfu") is not None else "")

    return pd.DataFrame({s["setting"]: {f"stage {n}": cell(v) for n, v in s["stages"].items()}
                         | {"frozen rows exact": s["frozen_rows_exact"]} for s in record["settings"]}).T.fillna("")


def _provenance(record: dict[str, Any]) -> str:
    load = record.get("load_average_during") or {}
    busy = (f", its load average {load['mean']:.1f} on average during the run ({load['min']:.1f} to "
            f"{load['max']:.1f})" if load.get("samples", 0) > 1 else "")
    return f"Measured on {machine(record)} on {when(record)}, commit {commit(record)}{busy}"


def counting_prose(record: dict[str, Any] | None, corpus: Any) -> str:
    """The counting section's paragraph: where and when, the text, speed, memory, the paper's corpus
    (``corpus``: the :class:`~eeve_lib.book.external.Cited` size of the paper's corpus)."""
    if not record:
        return "No run of benchmarks/token_counting.py is recorded yet (make benchmarks records one)"
    s = counting_sentences(record, float(corpus.value))
    return ". ".join([_provenance(record), s["counting_corpus"], s["counting_speed"], s["counting_memory"],
                      f"The paper counted {corpus.cite()}. {s['counting_extrapolation']}"])


def stage_prose(record: dict[str, Any] | None) -> str:
    """The stage section's paragraph: where and when, and model FLOPs utilisation where measured."""
    if not record:
        return ("No run of benchmarks/stage_training.py is recorded yet (make benchmarks records one), and model "
                "FLOPs utilisation per stage is not yet measured")
    return (f"{_provenance(record)}. Model FLOPs utilisation per stage: {mfu_sentence(record)}; against the "
            f"matmul peaks measured in the same run: {peaks_sentence(record)}")


def fastest_on_profile_windows(record: dict[str, Any]) -> dict[str, Any]:
    """Of the settings in a smol_speed record that train the profile's own windows (its batch and
    sequence length) and keep frozen rows exact, the one with the most stage-6 tokens per second."""
    chosen = next(r for r in record["settings"] if r["setting"] == record["profile_setting"])
    same = [r for r in record["settings"] if (r["batch"], r["seq_len"]) == (chosen["batch"], chosen["seq_len"])
            and "6" in r["stages"] and r["frozen_rows_exact"]]
    return max(same, key=lambda r: r["stages"]["6"]["tokens_per_second"])


def smol_prose(record: dict[str, Any] | None) -> str:
    if not record:
        return "No run of benchmarks/smol_speed.py is recorded yet (make benchmarks records one)"
    text = ("The table gives tokens per second by stage in each setting, with model FLOPs utilisation in "
            f"brackets where measured. {_provenance(record)}")
    six = next((t for t in record.get("targets", []) if t["name"] == "SmolLM2 stage 6 MFU"), None)
    if six is None:
        return text
    settings = record["settings"]
    chosen = next(r for r in settings if r["setting"] == record["profile_setting"])
    peak = record["matmul_peak"][chosen["dtype"]]
    text += (f". Stage 6 in the profile's setting ({record['profile_setting']}) reaches {six['measured']:.0%} "
             f"of the {chosen['dtype']} matmul peak measured in the same run "
             f"({peak['flops_per_second'] / 1e9:.0f} GFLOP/s): the target of {six['threshold']:.0%} is {verdict(six)}")
    wide = next((r for r in settings if r["dtype"] == "float32" and not r["checkpointing"]
                 and (r["batch"], r["seq_len"]) == (chosen["batch"], chosen["seq_len"])), None)
    if wide is not None and chosen["dtype"] != "float32":
        fp32_peak = record["matmul_peak"]["float32"]["flops_per_second"]
        text += (f". In float32 the same stage uses {wide['stages']['6']['mfu']:.0%} of the float32 peak "
                 f"({fp32_peak / 1e9:.0f} GFLOP/s) yet trains {wide['stages']['6']['tokens_per_second']:.0f} tokens "
                 f"per second against {chosen['stages']['6']['tokens_per_second']:.0f}: bfloat16 autocast uses a "
                 f"smaller share of a peak {peak['flops_per_second'] / fp32_peak:.1f} times as high: what does not "
                 "speed up with it (work outside the matrix products, products too small to reach the peak) "
                 "weighs more in its step")
    fastest = fastest_on_profile_windows(record)
    text += (f". Of the settings that train the profile's own windows ({chosen['batch']} x {chosen['seq_len']} "
             f"tokens), {fastest['setting']} is the fastest that keeps frozen rows exact")
    overall = record["fastest_exact_setting_stage6"]
    if overall != fastest["setting"]:
        other = next(r for r in settings if r["setting"] == overall)
        text += (f"; {overall} is faster still ({other['stages']['6']['tokens_per_second']:.0f} tokens per second at "
                 f"stage 6) but trains on windows of {other['seq_len']} tokens, a choice about what the model "
                 "learns rather than about speed")
    return text


def gpu_prose(records: dict[str, dict[str, Any]]) -> str:
    """Which benchmarks were recorded on a GPU, or that none was: the GPU lines are not yet measured."""
    found = [f"{name} on {machine(records[name])} ({when(records[name])})" for name in gpu_records(records)]
    if not found:
        return "No GPU measurement is recorded for this edition yet: on a GPU, every line above is not yet measured"
    return "Recorded on a GPU: " + "; ".join(found)
