#!/usr/bin/env python3
"""Where a hyper hello server's CPU per request goes, by kind of work.

Runs `http_hello` (hyper's timer on, 2 workers) on each runtime under wrk
(-t1 at 50 connections, -t2 above), samples the server process with
`perf record -e cpu-clock` (2 kHz, no call graphs) and sorts every symbol
into one of these kinds, then divides the samples by the requests wrk made
while perf ran:

- `k:net`: the kernel's TCP/IP stack and what it calls (skb, loopback,
  softirq, socket locks and wake-ups, copies to and from user memory,
  slab): the same code whatever runtime drives the socket;
- `k:syscall`: system call entry and the socket layer above TCP
  (`sock_sendmsg`, `vfs_writev`, `__sys_recvfrom`, fd lookup, LSM hooks);
- `k:poll`: epoll or io_uring themselves (`ep_*`, `io_*`, task work);
- `k:sched`: sleeping, waking, switching, timers, interrupts;
- `k:other`: kernel symbols matched by none of the above;
- `u:hyper`: hyper, http, bytes, the allocator, memcpy, the clock (the
  same library code on every runtime);
- `u:runtime`: the rest of user space (the runtime, libc's syscall
  wrappers).

The split is by symbol name, so it is an estimate (a few symbols serve
more than one kind); it is meant to show what is common to every runtime
(k:net + u:hyper) and what a runtime can change. Needs perf and wrk.

    python3 benches/scripts/cpu_split.py [--runtimes tokio,weft-uring] [--conns 50,256] [--secs 5] [--rounds 2]
"""
import argparse, os, re, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
HZ = 2000

KERNEL = [
    ("k:net", r"tcp|^ip_|_ip_|skb|sk_|sock_def|net_rx|loopback|dev_queue|dev_hard|"
              r"process_backlog|bbr|inet|napi|netif|validate_xmit|softirq|__local_bh|"
              r"raw_spin_unlock_irqrestore|sock_rfree|sock_wfree|lock_sock|release_sock|"
              r"ipv4|nf_|neigh|eth_|csum|copy_to_iter|copy_from_iter|_copy_to_user|"
              r"_copy_from_user|simple_copy|__check_object|virt_addr_valid|check_heap|"
              r"kmem_cache|kmalloc|kfree|__alloc|page_frag|mod_timer|sk_reset|rcu_read|"
              r"ktime_get|read_tsc|refill|__build_skb|dst_|memcg|obj_cgroup|"
              r"_raw_spin_lock$|_raw_spin_unlock$|slab|put_page|queued_spin|__netdev|"
              r"raw_local_deliver|_raw_spin_lock_bh|_raw_spin_unlock_bh"),
    ("k:syscall", r"do_syscall|entry_|vfs_|sock_write_iter|sock_read_iter|sock_recvmsg|"
                  r"sock_sendmsg|__sys_|fdget|fput|__x64|syscall|sockfd_lookup|__fget|"
                  r"security_|apparmor|aa_|import_|rw_verify|fsnotify|iovec|readv_writev|"
                  r"do_writev|do_readv"),
    ("k:poll", r"ep_|epoll|io_uring|io_|__io_|tctx|task_work|poll"),
    ("k:sched", r"schedule|finish_task_switch|pick_next|enqueue|dequeue|update_curr|"
                r"try_to_wake|ttwu|futex|wake_up|select_task|sched|psi_|hrtimer|__wake|"
                r"idle|irq|apic|tick|ret_from|switch|native_|clear_bhb|update_load|set_next"),
]
HYPER = (r"hyper|http::|httparse|bytes::|h2::|memmove|memcpy|malloc|_int_free|free|"
         r"realloc|alloc::|core::fmt|itoa|memset|httpdate|std::time|SystemTime|vdso|"
         r"clock_gettime|service_fn|http_hello::")
KINDS = [k for k, _ in KERNEL] + ["k:other", "u:hyper", "u:runtime"]


def kind(sym, where):
    if where == "[k]":
        for name, pattern in KERNEL:
            if re.search(pattern, sym):
                return name
        return "k:other"
    return "u:hyper" if re.search(HYPER, sym) else "u:runtime"


def run(runtime, conns, secs):
    exe = os.path.join(TARGET, "release", "http_hello")
    threads = 1 if conns <= 50 else 2
    server = subprocess.Popen([exe, "--runtime", runtime, "--timer", "on"],
                              stdout=subprocess.PIPE, text=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        try:
            addr = server.stdout.readline().split()[1]
            wrk = lambda d: subprocess.run(
                ["wrk", f"-t{threads}", f"-c{conns}", f"-d{d}s", f"http://{addr}/"],
                capture_output=True, text=True, check=True).stdout
            wrk(1)
            perf = subprocess.Popen(
                ["perf", "record", "-e", "cpu-clock", "-F", str(HZ), "-p", str(server.pid),
                 "-o", data, "--", "sleep", str(secs)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out = wrk(secs)
            perf.wait()
        finally:
            server.kill()
            server.wait()
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        report = subprocess.run(
            ["perf", "report", "-i", data, "-n", "--no-children", "--sort", "sym", "-g", "none"],
            capture_output=True, text=True, check=True).stdout
    samples = dict.fromkeys(KINDS, 0)
    for line in report.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\[.\])\s+(.*)", line)
        if m:
            samples[kind(m.group(3).strip(), m.group(2))] += int(m.group(1))
    requests = rps * secs
    per_req = {k: v * 1e6 / HZ / requests for k, v in samples.items()}
    return rps, per_req


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtimes", default="tokio,weft-uring,weft-epoll")
    ap.add_argument("--conns", default="50,256")
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print("| conns | runtime | req/s | CPU µs/req | " + " | ".join(KINDS) + " | common (k:net + u:hyper) |")
    print("|---|---|---:|---:|" + "---:|" * len(KINDS) + "---:|")
    for conns in [int(c) for c in args.conns.split(",")]:
        for _ in range(args.rounds):
            for runtime in args.runtimes.split(","):
                rps, per = run(runtime, conns, args.secs)
                total = sum(per.values())
                cells = " | ".join(f"{per[k]:.2f}" for k in KINDS)
                common = per["k:net"] + per["u:hyper"]
                print(f"| {conns} | {runtime} | {rps:,.0f} | {total:.2f} | {cells} | {common:.2f} |",
                      flush=True)
                time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
