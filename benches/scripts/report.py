#!/usr/bin/env python3
"""Writes the current-results tables and SVG ratio charts of docs/BENCHMARKS.md
from criterion's output. Python 3 standard library only.

    python3 benches/scripts/report.py                # target/criterion -> docs/
    python3 benches/scripts/report.py --criterion DIR --doc FILE --svg-dir DIR
    python3 benches/scripts/report.py --self-test    # checks it against the fixture

It reads every `new/benchmark.json` + `new/estimates.json` pair criterion
left under the criterion directory (the median of the last run of each
function), pairs weft with its rival inside each group, and

- replaces the block between `<!-- report:begin -->` and `<!-- report:end -->`
  in the doc with one table per area (weft's median, the rival's, the ratio
  weft / rival: below 1 is better for weft), and
- writes one horizontal bar chart of the ratios per area into the SVG dir
  (`<area>.svg`), which the doc embeds.

Pairing, inside a criterion group (and inside a `BenchmarkId`'s function
name when the id has a parameter): every function whose name starts with
`weft` is a weft side; the rival is the first other function whose name
starts with `tokio`, else the first other function (in `ALL_RIVALS` groups:
every other function, a row each). A group with no weft side or no rival is
listed without a ratio and left out of the charts.

A group whose every function is a weft one is paired against its baseline
when `BASELINES` names one (`spawn_deadline`: a deadline's cost against weft's
plain spawn; tokio has no deadline on spawn); any other group without a rival
is listed with the reason from `UNPAIRED` (or "no rival function").

Besides criterion's own files, the criterion directory may hold what
`benches/scripts/run_all.sh` writes next to them:
- `memory.txt`: the memory bench's output (it is not a criterion bench: it
  measures resident memory in child processes and prints a table), reported
  as the Memory area in bytes per idle task;
- `weft-load.tsv` (bench, start, end, load average before, after, exit
  code; tab-separated) and `weft-machine.txt` (one line): the heading then
  names the machine and lists the load around each run.

Only groups present in the criterion directory are reported: run the benches
you want on the page first (`cargo bench -p weft-benches --bench NAME`).
"""
import argparse
import datetime as dt
import html
import json
import os
import re
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET

BEGIN = "<!-- report:begin -->"
END = "<!-- report:end -->"

# Areas of the page, in order: (title, file stem, regex on the group id).
AREAS = [
    ("Scheduler", "scheduler",
     r"^(spawn_many_local|spawn_many_remote_idle|spawn_many_remote_busy|yield_many|ping_pong|chained_spawn|timers)$"),
    ("Cancellation", "cancellation", r"^(cancel_tree|spawn_deadline|timeout_10k|is_cancelled)"),
    ("Memory", "memory", r"^memory"),
    ("Sync primitives", "sync", r"^(oneshot|mpsc|mutex|contended_mutex|rwlock|semaphore|notify|watch|broadcast)"),
    ("Echo and io", "echo", r"^(tcp_echo|udp_ping_pong|lines)"),
    ("Breaker", "breaker", r"^breaker"),
    ("Limits and pipeline", "limits", r"^(rate|bulkhead|pipeline)"),
    ("Pool", "pool", r"^(pool_get_put|slotmap)"),
    ("Other", "other", r""),
]


# Groups with only weft functions: the function that is the baseline.
BASELINES = {
    "spawn_deadline": "weft_plain",
}

# Groups with several rivals and no obvious first one: weft against each.
ALL_RIVALS = {"pool_get_put"}

# Why a group has no rival, for the page.
UNPAIRED = {}

# Rows of the memory bench's table: (case, side) -> the weft row it pairs with.
MEMORY_PAIRS = {"tokio/oneshot": "weft/oneshot"}


class ReportError(Exception):
    """Input that cannot be reported (a clear message, no traceback)."""


