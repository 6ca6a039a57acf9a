"""Plot per-click latency against input size from ``fcfi bench --out`` JSON files.

    python benchmarks/plot_latency.py benchmarks/measurements/cpu_1thread_loaded.json \
        --out docs/images/latency.png

One line per (model, device, precision): the wall-clock median with a bar up to the p95 and, where
recorded, the CPU-time median as a dashed line of the same colour (on a shared, loaded machine the
CPU time is the better estimate of what an idle machine would show). The 150 ms goal for the bundled
model on the 2-core CPU is drawn as a horizontal line.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from napari_fcfi.bench.targets import BUNDLED_CPU_TARGET_MS


def load_records(paths: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    records, machines = [], []
    for path in paths:
        data = json.loads(path.read_text())
        machines.append(data.get("machine", {}))
        records.extend(data.get("latency", []))
    if not records:
        raise ValueError(f"no latency records in {', '.join(map(str, paths))}")
    return records, machines


def plot(records: list[dict[str, Any]], machines: list[dict[str, Any]], out: Path, title: str | None) -> None:
    groups: dict[tuple[str, str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        key = (record["model"], record["device"], record["precision"], record.get("threads", 0))
        groups[key].append(record)
    fig, ax = plt.subplots(figsize=(10.5, 5.0), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (key, rows) in enumerate(sorted(groups.items())):
        rows = sorted(rows, key=lambda r: r["size"])
        model, device, precision, threads = key
        colour = colours[index % len(colours)]
        sizes = [r["size"] for r in rows]
        median = [r["median_ms"] for r in rows]
        upper = [r["p95_ms"] - r["median_ms"] for r in rows]
        label = f"{model} {device} {precision}" + (f" {threads} thr" if device == "cpu" and threads else "")
        ax.errorbar(
            sizes, median, yerr=[[0] * len(rows), upper], marker="o", capsize=3, color=colour, label=label
        )
        cpu = [r.get("cpu_median_ms") for r in rows]
        if all(v is not None for v in cpu) and device == "cpu":
            ax.plot(
                sizes, cpu, linestyle="--", marker="x", color=colour, alpha=0.7, label=f"{label} (CPU time)"
            )
    ax.axhline(
        BUNDLED_CPU_TARGET_MS, color="grey", linestyle=":", label=f"{BUNDLED_CPU_TARGET_MS:.0f} ms goal"
    )
    ax.set_yscale("log")
    ax.set_xlabel("input size (pixels per side)")
    ax.set_ylabel("per-click latency (ms)")
    sizes = sorted({r["size"] for r in records})
    ax.set_xticks(sizes)
    machine = machines[0] if machines else {}
    loads = [m.get("load_average") for m in machines if m.get("load_average")]
    subtitle = f"{machine.get('cpu', '?')}, {machine.get('logical_cpus', '?')} CPUs, torch {machine.get('torch', '?')}"
    if loads:
        subtitle += f", load avg {loads[0][0]:.1f} at start"
    ax.set_title(
        (title or "FCFI per-click network latency (median, bar to p95)") + "\n" + subtitle, fontsize=9
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="plot latency vs input size from fcfi bench JSON")
    parser.add_argument("results", nargs="+", type=Path, help="fcfi bench --out files")
    parser.add_argument("--out", type=Path, default=Path("docs/images/latency.png"))
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    records, machines = load_records(args.results)
    plot(records, machines, args.out, args.title)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
