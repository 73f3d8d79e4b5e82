"""The memory report of a worker node as text (``celeriac inspect memory``)."""

from __future__ import annotations

import time

from celeriac.observe.records import MemoryReport, Verdict, WorkerStats


def size(kib: float | None, sign: bool = False) -> str:
    """KiB as a short human figure: ``812 KiB``, ``+1.5 MiB``, ``-``."""
    if kib is None:
        return "-"
    prefix = "+" if sign and kib > 0 else ""
    if abs(kib) >= 1024 * 1024:
        return f"{prefix}{kib / 1024 / 1024:.2f} GiB"
    if abs(kib) >= 1024:
        return f"{prefix}{kib / 1024:.1f} MiB"
    return f"{prefix}{kib:.0f} KiB"


def _trend(memory: MemoryReport) -> str:
    if memory.master_trend_kib_per_hour is None:
        return (
            f"master heap {size(memory.master_anon_kib)}, trend not known yet "
            "(needs 5 minutes of samples after the first minute)"
        )
    state = "GROWING steadily" if memory.master_growing else "no steady growth"
    return (
        f"master heap {size(memory.master_anon_kib)}, trend "
        f"{size(memory.master_trend_kib_per_hour, sign=True)} an hour over the last "
        f"{memory.master_window_s / 60:.0f} min ({state})"
    )


def _limits(memory: MemoryReport) -> str:
    def kib(value: int | None) -> str:
        return "none" if value is None else f"{value} KiB"

    return (
        f"limits: worker_max_tasks_per_child={memory.max_tasks_per_child or 'none'}, "
        f"worker_max_memory_per_child={kib(memory.max_memory_per_child_kib)} "
        "(own memory, USS, after a task), "
        f"worker_max_memory_per_child_hard={kib(memory.max_memory_per_child_hard_kib)}"
    )


def _starts(memory: MemoryReport) -> str:
    if not memory.starts or memory.start_median_s is None:
        return "child starts: none yet"
    line = (
        f"child starts: {memory.starts}, fork to ready {memory.start_median_s:.3f} s median, "
        f"{memory.start_max_s or 0:.3f} s max"
    )
    if memory.recycle_cost is not None:
        line += f"; replacing children takes {memory.recycle_cost:.1%} of their time"
    return line


def memory_lines(node: WorkerStats) -> list[str]:
    """The memory report of one node, for a terminal."""
    age = time.time() - node.at
    lines = [f"{node.node} (pid {node.pid}, heartbeat {age:.0f} s ago)"]
    memory = node.memory
    lines.append(f"  {'process':<10} {'pid':>8} {'rss':>10} {'uss':>10} {'peak rss':>10} {'tasks':>8}")
    master_uss = None if memory is None else memory.master_uss_kib
    lines.append(
        f"  {'master':<10} {node.pid:>8} {size(node.master_rss_kib):>10} {size(master_uss):>10} "
        f"{'-':>10} {'-':>8}"
    )
    for child in node.children:
        lines.append(
            f"  {'child ' + str(child.index):<10} {child.pid:>8} {size(child.rss_kib):>10} "
            f"{size(child.uss_kib):>10} {size(child.peak_rss_kib):>10} {child.tasks:>8}"
        )
    if memory is None:
        lines.append("  (this worker publishes no memory report)")
        return lines
    lines.append("  " + _trend(memory))
    lines.append("  " + _limits(memory))
    lines.append("  " + _starts(memory))
    if node.exits:
        lines.append("  child exits: " + ", ".join(f"{k} {v}" for k, v in sorted(node.exits.items())))
    if memory.tasks:
        lines.append(
            f"  {'task':<32} {'runs':>7} {'mean ms':>8} {'max ms':>8} {'kept/run':>10} "
            f"{'max kept':>10} {'peak +':>10} {'recycles':>8}  verdict"
        )
        for task in memory.tasks:
            recycles = task.recycles + task.hard_kills
            verdict = task.verdict.value.upper() if task.verdict is Verdict.LEAK else task.verdict.value
            lines.append(
                f"  {task.name:<32} {task.runs:>7} {task.runtime_mean_s * 1000:>8.1f} "
                f"{task.runtime_max_s * 1000:>8.1f} {size(task.growth_mean_kib, sign=True):>10} "
                f"{size(task.growth_max_kib, sign=True):>10} {size(task.peak_raise_max_kib):>10} "
                f"{recycles:>8}  {verdict}"
            )
            if task.verdict is not Verdict.FLAT:
                lines.append(f"      {task.why}")
        if memory.tasks_omitted:
            lines.append(f"  ({memory.tasks_omitted} more task names, all flat, not shown)")
    for warning in memory.warnings:
        lines.append(f"  warning: {warning}")
    return lines
