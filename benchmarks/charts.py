"""PNG charts of the headline numbers, written beside the Markdown report.

matplotlib (in the ``bench`` extra) draws with its Agg backend: no display,
no GUI toolkit. Without matplotlib no chart is written and the report says so.
Ours are green, the peers grey, each chart from numbers measured in this run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.peers import Subject
from benchmarks.scenarios import ContentionResult, ContentionRow, TimingResult

IMG_DIR = "img"  # beside the report: docs/img/

Bars = list[tuple[str, float]]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


# In the overhead chart the row without a pool times the harness's own loop:
# the floor under every pool's bar, not what PyMySQL costs.
FLOOR_LABEL = "harness floor (no pool)"


def _timing_bars(subjects: list[Subject], result: TimingResult, floor: str | None = None) -> Bars:
    bars = [(s.label if s.is_pool or floor is None else floor, result.median_us(s.key)) for s in subjects]
    return [(label, value) for label, value in bars if value is not None]


def _contention_panels(
    subjects: list[Subject], result: ContentionResult, metric: Callable[[ContentionRow], float | None]
) -> list[tuple[str, Bars]]:
    panels = []
    for threads, maxsize in sorted({(r.threads, r.maxsize) for r in result.rows}):
        bars: Bars = []
        for s in subjects:
            for r in result.rows:
                value = metric(r) if (r.key, r.threads, r.maxsize) == (s.key, threads, maxsize) else None
                if value is not None:
                    bars.append((s.label, value))
        if bars:
            panels.append((f"{threads} threads, maxsize {maxsize}", bars))
    return panels


def _draw(
    plt: Any, path: Path, title: str, xlabel: str, panels: list[tuple[str, Bars]], ours: set[str], log: bool
) -> None:
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 0.45 * max(len(b) for _, b in panels) + 1.6))
    axes = axes if len(panels) > 1 else [axes]
    for ax, (subtitle, bars) in zip(axes, panels):
        names = [name for name, _ in bars]
        values = [value for _, value in bars]
        ax.barh(names, values, color=["tab:green" if n in ours else "tab:gray" for n in names])
        ax.invert_yaxis()
        ax.set_title(subtitle, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        if log:
            ax.set_xscale("log")
        for y, value in enumerate(values):
            ax.text(value, y, f" {value:,.0f}" if value >= 100 else f" {value:.3g}", va="center", fontsize=7)
    if len(panels) > 1:
        for ax in axes[1:]:
            ax.set_yticklabels([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(
    report_path: Path,
    subjects: list[Subject],
    overhead: TimingResult | None,
    query: TimingResult | None,
    contention: ContentionResult | None,
) -> list[tuple[str, str]]:
    """Draw every chart the results allow; returns (caption, path relative to the report)."""
    plt = _pyplot()
    if plt is None:
        return []
    folder = report_path.parent / IMG_DIR
    ours = {s.label for s in subjects if s.ours}
    made: list[tuple[str, str]] = []

    def chart(name: str, caption: str, xlabel: str, panels: list[tuple[str, Bars]], log: bool = False) -> None:
        panels = [(t, b) for t, b in panels if b]
        if panels:
            _draw(plt, folder / f"{name}.png", caption, xlabel, panels, ours, log)
            made.append((caption, f"{IMG_DIR}/{name}.png"))

    if overhead is not None:
        chart(
            "bench-overhead",
            "Overhead: borrow + return of a clean connection",
            "µs per cycle, median (log scale) - lower is better",
            [("", _timing_bars(subjects, overhead, FLOOR_LABEL))],
            log=True,
        )
    if query is not None:
        chart(
            "bench-query",
            "Query cycle: borrow + SELECT 1 + fetch + return",
            "µs per cycle, median - lower is better",
            [("", _timing_bars(subjects, query))],
        )
    if contention is not None:
        chart(
            "bench-contention-throughput",
            "Contention: throughput",
            "cycles per second - higher is better",
            _contention_panels(subjects, contention, lambda r: r.throughput),
        )
        chart(
            "bench-contention-max-wait",
            "Contention: longest wait for a connection",
            "ms (log scale) - lower is better",
            _contention_panels(subjects, contention, lambda r: r.wait_max_ms if r.throughput else None),
            log=True,
        )
        chart(
            "bench-fairness",
            "Fairness: spread of cycles between threads (coefficient of variation, lower is fairer)",
            "CV of cycles per thread - lower is better",
            _contention_panels(subjects, contention, lambda r: r.fairness_cv),
        )
    return made