def read_runs(root):
    """{(group, case): {side: (median_ns, mtime)}} from a criterion directory."""
    if not os.path.isdir(root):
        raise ReportError(f"no criterion output at {root} (run `cargo bench -p weft-benches --bench NAME` first)")
    runs = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        est_path = os.path.join(dirpath, "estimates.json")
        if not os.path.exists(est_path):
            raise ReportError(f"{dirpath}: benchmark.json without estimates.json")
        try:
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                bench = json.load(f)
            with open(est_path) as f:
                median = float(json.load(f)["median"]["point_estimate"])
        except (ValueError, KeyError, TypeError) as e:
            raise ReportError(f"{dirpath}: unreadable criterion files ({e!r})")
        group = bench.get("group_id")
        function = bench.get("function_id")
        value = bench.get("value_str")
        if not group:
            raise ReportError(f"{dirpath}: benchmark.json has no group_id")
        # BenchmarkId::new(function, parameter): the parameter names the side.
        if value and function:
            case, side = function, value
        elif function:
            case, side = "", function
        else:
            case, side = "", value or ""
        runs.setdefault((group, case), {})[side] = (median, os.path.getmtime(est_path))
    if not runs:
        raise ReportError(f"no criterion results under {root}")
    return runs


def pair(sides, group=""):
    """[(weft side, rival side or None)] for one group's sides."""
    names = list(sides)
    weft = sorted(n for n in names if n.startswith("weft"))
    others = [n for n in names if not n.startswith("weft")]
    baseline = BASELINES.get(group)
    if not others and baseline in weft:
        weft.remove(baseline)
        others = [baseline]
    rivals = sorted(n for n in others if n.startswith("tokio")) + sorted(n for n in others if not n.startswith("tokio"))
    rival = rivals[0] if rivals else None
    if not weft:
        return [(None, n) for n in sorted(names)]
    if group in ALL_RIVALS and len(rivals) > 1:
        return [(w, r) for w in weft for r in rivals]
    return [(w, rival) for w in weft]


def area_of(group):
    for title, stem, pattern in AREAS:
        if re.search(pattern, group):
            return title, stem
    raise AssertionError("the last area matches everything")


def rows_by_area(runs):
    """{area title: (stem, [row])}, areas in page order, rows sorted."""
    out = {}
    for (group, case), sides in sorted(runs.items()):
        title, stem = area_of(group)
        label = f"{group}/{case}" if case else group
        for weft, rival in pair(sides, group):
            w = sides[weft][0] if weft else None
            r = sides[rival][0] if rival else None
            ratio = w / r if (w is not None and r) else None
            out.setdefault(title, (stem, []))[1].append({
                "label": label, "weft": weft, "rival": rival,
                "weft_ns": w, "rival_ns": r, "ratio": ratio, "unit": "ns",
                "why": None if ratio is not None else UNPAIRED.get(group, "no rival function in the group"),
            })
    order = [a[0] for a in AREAS]
    return {k: out[k] for k in sorted(out, key=order.index)}


def read_memory(root):
    """Memory rows from the memory bench's table in `memory.txt`, or []."""
    path = os.path.join(root, "memory.txt")
    if not os.path.exists(path):
        return []
    cases = {}
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 2 and "/" in cells[0] and cells[1].isdigit():
                cases[cells[0]] = float(cells[1])
    if not cases:
        raise ReportError(f"{path}: no `| runtime/primitive | bytes | ...` rows")
    rows = []
    for rival, weft in MEMORY_PAIRS.items():
        if weft in cases and rival in cases:
            rows.append({
                "label": f"memory/idle_task_{weft.split('/')[1]}", "weft": weft, "rival": rival,
                "weft_ns": cases[weft], "rival_ns": cases[rival],
                "ratio": cases[weft] / cases[rival], "unit": "B", "why": None,
            })
    for case, value in sorted(cases.items()):
        if case not in MEMORY_PAIRS and case not in MEMORY_PAIRS.values():
            rows.append({
                "label": f"memory/idle_task ({case}, reference)", "weft": None, "rival": case,
                "weft_ns": None, "rival_ns": value, "ratio": None, "unit": "B",
                "why": "reference only: weft's tasks are not parked on a shared primitive in this bench",
            })
    return rows


def read_conditions(root):
    """(machine line or None, [load rows]) from the runner's files."""
    machine = None
    path = os.path.join(root, "weft-machine.txt")
    if os.path.exists(path):
        with open(path) as f:
            machine = f.read().strip() or None
    loads = []
    path = os.path.join(root, "weft-load.tsv")
    if os.path.exists(path):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                cells = line.rstrip("\n").split("\t")
                if len(cells) != 6:
                    raise ReportError(f"{path}:{n}: expected 6 tab-separated fields, got {len(cells)}")
                loads.append(dict(zip(("bench", "start", "end", "before", "after", "rc"), cells)))
    return machine, loads


