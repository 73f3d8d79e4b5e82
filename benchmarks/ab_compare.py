"""Summarise an alternated before/after benchmark log: medians per job and side, ratio, rank-sum z.

The log holds, before each benchmark run's output, a line ``=== round N side SIDE BENCH``
(SIDE: ``base`` or ``new``); each run prints lines ``[run 1/1] JOB: metric=value, ...``
(as ``bench_sqlite.py`` and ``bench_redis.py`` do). Usage: ``python3 ab_compare.py LOG``.
"""

from __future__ import annotations

import math
import re
import statistics
import sys
from collections import defaultdict

_SIDE = re.compile(r"=== round \d+ side (\w+) (\w+)")
_RUN = re.compile(r"\[run \d+/\d+\] (\S+): (.*)")


def read(path: str) -> dict[tuple[str, str, str], dict[str, list[float]]]:
    """(bench, job, metric) -> side -> values, in log order."""
    data: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    side = bench = ""
    with open(path) as log:
        for line in log:
            if found := _SIDE.match(line):
                side, bench = found.groups()
            elif (found := _RUN.match(line)) and side:
                job, fields = found.groups()
                for field in fields.split(", "):
                    metric, value = field.split("=")
                    data[(bench, job, metric)][side].append(float(value.replace(",", "")))
    return data


def rank_sum_z(before: list[float], after: list[float]) -> float:
    """Wilcoxon rank-sum z of ``after`` against ``before`` (ties get their mean rank)."""
    pooled = sorted([(v, 0) for v in before] + [(v, 1) for v in after])
    ranks: list[float] = [0.0] * len(pooled)
    start = 0
    while start < len(pooled):
        end = start
        while end < len(pooled) and pooled[end][0] == pooled[start][0]:
            end += 1
        for k in range(start, end):
            ranks[k] = (start + end + 1) / 2
        start = end
    total = sum(rank for rank, (_, side) in zip(ranks, pooled, strict=True) if side == 1)
    n1, n2 = len(before), len(after)
    mean = n2 * (n1 + n2 + 1) / 2
    spread = math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    return (total - mean) / spread


def main(path: str) -> None:
    data = read(path)
    print("| broker | job | metric | before, median | after, median | after / before | rank-sum z | runs |")
    print("|---|---|---|---|---|---|---|---|")
    for (bench, job, metric), sides in data.items():
        before, after = sides.get("base", []), sides.get("new", [])
        if metric == "startup_ms" or not before or not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        z = rank_sum_z(before, after)
        runs = f"{len(before)}/{len(after)}"
        print(f"| {bench} | {job} | {metric} | {b:,.0f} | {a:,.0f} | {a / b:.2f} | {z:+.1f} | {runs} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 benchmarks/ab_compare.py LOG")
    main(sys.argv[1])
