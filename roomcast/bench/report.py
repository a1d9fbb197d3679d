"""Human-readable lines and the side-by-side table with the peer."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

# (label, path in the normalised figures), in table order
ROWS: tuple[tuple[str, str], ...] = (
    ("runs", "runs"),
    ("published events", "events"),
    ("publish rate ev/s", "publish_rate"),
    ("delivered msg/s while publishing", "delivered_per_s"),
    ("latency p50 ms", "p50"),
    ("latency p99 ms", "p99"),
    ("latency max ms", "max"),
    ("lost (client, seq) pairs", "lost"),
    ("lost %", "lost_pct"),
    ("duplicates", "dup"),
    ("CPU % gateway 1", "cpu_gw1"),
    ("CPU % gateway 2", "cpu_gw2"),
    ("CPU % redis", "cpu_redis"),
    ("CPU % worker", "cpu_worker"),
    ("CPU % publisher", "cpu_publisher"),
    ("CPU % loadgen", "cpu_loadgen"),
    ("machine busy % (all cores)", "machine_busy"),
    ("CPU % others on the box", "others"),
    ("peak RSS MB gateway 1", "rss_gw1"),
)


def _get(d: Mapping[str, Any], path: str) -> Any:
    value: Any = d
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def roomcast_figures(run: Mapping[str, Any]) -> dict[str, float | None]:
    cpu = _get(run, "cpu_pct.publish") or {}
    return {
        "events": _get(run, "published.events"), "publish_rate": _get(run, "published.rate"),
        "delivered_per_s": run.get("delivered_per_s"),
        "p50": _get(run, "latency_ms.p50"), "p99": _get(run, "latency_ms.p99"),
        "max": _get(run, "latency_ms.max"), "lost": run.get("lost"),
        "lost_pct": run.get("lost_pct"), "dup": run.get("dup"),
        "cpu_gw1": cpu.get("gw1"), "cpu_gw2": cpu.get("gw2"), "cpu_redis": cpu.get("redis"),
        "cpu_worker": cpu.get("worker"), "cpu_publisher": cpu.get("publisher"),
        "cpu_loadgen": cpu.get("loadgen"), "machine_busy": cpu.get("machine_busy_pct"),
        "others": cpu.get("others"), "rss_gw1": _get(run, "peak_rss_mb.gw1"),
    }


def peer_figures(run: Mapping[str, Any]) -> dict[str, float | None]:
    """The peer loadgen's result JSON (peers/loadgen.py) in the same terms."""
    cpu = _get(run, "cpu_pct_pub_window") or {}
    busy = cpu.get("machine_busy_pct_of_2_cores")
    ours = sum(v for k, v in cpu.items() if k != "machine_busy_pct_of_2_cores"
               and isinstance(v, int | float))
    return {
        "events": _get(run, "publisher.events"), "publish_rate": _get(run, "publisher.rate"),
        "delivered_per_s": run.get("delivered_per_s_during_pub"),
        "p50": _get(run, "latency_ms.p50"), "p99": _get(run, "latency_ms.p99"),
        "max": _get(run, "latency_ms.max"), "lost": run.get("lost"),
        "lost_pct": run.get("lost_pct"), "dup": run.get("dup"),
        "cpu_gw1": cpu.get("gwA"), "cpu_gw2": cpu.get("gwB"), "cpu_redis": cpu.get("redis"),
        "cpu_worker": None, "cpu_publisher": cpu.get("publisher"),
        "cpu_loadgen": cpu.get("loadgen"), "machine_busy": busy,
        "others": round(max(0.0, busy * 2 - ours), 1) if isinstance(busy, int | float) else None,
        "rss_gw1": _get(run, "peak_rss_mb.gwA"),
    }


def _cell(values: Sequence[float | None]) -> str:
    vs = [float(v) for v in values if isinstance(v, int | float)]
    if not vs:
        return "-"
    med = statistics.median(vs)
    if len(vs) == 1:
        return _fmt(med)
    return f"{_fmt(med)} [{_fmt(min(vs))}-{_fmt(max(vs))}]"


def _fmt(v: float) -> str:
    if abs(v) >= 100 or v == int(v):
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 1 else f"{v:.1f}"


def comparison_table(runs: Sequence[Mapping[str, Any]],
                     peer: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Markdown: one column per system, median [min-max] over runs."""
    columns: dict[str, list[dict[str, float | None]]] = {
        "roomcast": [roomcast_figures(r) for r in runs]}
    for label, peer_runs in peer.items():
        columns[label] = [peer_figures(r) for r in peer_runs if "failed" not in r]
    head = "| figure | " + " | ".join(columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for label, key in ROWS:
        if key == "runs":
            cells = [str(len(v)) for v in columns.values()]
        else:
            cells = [_cell([f[key] for f in figs]) for figs in columns.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def human_summary(run: Mapping[str, Any]) -> str:
    lat = run.get("latency_ms") or {}
    cpu = _get(run, "cpu_pct.publish") or {}
    cpu_text = " ".join(f"{k}={v:g}" for k, v in cpu.items() if isinstance(v, int | float))
    return (f"published {_get(run, 'published.events')} ev @ {_get(run, 'published.rate')}/s, "
            f"delivered {run.get('delivered')}/{run.get('expected')} "
            f"({run.get('delivered_per_s')} msg/s), p50 {lat.get('p50')} p99 {lat.get('p99')} "
            f"max {lat.get('max')} ms, lost {run.get('lost')} dup {run.get('dup')}, "
            f"closes {run.get('closes_by_code')}, cpu% {cpu_text}, errors {run.get('n_errors')}")