def fmt_value(v, unit):
    if v is None:
        return "—"
    if unit == "B":
        return f"{v:.0f} B"
    return fmt_time(v)


def fmt_time(ns):
    if ns is None:
        return "—"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


# A 1-minute load average above this before a run: other work shared the
# machine's two cores (the echo bench's own client and servers leave ≈ 3
# behind them for the next run).
BUSY_LOAD = 4.0


def tables(areas, generated, svg_rel, machine=None, loads=()):
    lines = [
        f"Generated {generated} by `python3 benches/scripts/report.py` from the",
        "criterion output in `target/criterion` (the median of each function's",
        "last run; ratio = weft ÷ rival of the same group, below 1 is better for",
        "weft). Only the groups run before generating are listed.",
        "",
    ]
    if machine or loads:
        # The benches' own threads (a load client beside the server) keep
        # the load near the core count; a higher load before a run means
        # something else was running.
        busy = any(float(l["before"].split()[0]) > BUSY_LOAD for l in loads)
        if busy:
            lines.append(f"Measured on {machine or 'an unnamed machine'}, **while other builds and tests ran on it**:")
            lines.append("the figures are noisier than on an idle machine; compare ratios, not absolute times.")
        else:
            lines.append(f"Measured on {machine or 'an unnamed machine'} with nothing else running (the load")
            lines.append("average counts the benches' own threads); a shared VM still drifts, so compare ratios.")
        lines.append("Load average (1, 5, 15 min) around each run:")
        lines.append("")
        lines.append("| bench | UTC | load before | load after | exit |")
        lines.append("|---|---|---|---|---|")
        for l in loads:
            lines.append(f"| {l['bench']} | {l['start']}–{l['end']} | {l['before']} | {l['after']} | {l['rc']} |")
        lines.append("")
    for title, (stem, rows) in areas.items():
        lines.append(f"### {title}")
        lines.append("")
        if any(r["ratio"] is not None for r in rows):
            lines.append(f"![{title}: weft ÷ rival]({svg_rel}/{stem}.svg)")
            lines.append("")
        lines.append("| group | weft | median | rival | median | weft ÷ rival |")
        lines.append("|---|---|---|---|---|---|")
        for r in rows:
            ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "—"
            lines.append(
                f"| {r['label']} | {r['weft'] or '—'} | {fmt_value(r['weft_ns'], r.get('unit', 'ns'))} | "
                f"{r['rival'] or '—'} | {fmt_value(r['rival_ns'], r.get('unit', 'ns'))} | {ratio} |")
        lines.append("")
        why = [(r["label"], r["why"]) for r in rows if r.get("why")]
        for label, reason in why:
            lines.append(f"- {label}: no ratio ({reason}).")
        if why:
            lines.append("")
    return "\n".join(lines)


def svg_chart(title, rows):
    """A horizontal bar per ratio, a rule at 1.0; hand-written SVG."""
    rows = [r for r in rows if r["ratio"] is not None]
    label_w, bar_w, row_h, top, bottom = 330, 360, 22, 34, 30
    top_ratio = max(2.0, max(r["ratio"] for r in rows) * 1.1)
    scale = bar_w / top_ratio
    height = top + row_h * len(rows) + bottom
    width = label_w + bar_w + 70
    esc = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<title>{esc(title)}: weft ÷ rival (below 1 is better for weft)</title>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="8" y="20" font-size="14" font-weight="bold">{esc(title)}: weft ÷ rival</text>',
    ]
    for i, r in enumerate(rows):
        y = top + i * row_h
        w = r["ratio"] * scale
        color = "#2e8b57" if r["ratio"] < 1 else "#d2691e"
        name = r["label"] + (f" ({r['weft']} vs {r['rival']})" if r["weft"] != "weft" or not str(r["rival"]).startswith("tokio") else "")
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{esc(name[:52])}</text>')
        parts.append(f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" '
                     f'fill="{color}" data-ratio="{r["ratio"]:.4f}"/>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 15}">{r["ratio"]:.2f}</text>')
    one = label_w + scale
    axis_y = top + row_h * len(rows)
    parts.append(f'<line x1="{one:.1f}" y1="{top - 4}" x2="{one:.1f}" y2="{axis_y + 4}" '
                 f'stroke="black" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{one:.1f}" y="{axis_y + 18}" text-anchor="middle">1.0 (parity)</text>')
    parts.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + bar_w}" y2="{axis_y}" stroke="#888"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def replace_block(doc_text, block):
    if doc_text.count(BEGIN) != 1 or doc_text.count(END) != 1 or doc_text.index(BEGIN) > doc_text.index(END):
        raise ReportError(f"the doc needs exactly one {BEGIN} ... {END} block, in that order")
    head, rest = doc_text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def generate(criterion, doc, svg_dir, generated=None):
    runs = read_runs(criterion)
    areas = rows_by_area(runs)
    memory = read_memory(criterion)
    if memory:
        areas.setdefault("Memory", ("memory", []))[1].extend(memory)
        order = [a[0] for a in AREAS]
        areas = {k: areas[k] for k in sorted(areas, key=order.index)}
    machine, loads = read_conditions(criterion)
    if generated is None:
        newest = max(m for sides in runs.values() for (_, m) in sides.values())
        generated = dt.datetime.fromtimestamp(newest, dt.timezone.utc).strftime("%Y-%m-%d")
    os.makedirs(svg_dir, exist_ok=True)
    written = []
    for title, (stem, rows) in areas.items():
        if any(r["ratio"] is not None for r in rows):
            path = os.path.join(svg_dir, f"{stem}.svg")
            with open(path, "w") as f:
                f.write(svg_chart(title, rows))
            written.append(path)
    svg_rel = os.path.relpath(svg_dir, os.path.dirname(os.path.abspath(doc)))
    with open(doc) as f:
        text = f.read()
    text = replace_block(text, tables(areas, generated, svg_rel, machine, loads))
    with open(doc, "w") as f:
        f.write(text)
    return areas, written


