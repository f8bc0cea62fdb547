"""Shared harness for the benchmarks: timing, memory, machine description, result tables.

Every benchmark runs our op and its peers on the same input in one process, reports the
ratio, and writes ``benchmarks/results/<name>.md`` and ``.json``; ``benchmarks/run_all.py``
gathers those into ``benchmarks/RESULTS.md``. Speed lives here, never in timed tests.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import time
from dataclasses import dataclass, field

import numpy as np
import torch

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine() -> str:
    """One line: CPU model, cores, memory, GPU, torch and build."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB; {gpu}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timeit(fn, repeat: int = 3, warmup: int = 1, device="cpu") -> float:
    """Median wall time of fn() in seconds over `repeat` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
        sync(device)
    times = []
    for _ in range(repeat):
        gc.collect()
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (MiB). Monotone: measure the costly op
    in a fresh subprocess (`measure_in_subprocess`) when its own peak is what matters."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_in_subprocess(code: str) -> dict:
    """Run `code` (Python source that prints one JSON object last) in a fresh interpreter and
    return that object plus its peak RSS in MiB: peak memory of one op without the history of
    this process."""
    wrapped = code + (
        "\nimport resource as _r, json as _j\n"
        "print(_j.dumps({'peak_rss_mib': _r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024.0}))\n"
    )
    out = subprocess.run(["python", "-c", wrapped], capture_output=True, text=True, check=True)
    result = {}
    for line in out.stdout.strip().splitlines():
        if line.startswith("{"):
            result.update(json.loads(line))
    return result


def surface_cloud(n: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """(n,3) surface-like test cloud in millimetres: points on a bumpy closed surface (a
    deformed sphere about 30 mm across) with 0.01 mm noise, like a dense part scan."""
    g = np.random.default_rng(seed)
    v = g.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    theta = np.arctan2(v[:, 1], v[:, 0])
    phi = np.arccos(np.clip(v[:, 2], -1, 1))
    r = 15.0 * (1 + 0.15 * np.sin(5 * theta) * np.sin(3 * phi) + 0.05 * np.cos(9 * phi))
    p = v * r[:, None] * np.array([1.0, 0.8, 0.6])
    p += g.normal(scale=0.01, size=p.shape)
    return torch.from_numpy(p).to(dtype)


@dataclass
class Table:
    """A results table: rows of dicts with the same keys, written as Markdown and JSON."""

    name: str
    title: str
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def add(self, **row) -> None:
        self.rows.append(row)
        print("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", f"Machine: {machine()}", ""]
        if self.rows:
            keys = list(self.rows[0].keys())
            lines.append("| " + " | ".join(keys) + " |")
            lines.append("|" + "---|" * len(keys))
            for r in self.rows:
                lines.append("| " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |")
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def write(self, results_dir: str = RESULTS_DIR) -> str:
        os.makedirs(results_dir, exist_ok=True)
        md = os.path.join(results_dir, f"{self.name}.md")
        with open(md, "w") as f:
            f.write(self.markdown())
        with open(os.path.join(results_dir, f"{self.name}.json"), "w") as f:
            json.dump({"title": self.title, "machine": machine(), "rows": self.rows,
                       "notes": self.notes}, f, indent=1, default=str)
        print(f"wrote {md}")
        return md


def _fmt(v) -> str:
    if isinstance(v, float):
        if v != v:
            return "n/a"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.4f}"
    return str(v)


def cpu_or_cuda_main(doc: str, bench_cpu, bench_cuda, argv=None) -> int:
    """The command line of a benchmark with one table builder per device:
    ``--device cpu|cuda`` picks bench_cpu(quick) or bench_cuda(quick); the table is written."""
    import argparse

    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    table = bench_cuda(args.quick) if args.device == "cuda" else bench_cpu(args.quick)
    table.write()
    return 0
