"""Reports of a results dict: plain-text tables (printed) and Markdown (``docs/benchmarks.md``)."""

from __future__ import annotations

from typing import Any

#: The per-click timings of an engine record, in table order.
ENGINE_TIMINGS = ("total", "network", "engine")


def format_cell(value: Any, digits: int = 1) -> str:
    """A number for a table cell; ``-`` where not measured."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _wall_and_cpu_median(record: dict[str, Any], key: str, digits: int, separator: str) -> str:
    """``wall<separator>CPU`` medians of one engine timing (``key`` and ``cpu_<key>``)."""
    cpu = record.get("cpu_" + key)
    wall = f"{record[key]['median_ms']:.{digits}f}"
    return f"{wall}{separator}{format_cell(cpu['median_ms'] if cpu else None, digits)}"


def format_tables(results: dict[str, Any]) -> str:
    """Plain-text tables of a results dict (wall-clock medians, plus CPU-time medians)."""
    lines: list[str] = []
    machine = results.get("machine", {})
    lines.append(
        f"machine: {machine.get('cpu')} ({machine.get('logical_cpus')} logical CPUs), torch {machine.get('torch')}, "
        f"threads {machine.get('torch_threads')}, load average {machine.get('load_average')}"
    )
    if results.get("latency"):
        lines.append("")
        lines.append("per-click network latency (ms; wall median/p95, CPU = process CPU time median)")
        lines.append(
            f"{'model':<28} {'device':<6} {'prec':<5} {'size':>5} {'median':>9} {'p95':>9} {'CPU':>9} {'n':>4} "
            f"{'RSS+MB':>8} {'CUDA MB':>8} {'load1':>6}"
        )
        for r in results["latency"]:
            load = (r.get("load_average_before") or [None])[0]
            lines.append(
                f"{r['model']:<28} {r['device']:<6} {r['precision']:<5} {r['size']:>5} {r['median_ms']:>9.1f} "
                f"{r['p95_ms']:>9.1f} {format_cell(r.get('cpu_median_ms')):>9} {r['n']:>4} {format_cell(r['rss_increase_mb']):>8} "
                f"{format_cell(r['cuda_peak_mb']):>8} {format_cell(load, 2):>6}"
            )
    for item in results.get("not_measured", []):
        lines.append(f"not measured: {item['device']}: {item['reason']}")
    if results.get("feedback_modules"):
        lines.append("")
        lines.append("FFCM+CFFM cost over the same backbone and head (ms; wall / CPU time medians)")
        lines.append(
            f"{'model':<28} {'size':>5} {'full':>15} {'without':>15} {'cost %':>13} "
            f"{'FFCM hook':>13} {'CFFM hook':>13} {'hook %':>11}"
        )
        for r in results["feedback_modules"]:

            def pair(key: str, digits: int = 1, r: dict[str, Any] = r) -> str:
                # wall / CPU value of one key
                return f"{format_cell(r.get(key), digits)}/{format_cell(r.get('cpu_' + key), digits)}"

            lines.append(
                f"{r['model']:<28} {r['size']:>5} {pair('full_median_ms'):>15} {pair('without_median_ms'):>15} "
                f"{pair('cost_pct_of_full'):>13} {pair('ffcm_hook_ms'):>13} {pair('cffm_hook_ms'):>13} "
                f"{pair('hook_pct_of_full'):>11}"
            )
    if results.get("engine"):
        lines.append("")
        lines.append("engine overhead per click, microscopy preset (ms, medians; wall / CPU time)")
        lines.append(
            f"{'model':<28} {'image':<18} {'clicks':>6} {'total':>15} {'network':>15} {'engine':>13} "
            f"{'engine %':>11} {'set_image':>9}"
        )
        for r in results["engine"]:
            total, network, engine = (_wall_and_cpu_median(r, key, 1, "/") for key in ENGINE_TIMINGS)
            lines.append(
                f"{r['model']:<28} {r['image']:<18} {r['clicks']:>6} {total:>15} {network:>15} "
                f"{engine:>13} {format_cell(r['overhead_pct']) + '/' + format_cell(r.get('cpu_overhead_pct')):>11} "
                f"{r['set_image_median_ms']:>9.1f}"
            )
    if results.get("targets"):
        lines.append("")
        lines.append("targets")
        for name, target in results["targets"].items():
            lines.append(f"  {name}: {target}")
    return "\n".join(lines)


def format_markdown(results: dict[str, Any]) -> str:
    """Markdown tables of a results dict (what ``docs/benchmarks.md`` shows)."""
    machine = results.get("machine", {})
    out = [
        (
            f"Machine: {machine.get('cpu')}, {machine.get('logical_cpus')} logical CPUs; torch {machine.get('torch')}, "
            f"{machine.get('torch_threads')} torch thread(s); Python {machine.get('python')}; napari-fcfi "
            f"{machine.get('napari_fcfi')} (git {machine.get('git_commit')}); {machine.get('date_utc')}; "
            f"load average at start {machine.get('load_average')}, at end {machine.get('load_average_end')}."
        ),
        "",
    ]
    if results.get("command"):
        out += [f"Command: `{results['command']}`", ""]
    if results.get("latency"):
        out += [
            "| model | weights | device | precision | input | median ms | p95 ms | CPU ms | n | RSS + MB | CUDA MB |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["latency"]:
            out.append(
                f"| {r['model']} | {r['weights']} | {r['device']} | {r['precision']} | {r['size']} | "
                f"{r['median_ms']:.0f} | {r['p95_ms']:.0f} | {format_cell(r.get('cpu_median_ms'), 0)} | {r['n']} | "
                f"{format_cell(r['rss_increase_mb'], 0)} | {format_cell(r['cuda_peak_mb'], 0)} |"
            )
        out.append("")
    for item in results.get("not_measured", []):
        out += [f"Not measured: **{item['device']}** ({item['reason']}).", ""]
    if results.get("feedback_modules"):
        out += [
            (
                "| model | input | full ms (wall / CPU) | without FFCM+CFFM | cost % (wall / CPU) "
                "| FFCM hook ms (CPU) | CFFM hook ms (CPU) | hooks % of full (CPU) |"
            ),
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["feedback_modules"]:
            out.append(
                f"| {r['model']} | {r['size']} | {r['full_median_ms']:.0f} / {format_cell(r.get('cpu_full_median_ms'), 0)} | "
                f"{r['without_median_ms']:.0f} / {format_cell(r.get('cpu_without_median_ms'), 0)} | "
                f"{r['cost_pct_of_full']:.1f} / {format_cell(r.get('cpu_cost_pct_of_full'))} | "
                f"{format_cell(r.get('cpu_ffcm_hook_ms'))} | {format_cell(r.get('cpu_cffm_hook_ms'))} | "
                f"{format_cell(r.get('cpu_hook_pct_of_full'))} |"
            )
        out.append("")
    if results.get("engine"):
        out += [
            (
                "| model | image | clicks | network runs | total ms (wall / CPU) | network ms (wall / CPU) "
                "| engine ms (wall / CPU) | engine % of network (wall / CPU) | set_image ms |"
            ),
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["engine"]:
            total, network, engine = (_wall_and_cpu_median(r, key, 0, " / ") for key in ENGINE_TIMINGS)
            out.append(
                f"| {r['model']} | {r['image']} | {r['clicks']} | {r['network_runs']} | {total} | "
                f"{network} | {engine} | {format_cell(r['overhead_pct'])} / "
                f"{format_cell(r.get('cpu_overhead_pct'))} | {r['set_image_median_ms']:.0f} |"
            )
        out.append("")
    return "\n".join(out)
