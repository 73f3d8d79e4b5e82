"""``celeriac top``: the monitor's numbers as a terminal table, redrawn every interval."""

from __future__ import annotations

import time

from celeriac.observe.monitor import MonitorState, QueueView, duration


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _count(value: float) -> str:
    if value >= 10_000_000:
        return f"{value / 1_000_000:.0f}M"
    if value >= 100_000:
        return f"{value / 1000:.0f}k"
    return f"{value:.0f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.0f} s"


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f} MiB"


def _drain(view: QueueView) -> str:
    if view.state != "ok":
        return "never"
    return duration(view.drain_s)


def _age(view: QueueView) -> str:
    if view.oldest_age is None:
        return "-"
    return ("~" if view.oldest_age_estimated else "") + duration(view.oldest_age)


QUEUE_COLUMNS = (
    ("QUEUE", 24, lambda v: v.name),
    ("LENGTH", 8, lambda v: _count(v.length)),
    ("READY", 8, lambda v: _count(v.ready)),
    ("RESERVED", 8, lambda v: _count(v.reserved)),
    ("RUNNING", 7, lambda v: _count(v.running)),
    ("OLDEST", 9, _age),
    ("IN/s", 7, lambda v: _rate(v.arrival_rate)),
    ("OUT/s", 7, lambda v: _rate(v.service_rate)),
    ("UTIL", 6, lambda v: "-" if v.utilisation is None else f"{v.utilisation:.0%}"),
    ("DRAIN", 9, _drain),
    ("WAIT", 9, lambda v: duration(v.wait_s)),
    ("P95", 8, lambda v: _ms(v.p95)),
)


def _row(cells: list[str], widths: list[int]) -> str:
    first, *rest = zip(cells, widths, strict=True)
    return " ".join([first[0][: first[1]].ljust(first[1]), *(c.rjust(w) for c, w in rest)]).rstrip()


def frame(state: MonitorState) -> str:
    """One screen of ``celeriac top``."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.at))
    lines = [f"celeriac top  {state.broker}  {when}  every {state.interval:g} s  (Ctrl-C to quit)"]
    if state.error:
        lines.append(f"BROKER ERROR: {state.error}")
    for alert in sorted(state.alerts, key=lambda a: (a["level"] != "critical", a["key"])):
        lines.append(f"{alert['level'].upper()}: {alert['message']}")
    if not state.alerts:
        lines.append("no alerts")
    lines.append("")
    widths = [w for _, w, _ in QUEUE_COLUMNS]
    lines.append(_row([name for name, _, _ in QUEUE_COLUMNS], widths))
    for view in state.queues:
        mark = "" if view.state == "ok" else " " + view.state.upper()
        lines.append(_row([cell(view) for _, _, cell in QUEUE_COLUMNS], widths) + mark)
    if not state.queues:
        lines.append("(no queues)")
    lines.append("")
    node_widths = [24, 8, 10, 12, 9, 8, 9, 10]
    lines.append(
        _row(
            ["WORKER", "CHILDREN", "MASTER", "CHILDREN RSS", "TASKS", "FAILED", "PREFETCH", "POOL WAIT"],
            node_widths,
        )
    )
    live = [n for n in state.nodes if n.state == "running"]
    for node in live:
        rss = [c.rss_kib for c in node.children if c.rss_kib is not None]
        windows = sorted({c.prefetch for c in node.children if c.prefetch is not None})
        pool = node.broker_pool or {}
        lines.append(
            _row(
                [
                    node.node,
                    str(len(node.children)),
                    _mib(node.master_rss_kib),
                    _mib(sum(rss)) if rss else "-",
                    _count(node.tasks),
                    _count(node.failed),
                    ",".join(map(str, windows)) or node.prefetch,
                    _ms(pool.get("wait_max_s")) if pool else "-",
                ],
                node_widths,
            )
        )
    if not live:
        lines.append("(no live celeriac worker)")
    return "\n".join(lines)