def self_test():
    """Generates from benches/scripts/fixture/ and checks the result."""
    here = os.path.dirname(os.path.abspath(__file__))
    fixture = os.path.join(here, "fixture")
    tmp = tempfile.mkdtemp(prefix="weft-report-")
    try:
        doc = os.path.join(tmp, "BENCH.md")
        with open(doc, "w") as f:
            f.write(f"# Page\n\nbefore\n\n{BEGIN}\nold\n{END}\n\nafter\n")
        svg_dir = os.path.join(tmp, "bench")
        areas, written = generate(os.path.join(fixture, "criterion"), doc, svg_dir, generated="FIXTURE")
        with open(doc) as f:
            got = f.read()
        with open(os.path.join(fixture, "expected.md")) as f:
            want = f.read()
        assert got == want, f"tables differ from fixture/expected.md:\n{got}"
        # Generating again changes nothing (the block is replaced, not added).
        generate(os.path.join(fixture, "criterion"), doc, svg_dir, generated="FIXTURE")
        with open(doc) as f:
            assert f.read() == want, "a second run changed the page"
        # Pairing and ratios, from the fixture's medians.
        sched = dict(areas)["Scheduler"][1]
        assert [r["label"] for r in sched] == ["ping_pong", "spawn_many_local"], sched
        assert abs(sched[0]["ratio"] - 1500.0 / 2500.0) < 1e-12
        canc = dict(areas)["Cancellation"][1]
        assert [(r["weft"], r["rival"]) for r in canc] == [
            ("weft_deadline_60s", "tokio_util_token"), ("weft_no_deadline", "tokio_util_token")], canc
        pool = dict(areas)["Pool"][1]
        assert [(r["label"], r["weft"], r["rival"]) for r in pool] == [("pool_get_put/1_thread", "weft", "object-pool")], pool
        other = dict(areas)["Other"][1]
        assert other[0]["ratio"] is None and other[0]["weft"] == "weft_only", other
        # Charts: one per area with a ratio, well-formed, bar widths in
        # proportion to the ratios.
        assert sorted(os.path.basename(p) for p in written) == ["cancellation.svg", "pool.svg", "scheduler.svg"], written
        ns = {"s": "http://www.w3.org/2000/svg"}
        svg = ET.parse(os.path.join(svg_dir, "scheduler.svg")).getroot()
        bars = svg.findall("s:rect[@class='bar']", ns)
        assert len(bars) == 2
        ratios = [float(b.get("data-ratio")) for b in bars]
        widths = [float(b.get("width")) for b in bars]
        assert abs(widths[0] / widths[1] - ratios[0] / ratios[1]) < 0.01, (widths, ratios)
        assert bars[0].get("fill") == "#2e8b57" and bars[1].get("fill") == "#d2691e"
        # The runner's files and a weft-only group with a baseline.
        extra = os.path.join(tmp, "criterion")
        shutil.copytree(os.path.join(fixture, "criterion"), extra)
        for side, median in (("weft_plain", 100.0), ("weft_deadline", 130.0)):
            d = os.path.join(extra, "spawn_deadline", side, "new")
            os.makedirs(d)
            with open(os.path.join(d, "benchmark.json"), "w") as f:
                json.dump({"group_id": "spawn_deadline", "function_id": side, "value_str": None}, f)
            with open(os.path.join(d, "estimates.json"), "w") as f:
                json.dump({"median": {"point_estimate": median}}, f)
        with open(os.path.join(extra, "memory.txt"), "w") as f:
            f.write("memory per idle task\n\n| runtime / waiting primitive | bytes per idle task | future size (bytes) | runs |\n"
                    "|---|---|---|---|\n| weft/oneshot | 128 | 32 | 128, 128, 128 |\n"
                    "| tokio/oneshot | 512 | 32 | 512, 512, 512 |\n| tokio/notify | 448 | 88 | 448 |\n")
        with open(os.path.join(extra, "weft-load.tsv"), "w") as f:
            f.write("scheduler\t10:00:00\t10:01:40\t8.20 7.35 8.71\t11.27 8.54 8.99\t0\n")
        with open(os.path.join(extra, "weft-machine.txt"), "w") as f:
            f.write("Test CPU, 2 cores\n")
        with open(doc, "w") as f:
            f.write(f"{BEGIN}\n{END}\n")
        areas, written = generate(extra, doc, svg_dir, generated="X")
        with open(doc) as f:
            got = f.read()
        assert "Measured on Test CPU, 2 cores, **while other builds and tests ran on it**" in got, got
        assert "| scheduler | 10:00:00–10:01:40 | 8.20 7.35 8.71 | 11.27 8.54 8.99 | 0 |" in got, got
        mem = dict(areas)["Memory"][1]
        assert [(r["weft"], r["rival"], r["ratio"]) for r in mem] == [
            ("weft/oneshot", "tokio/oneshot", 0.25), (None, "tokio/notify", None)], mem
        assert "| memory/idle_task_oneshot | weft/oneshot | 128 B | tokio/oneshot | 512 B | 0.25 |" in got, got
        assert "reference only" in got
        canc = dict(areas)["Cancellation"][1]
        sd = [r for r in canc if r["label"] == "spawn_deadline"]
        assert [(r["weft"], r["rival"], r["ratio"]) for r in sd] == [("weft_deadline", "weft_plain", 1.3)], sd
        assert "memory.svg" in [os.path.basename(p) for p in written], written
        with open(os.path.join(extra, "weft-load.tsv"), "a") as f:
            f.write("broken line\n")
        try:
            generate(extra, doc, svg_dir)
        except ReportError as e:
            assert "6 tab-separated fields" in str(e), e
        else:
            raise AssertionError("a malformed load file was accepted")
        with open(doc, "w") as f:
            f.write(f"{BEGIN}\n{END}\n")
        # Failure paths: a clear error, not a traceback.
        for bad, message in (
            (os.path.join(tmp, "missing"), "no criterion output"),
            (os.path.join(fixture, "broken"), "benchmark.json without estimates.json"),
        ):
            try:
                generate(bad, doc, svg_dir)
            except ReportError as e:
                assert message in str(e), e
            else:
                raise AssertionError(f"{bad} was accepted")
        with open(doc, "w") as f:
            f.write("no markers\n")
        try:
            generate(os.path.join(fixture, "criterion"), doc, svg_dir)
        except ReportError as e:
            assert "block" in str(e)
        else:
            raise AssertionError("a doc without markers was accepted")
    finally:
        shutil.rmtree(tmp)
    print("report.py self-test: OK")


def main():
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--criterion", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "criterion"))
    ap.add_argument("--doc", default=os.path.join(root, "docs", "BENCHMARKS.md"))
    ap.add_argument("--svg-dir", default=os.path.join(root, "docs", "bench"))
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return
    try:
        areas, written = generate(args.criterion, args.doc, args.svg_dir)
    except ReportError as e:
        sys.exit(f"report.py: {e}")
    rows = sum(len(r) for _, r in areas.values())
    print(f"report.py: {rows} rows in {len(areas)} areas into {args.doc}; charts: {', '.join(written) or 'none'}")


if __name__ == "__main__":
    main()
