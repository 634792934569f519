#!/usr/bin/env python3
"""HTTP bench: hyper's hello server (HTTP/1.1, hyper's timer on) on weft
io_uring, weft epoll, weft_hyper::serve (io_uring), weft's thread-per-core
flavour (io_uring, one SO_REUSEPORT listener per worker), tokio, and, as
the io_uring peer, hyper on monoio (thread per core, one SO_REUSEPORT
listener per thread, monoio-compat's hyper io and timer), 2 workers each, driven by wrk and by the repo's own load client (src/bin/http_load.rs)
at 50 and 256 connections; then weft_hyper's pooled client against
hyper-util's client on tokio (src/bin/http_client.rs), both against one
tokio hello server over HTTP/1.1, then both over HTTP/2 against
weft_hyper's server (wrk speaks HTTP/1 only, so HTTP/2 is measured
client-side).

`--servers ...,nginx` adds a C peer that is not hyper: nginx with 2 worker
processes and one `SO_REUSEPORT` listener each, answering `return 200
"Hello, World!"` with access logging off and unlimited keep-alive requests
(installed from the Debian packages, `nginx-light`, if missing); its CPU is
its workers'. It shows what the kernel's TCP and this client leave to any
server on these two cores.

For each load tool and connection count it reports requests/s, server CPU
time per request (utime + stime of the server process from /proc/PID/stat,
across the measurement), p50 and p99 latency, and each weft server's ratios
to tokio's. The servers are measured in rotating order, `--rounds` times
(this 2-core VM is shared and drifts: the medians and ranges over rounds are
what to quote), and `uptime` is printed before and after.

    python3 benches/scripts/http.py [--rounds 3] [--secs 5] [--conns 50,256]

wrk is installed from the Debian packages if missing (apt-get, as root).
Writes the raw figures to target/http-summary.json.
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SERVERS = ["weft-uring", "weft-epoll", "weft-serve", "weft-tpc", "tokio", "monoio"]
CLK_TCK = os.sysconf("SC_CLK_TCK")

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--secs", type=int, default=5)
ap.add_argument("--conns", default="50,256")
ap.add_argument("--servers", default=",".join(SERVERS))
ap.add_argument("--tools", default="wrk,http_load,client")
ap.add_argument("--timer", default="on")
args = ap.parse_args()
servers = args.servers.split(",")
tools = args.tools.split(",")


def ensure(tool, package):
    """Installs `package` from the Debian packages if `tool` is missing."""
    if shutil.which(tool):
        return
    print(f"{tool} not found: installing {package} from the Debian packages", flush=True)
    subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", package], check=True, stdout=subprocess.DEVNULL)


NGINX_CONF = """worker_processes 2;
daemon off;
master_process on;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 60s;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{ default_type text/plain; return 200 "Hello, World!"; }}
  }}
}}
"""


def start_nginx():
    """Starts nginx on a free port: (process, address, worker pids, temp dir)."""
    import socket, tempfile
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tempfile.TemporaryDirectory()
    conf = os.path.join(tmp.name, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(dir=tmp.name, port=port))
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", tmp.name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 5
    workers = []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.1)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                 text=True).stdout.split()
    if len(workers) < 2:
        proc.kill()
        raise RuntimeError(f"nginx did not start its workers (see {tmp.name}/error.log)")
    return proc, f"127.0.0.1:{port}", [int(w) for w in workers], tmp


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def to_us(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    v = float(m.group(1))
    return v * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def run_wrk(addr, conns, secs):
    threads = 1 if conns <= 50 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--latency", f"http://{addr}/"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_us(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_us(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if errors:
        print("  wrk reported errors:", errors.group(0), flush=True)
    return dict(rps=rps, p50_us=p50, p99_us=p99, requests=total)


def run_load(addr, conns, secs):
    exe = os.path.join(TARGET, "release", "http_load")
    out = subprocess.run(
        [exe, "--addr", addr, "--conns", str(conns), "--threads", "2", "--secs", str(secs), "--warmup", "0"],
        capture_output=True, text=True, check=True).stdout
    kv = dict(part.split("=") for part in out.split())
    return dict(rps=float(kv["rps"]), p50_us=float(kv["p50_us"]), p99_us=float(kv["p99_us"]),
                requests=int(kv["requests"]))


def measure(server, conns):
    tmp = None
    if server == "nginx":
        proc, addr, pids, tmp = start_nginx()
    else:
        exe = os.path.join(TARGET, "release", "http_hello")
        proc = subprocess.Popen([exe, "--runtime", server, "--timer", args.timer],
                                stdout=subprocess.PIPE, text=True)
        pids = [proc.pid]
    cpu = lambda: sum(cpu_seconds(pid) for pid in pids)
    try:
        if server != "nginx":
            addr = proc.stdout.readline().split()[1]
        # Warm-up: connections, allocator, caches.
        run_wrk(addr, conns, 1)
        results = {}
        for tool in tools:
            before = cpu()
            if tool == "client":
                continue
            r = run_wrk(addr, conns, args.secs) if tool == "wrk" else run_load(addr, conns, args.secs)
            r["cpu_us_per_req"] = (cpu() - before) / max(r["requests"], 1) * 1e6
            results[tool] = r
        return results
    finally:
        proc.kill()
        proc.wait()
        if tmp is not None:
            # The workers outlive a killed master.
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            tmp.cleanup()


def client_bench(conns, http2=False):
    """weft_hyper::Client vs hyper-util's client on tokio, against one tokio
    hello server (HTTP/1.1) or one weft_hyper server (HTTP/2); `--rounds`
    runs of `http_client --runtime paired` (2 × `--secs` pairs of
    half-second slices each)."""
    cmd = [os.path.join(TARGET, "release", "http_hello"), "--runtime", "tokio"]
    if http2:
        cmd = [os.path.join(TARGET, "release", "http_hello"), "--runtime", "weft-serve", "--http2", "on"]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    proto = "h2" if http2 else "h1"
    try:
        addr = server.stdout.readline().split()[1]
        res = {}
        ratios, cpu = [], []
        for rnd in range(args.rounds):
            # Both clients in one process, alternating half-second slices
            # (weft, tokio, tokio, weft, ...): this host's speed drifts
            # within seconds, and separate processes run one after the
            # other gave ratios from 0.5 to 1.6 (docs/BENCHMARKS.md, "A
            # task's fills under the monitor's rule, and the client
            # compared in paired slices").
            out = subprocess.run([os.path.join(TARGET, "release", "http_client"), "--runtime", "paired",
                                  "--addr", addr, "--conns", str(conns), "--secs", "0.5",
                                  "--slices", str(max(2, 2 * args.secs)),
                                  "--http2", "on" if http2 else "off"],
                                 capture_output=True, text=True, check=True).stdout
            pairs = re.findall(r"weft rps=(\S+) cpu_us_per_req=(\S+)\s+tokio rps=(\S+) cpu_us_per_req=(\S+)", out)
            if not pairs:
                raise RuntimeError(f"http_client printed no pairs: {out!r}")
            for w_rps, w_cpu, t_rps, t_cpu in pairs:
                res.setdefault("weft", []).append(dict(rps=float(w_rps), cpu_us_per_req=float(w_cpu)))
                res.setdefault("tokio", []).append(dict(rps=float(t_rps), cpu_us_per_req=float(t_cpu)))
            r = statistics.median(float(w) / float(t) for w, _, t, _ in pairs)
            c = statistics.median(float(w) / float(t) for _, w, _, t in pairs)
            ratios.append(r)
            cpu.append(c)
            print(f"client {proto} round {rnd + 1} {conns:3}c: {len(pairs)} paired slices, weft/tokio "
                  f"req/s {r:.2f}x, client CPU/req {c:.2f}x (medians)", flush=True)
        print(f"== client-{proto}/{conns}c: weft/tokio req/s {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}), client CPU/req {statistics.median(cpu):.2f}x "
              f"({min(cpu):.2f}-{max(cpu):.2f}) (medians over rounds of paired slices)", flush=True)
        return res
    finally:
        server.kill()
        server.wait()


def main():
    ensure("wrk", "wrk")
    if "nginx" in servers:
        ensure("nginx", "nginx-light")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "weft-benches",
                    "--bin", "http_hello", "--bin", "http_load", "--bin", "http_client"],
                   check=True, cwd=ROOT)
    print("uptime before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    data = {}  # (tool, conns) -> server -> [result per round]
    for rnd in range(args.rounds):
        for conns in [int(c) for c in args.conns.split(",")]:
            order = servers[rnd % len(servers):] + servers[:rnd % len(servers)]
            for server in order:
                res = measure(server, conns)
                for tool, r in res.items():
                    data.setdefault(f"{tool}/{conns}c", {}).setdefault(server, []).append(r)
                    print(f"round {rnd + 1} {tool:9} {conns:3}c {server:10}: {r['rps']:8.0f} req/s, "
                          f"{r['cpu_us_per_req']:6.2f} us CPU/req, p50 {r['p50_us']:7.0f} us, p99 {r['p99_us']:7.0f} us",
                          flush=True)
    print("uptime after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    print()
    print("medians over rounds; ratios to tokio are per round, shown as median (min-max)")
    for key, by_server in data.items():
        print(f"== {key}")
        base = by_server.get("tokio")
        for server, rs in by_server.items():
            med = {k: statistics.median(r[k] for r in rs) for k in ("rps", "cpu_us_per_req", "p50_us", "p99_us")}
            line = (f"  {server:10} {med['rps']:8.0f} req/s  {med['cpu_us_per_req']:6.2f} us CPU/req  "
                    f"p50 {med['p50_us']:6.0f} us  p99 {med['p99_us']:6.0f} us")
            if base and server != "tokio":
                parts = []
                for k, name in (("rps", "req/s"), ("cpu_us_per_req", "CPU/req"), ("p99_us", "p99")):
                    ratios = [a[k] / b[k] for a, b in zip(rs, base) if b[k] > 0]
                    parts.append(f"{name} {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
                line += "   vs tokio: " + ", ".join(parts)
            print(line)
    if "client" in tools:
        for conns in [int(c) for c in args.conns.split(",")]:
            data[f"client/{conns}c"] = client_bench(conns)
            data[f"client-h2/{conns}c"] = client_bench(conns, http2=True)
    with open(os.path.join(TARGET, "http-summary.json"), "w") as f:
        json.dump(data, f, indent=1)


main()
