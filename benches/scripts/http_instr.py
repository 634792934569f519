#!/usr/bin/env python3
"""Server-side cost per request of the HTTP bench's hyper hello server
(src/bin/http_hello.rs, hyper's timer on, 2 workers), counted rather than
timed, so that it holds on a loaded, shared machine.

For each server and connection count the server runs twice with a bound
(`http_hello --requests N`: it exits once it has answered N requests and
the load client, `http_load --requests N`, has closed its connections),
for N = --small and N = --large. The cost per request is the difference of
the two runs divided by the difference of N: start-up, accepting the
connections and closing them cancel out.

- `callgrind`: user-space instructions (valgrind --tool=callgrind, `Ir`).
  valgrind runs the server's threads one at a time, so spinning and parking
  follow valgrind's scheduling, not the machine's; the kernel's share
  (syscalls, wakeups) is not counted: see `perf`.
  valgrind 3.19-3.20 deadlocks a weft io_uring worker parked in
  `io_uring_enter` (that syscall is not marked as blocking, so the parked
  thread keeps valgrind's lock); weft's io_uring servers therefore run with
  `WEFT_IO_PARK_SLICE_US=1000` (a yield, then at most 1 ms per blocking
  enter). The extra wakeups that adds are counted too (a few hundred
  instructions each, a small fraction of a request at 50 connections).
- `perf`: syscalls, context switches and task-clock (CPU ms) of the server
  run natively, from `perf stat` software events and syscall tracepoints
  (no hardware counters needed). Counts, not times, except task-clock,
  which moves with the load.

    python3 benches/scripts/http_instr.py [--servers weft-uring,weft-epoll,weft-serve,tokio]
        [--conns 50,256] [--small 4000] [--large 20000] [--modes callgrind,perf]
        [--repeat 1] [--annotate DIR] [--timer on|off]

valgrind and perf are installed from the Debian packages if missing.
`--annotate DIR` keeps the callgrind output of the large runs in DIR for
`callgrind_annotate --inclusive=yes DIR/<server>-<conns>.cg`.
Prints one line per measurement and a table of ratios to tokio; `uptime`
before and after. Raw figures go to target/http-instr.json.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
HELLO = os.path.join(TARGET, "release", "http_hello")
LOAD = os.path.join(TARGET, "release", "http_load")
PERF_EVENTS = [
    "task-clock", "context-switches",
    "syscalls:sys_enter_io_uring_enter", "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_sendto", "syscalls:sys_enter_recvfrom",
    "syscalls:sys_enter_writev", "syscalls:sys_enter_write",
    "syscalls:sys_enter_futex", "syscalls:sys_enter_sched_yield",
]

ap = argparse.ArgumentParser()
ap.add_argument("--servers", default="weft-uring,weft-epoll,weft-serve,tokio")
ap.add_argument("--conns", default="50,256")
ap.add_argument("--small", type=int, default=4000)
ap.add_argument("--large", type=int, default=20000)
ap.add_argument("--modes", default="callgrind,perf")
ap.add_argument("--repeat", type=int, default=1)
ap.add_argument("--annotate", default=None)
ap.add_argument("--timer", default="on", help="hyper's header-read timer: on or off")
args = ap.parse_args()


def run_bounded(server, conns, n, mode, keep=None):
    """Runs the server under `mode` for `n` requests; returns its counts."""
    env = dict(os.environ)
    if server.startswith("weft") and server != "weft-epoll":
        env["WEFT_IO_PARK_SLICE_US"] = "1000" if mode == "callgrind" else ""
    with tempfile.TemporaryDirectory() as tmp:
        data = keep or os.path.join(tmp, "out")
        cmd = [HELLO, "--runtime", server, "--requests", str(n), "--timer", args.timer]
        if mode == "callgrind":
            cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + data] + cmd
        else:
            cmd = ["perf", "stat", "-x,", "-o", data, "-e", ",".join(PERF_EVENTS)] + cmd
        err = open(os.path.join(tmp, "err"), "w")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        try:
            line = proc.stdout.readline()
            if not line.startswith("listening"):
                raise RuntimeError(f"{server} did not start: {line!r}")
            addr = line.split()[1]
            subprocess.run([LOAD, "--addr", addr, "--conns", str(conns), "--threads", "2",
                            "--requests", str(n)], check=True, stdout=subprocess.DEVNULL,
                           timeout=600)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"{server} exited with {proc.returncode}")
        out = {}
        with open(data) as f:
            if mode == "callgrind":
                for l in f:
                    if l.startswith("summary:"):
                        out["Ir"] = int(l.split()[1])
            else:
                for l in f:
                    parts = l.strip().split(",")
                    if len(parts) > 2 and parts[0] and parts[0][0].isdigit():
                        name = parts[2].replace("syscalls:sys_enter_", "")
                        out[name] = float(parts[0])
        return out


def per_request(server, conns, mode):
    keep = None
    if args.annotate and mode == "callgrind":
        os.makedirs(args.annotate, exist_ok=True)
        keep = os.path.join(args.annotate, f"{server}-{conns}.cg")
    a = run_bounded(server, conns, args.small, mode)
    b = run_bounded(server, conns, args.large, mode, keep)
    return {k: (b[k] - a[k]) / (args.large - args.small) for k in b if k in a}


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def ensure_tools(modes):
    """valgrind and perf from the Debian packages if missing (as root)."""
    needed = {"callgrind": ("valgrind", "valgrind"), "perf": ("perf", "linux-perf")}
    missing = [pkg for mode, (exe, pkg) in needed.items() if mode in modes and not shutil.which(exe)]
    if missing:
        print("installing", " ".join(missing), "from the Debian packages", flush=True)
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y"] + missing, check=True, stdout=subprocess.DEVNULL)


def main():
    ensure_tools(args.modes.split(","))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "weft-benches",
                    "--bin", "http_hello", "--bin", "http_load"], check=True, cwd=ROOT)
    servers = args.servers.split(",")
    conns_list = [int(c) for c in args.conns.split(",")]
    modes = args.modes.split(",")
    print("uptime before:", uptime(), flush=True)
    data = {}  # mode/conns -> server -> [per-request dicts]
    for rep in range(args.repeat):
        for mode in modes:
            for conns in conns_list:
                for server in servers:
                    r = per_request(server, conns, mode)
                    data.setdefault(f"{mode}/{conns}c", {}).setdefault(server, []).append(r)
                    shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(r.items()))
                    print(f"{mode:9} {conns:3}c {server:10} per request: {shown}", flush=True)
    print("uptime after:", uptime(), flush=True)
    print()
    print("medians over repeats; ratio = weft / tokio")
    for key, by_server in data.items():
        base = by_server.get("tokio")
        print(f"== {key}")
        for server, rs in by_server.items():
            med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            main_key = "Ir" if "Ir" in med else "task-clock"
            line = f"  {server:10} " + " ".join(f"{k}={v:.4g}" for k, v in sorted(med.items()))
            if base and server != "tokio":
                b = statistics.median(r[main_key] for r in base)
                line += f"   {main_key} vs tokio: {med[main_key] / b:.3f}x"
            print(line)
    with open(os.path.join(TARGET, "http-instr.json"), "w") as f:
        json.dump(data, f, indent=1)


main()
