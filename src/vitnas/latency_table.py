"""Latency as a search constraint: a per-device lookup table of per-block latencies (as FBNet, OFA
and HAT), and the prediction it gives a network: the sum of its parts' times.

A family lists an architecture's parts (`Space.latency_blocks`: a key naming the part's shape, a
factory for its real stand-alone module, its input shape); the table times each distinct key once
at batch 1 on one device and stores it as JSON beside a fingerprint of that device (device kind,
CPU model or CUDA device name, threads, torch version, batch, image size, input channels). A table
whose fingerprint differs from the running device's is measured again; one that matches is read,
and only keys it lacks are timed.

Built eagerly for every part of the space (`Space.all_latency_blocks`), not lazily for the parts a
search meets: the table, and so every search that reads it (each budget, evolution and random
search), is then fixed before the first candidate, so one seed still gives one result whatever
order the searches run in; the shapes are few (the default vit space: 6 stems and 72 blocks,
12-40 s on a loaded 2-core machine; resnas: 27 skeletons and 189 blocks, 23 s; twins: 9 skeletons
and 72 blocks, 14 s; NAS-Bench-Macro: stem, head and 15 layers, 5 s).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import statistics
from pathlib import Path
from typing import Callable, Iterable

from .errors import SpaceError
from .io import read_json, write_json

TimeFn = Callable[..., float]  # (module, example_input) -> seconds, one statistic of repeated passes
FORMAT = 1  # bumped when the table's meaning changes: an older table is measured again
CHAIN = 4  # copies of a block timed in a chain (1: each block alone)
STATISTICS = {"min": min, "median": statistics.median}  # what a timing keeps of its repeats


def median_seconds(module, example, warmup: int = 5, repeats: int = 30, reduce: Callable = statistics.median) -> float:
    """The median (`reduce`) of `repeats` timed forward passes after `warmup` untimed ones (eval,
    no grad), timed as every latency of the project is (vitnas.latency.time_calls)."""
    import torch

    from .latency import time_calls

    with torch.inference_mode():
        return reduce(time_calls(lambda: module(example), warmup, repeats, example.device))


def fingerprint(device: str, threads: int, img_size: int, in_chans: int, batch: int = 1,
                chain: int = CHAIN, statistic: str = "min") -> dict:
    """What a measured time depends on besides the part itself (and how the parts are timed)."""
    import torch

    from .latency import cpu_name

    return {"format": FORMAT, "device": device, "cpu": cpu_name(),
            "cuda": torch.cuda.get_device_name() if device == "cuda" else None, "threads": threads,
            "torch": torch.__version__, "batch": batch, "img_size": img_size, "in_chans": in_chans,
            "chain": chain, "statistic": statistic}


def timer(warmup: int = 5, repeats: int = 30, statistic: str = "min") -> TimeFn:
    """The table's timer: `statistic` of `repeats` passes. The minimum by default: the table is
    built once and should not carry the load other jobs put on the machine while it was built; the
    fastest pass is the one they disturbed least (benchmarks/README.md, "Latency predictor")."""
    return functools.partial(median_seconds, warmup=warmup, repeats=repeats, reduce=STATISTICS[statistic])


def device_key(fp: dict) -> str:
    """A short name of a fingerprint: the table's folder."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]


def key_text(key: tuple) -> str:
    return json.dumps(list(key), separators=(",", ":"))


class LatencyTable:
    """Seconds per part key, measured on the device of `fingerprint`."""

    def __init__(self, fingerprint: dict, entries: dict[str, float] | None = None):
        self.fingerprint, self.entries = fingerprint, dict(entries or {})

    @classmethod
    def load(cls, path) -> "LatencyTable":
        data = read_json(path)
        return cls(data["fingerprint"], data["entries"])

    def save(self, path) -> None:
        write_json(path, {"fingerprint": self.fingerprint, "entries": dict(sorted(self.entries.items()))})

    def seconds(self, blocks: Iterable) -> float:
        """The predicted latency of a network made of `blocks`: the sum of their times."""
        try:
            return sum(self.entries[key_text(b.key)] for b in blocks)
        except KeyError as e:
            raise SpaceError(f"latency table: no time for the part {e.args[0]}; the table was built for "
                             "another space: delete it or build it for this one") from None


def measure(table: LatencyTable, blocks: Iterable, time_fn: TimeFn, device: str = "cpu") -> int:
    """Time every part of `blocks` whose key the table lacks; returns how many were timed. A part
    that can be chained is timed as a chain of `fingerprint["chain"]` distinct copies, divided by
    their number: timed alone in a loop, a block keeps its weights in the core's cache and runs
    faster than it does between other blocks of a network (benchmarks/README.md)."""
    import torch

    copies = table.fingerprint.get("chain", 1)
    timed = 0
    for block in blocks:
        k = key_text(block.key)
        if k in table.entries:
            continue
        n = copies if block.chain else 1
        module = (block.build() if n == 1 else torch.nn.Sequential(*[block.build() for _ in range(n)]))
        example = torch.randn(table.fingerprint.get("batch", 1), *block.shape, device=device)
        table.entries[k] = float(time_fn(module.eval().to(device), example)) / n
        timed += 1
    return timed


@contextlib.contextmanager
def _locked(path: Path):
    """One builder at a time per table (parallel searches share it)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(path, fp: dict, blocks: Iterable, time_fn: TimeFn = median_seconds,
          device: str = "cpu") -> tuple[LatencyTable, int]:
    """The table at `path` for the device `fp`: read if its fingerprint is `fp` (timing only the
    parts it lacks), measured afresh otherwise; written back when anything was timed. Returns the
    table and the number of parts timed (0: nothing was rebuilt)."""
    path = Path(path)
    with _locked(path):
        table = LatencyTable(fp)
        if path.is_file():
            old = LatencyTable.load(path)
            if old.fingerprint == fp:
                table = old
        timed = measure(table, blocks, time_fn, device)
        if timed:
            table.save(path)
    return table, timed


def with_threads(threads: int, fn: Callable[[], object]):
    """`fn()` with torch on `threads` intra-op threads (the table's, and the measurement's)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def space_table(space, path_of: Callable[[str], str], device: str = "cpu", threads: int = 1,
                time_fn: TimeFn | None = None, chain: int = CHAIN,
                statistic: str = "min") -> tuple[LatencyTable, int]:
    """The table of every part of `space` on this device, at `path_of(device_key)`, timed by
    `time_fn` (default: `timer(statistic=statistic)`; a test injects a fake one)."""
    time_fn = time_fn or timer(statistic=statistic)
    fp = fingerprint(device, threads, space.img_size, space.in_chans, chain=chain, statistic=statistic)
    return with_threads(threads, lambda: build(path_of(device_key(fp)), fp, space.all_latency_blocks(),
                                               time_fn, device))


def measured_seconds(model, space, device: str = "cpu", threads: int = 1,
                     time_fn: TimeFn = median_seconds) -> float:
    """The end-to-end batch-1 latency of a stand-alone model, timed as the table's parts are."""
    import torch

    model = model.eval().to(device)
    example = torch.randn(1, space.in_chans, space.img_size, space.img_size, device=device)
    return with_threads(threads, lambda: time_fn(model, example))
