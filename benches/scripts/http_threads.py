#!/usr/bin/env python3
"""Where an HTTP server's time goes, thread by thread: starts
`target/release/http_hello --runtime RUNTIME --timer on`, warms it with
one second of `wrk -t1 -cCONNS`, then reads every server thread's
context switches (voluntary, involuntary) and CPU time (utime, stime)
from /proc/PID/task/TID/{status,stat} around a measured wrk run, and
prints them per request. A thread that sleeps and wakes often shows as
voluntary switches; one preempted by the client or a peer shows as
involuntary ones.

    cargo build --release -p weft-benches --bin http_hello
    python3 benches/scripts/http_threads.py RUNTIME [CONNS [SECS]]

RUNTIME is one of http_hello's (weft-uring, weft-epoll, weft-serve, weft-tpc,
tokio); CONNS defaults to 50, SECS to 4. Set HTTP_HELLO to measure
another build of the server (an A/B of two builds, interleaved by hand).
CPU times come in clock ticks (10 ms at CONFIG_HZ 250), so one run's
split is coarse; compare totals over several interleaved runs.
"""
import os
import re
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def snapshot(pid):
    """{tid: (name, voluntary, involuntary, utime, stime)} of live threads."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = f.read()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # the thread ended between the listing and the read
        name = re.search(r"Name:\s+(\S+)", status).group(1)
        vol = int(re.search(r"\nvoluntary_ctxt_switches:\s+(\d+)", status).group(1))
        invol = int(re.search(r"nonvoluntary_ctxt_switches:\s+(\d+)", status).group(1))
        # fields[0] is field 3 (state): utime is field 14, stime 15.
        out[tid] = (name, vol, invol, int(fields[11]), int(fields[12]))
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runtime = sys.argv[1]
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    secs = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    exe = os.environ.get("HTTP_HELLO", os.path.join(TARGET, "release", "http_hello"))
    server = subprocess.Popen([exe, "--runtime", runtime, "--timer", "on"],
                              stdout=subprocess.PIPE, text=True)
    try:
        addr = server.stdout.readline().split()[-1]
        url = f"http://{addr}/"
        subprocess.run(["wrk", "-t1", f"-c{conns}", "-d1s", url],
                       capture_output=True, check=True)
        before = snapshot(server.pid)
        report = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", url],
                                capture_output=True, text=True, check=True).stdout
        after = snapshot(server.pid)
    finally:
        server.kill()
        server.wait()
    requests = int(re.search(r"(\d+) requests in", report).group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", report, re.M).group(1)
    p99 = re.search(r"^\s+99%\s+(\S+)", report, re.M).group(1)
    print(f"{runtime}, {conns} conns: {requests / secs:.0f} req/s, p50 {p50}, p99 {p99}")
    print(f"  {'thread':16} {'vol/req':>8} {'invol/req':>9} {'user ms':>8} {'sys ms':>7}")
    totals = [0, 0, 0, 0]
    for tid, (name, vol, invol, utime, stime) in sorted(after.items()):
        if tid not in before:
            continue
        _, vol0, invol0, utime0, stime0 = before[tid]
        d = [vol - vol0, invol - invol0, utime - utime0, stime - stime0]
        totals = [t + x for t, x in zip(totals, d)]
        if any(d):
            print(f"  {name:16} {d[0] / requests:8.3f} {d[1] / requests:9.3f} "
                  f"{d[2] * TICK_MS:8.0f} {d[3] * TICK_MS:7.0f}")
    cpu_us = (totals[2] + totals[3]) * TICK_MS * 1000 / requests
    user_us = totals[2] * TICK_MS * 1000 / requests
    print(f"  total: {totals[0] / requests:.3f} voluntary and {totals[1] / requests:.3f} "
          f"involuntary switches, {cpu_us:.2f} us CPU ({user_us:.2f} user) per request")


if __name__ == "__main__":
    main()
