#!/usr/bin/env python3
"""Runs criterion groups several times and reports weft/tokio ratios.

This VM's timings drift by 2x between runs (CPU placement of the three
threads on two vCPUs), so a single run's ratio means little. This runs the
chosen bench `--runs` times, reads each group's medians from
target/criterion/<group>/<fn>/new/estimates.json after every run, and prints
each run's ratio, the median ratio per group, and the ratio of each side's
best median over the runs (the VM sometimes runs one side 2x slower for a
whole measurement; the best times filter that out).

    python3 benches/scripts/ratios.py scheduler 'ping_pong|remote_busy' --runs 5
    python3 benches/scripts/ratios.py cancel 'timeout_10k' --pair weft_deadline/weft_plain
"""
import argparse, json, os, re, statistics, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("bench")
ap.add_argument("filter")
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--pair", default="weft/tokio", help="numerator/denominator function names")
args = ap.parse_args()
num, den = args.pair.split("/")
root = os.path.join(os.path.dirname(__file__), "..", "..", "target", "criterion")
ratios = {}
best = {}
for run in range(args.runs):
    # Every other run swaps the order of each group's two functions (for the
    # benches that read WEFT_BENCH_SWAP): the one measured second runs a few
    # percent slower on this VM.
    env = dict(os.environ)
    if run % 2 == 1:
        env["WEFT_BENCH_SWAP"] = "1"
    else:
        env.pop("WEFT_BENCH_SWAP", None)
    out = subprocess.run(
        ["cargo", "bench", "-q", "-p", "weft-benches", "--bench", args.bench, "--", args.filter],
        capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(out.stderr)
    groups = sorted({m.group(1) for m in re.finditer(r"^([\w./-]+)/" + num + r"\s", out.stdout, re.M)})
    for g in groups:
        med = {}
        for fn in (num, den):
            with open(os.path.join(root, g, fn, "new", "estimates.json")) as f:
                med[fn] = json.load(f)["median"]["point_estimate"]
        r = med[num] / med[den]
        ratios.setdefault(g, []).append(r)
        b = best.setdefault(g, {})
        for fn in (num, den):
            b[fn] = min(b.get(fn, float("inf")), med[fn])
        print(f"run {run + 1} {g}: {num} {med[num] / 1e3:.1f} us, {den} {med[den] / 1e3:.1f} us, ratio {r:.2f}", flush=True)
print()
for g, rs in ratios.items():
    b = best[g]
    print(f"{g}: median ratio {statistics.median(rs):.2f} (min {min(rs):.2f}, max {max(rs):.2f}, {len(rs)} runs); "
          f"best times {b[num] / 1e3:.1f} us / {b[den] / 1e3:.1f} us = {b[num] / b[den]:.2f}")
