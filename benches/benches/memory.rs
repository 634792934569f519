//! Memory per idle task: the resident set grown by 1,000,000 spawned tasks
//! that have each been polled once and are pending, divided by 1,000,000.
//!
//! Run with `cargo bench -p weft-benches --bench memory`. Without
//! `WEFT_MEMORY_CASE` this process is the driver: it runs itself once per
//! case (each case in a fresh process, so no runtime reuses memory another
//! one freed), `RUNS` times, and prints the median of each case as a table.
//! With `WEFT_MEMORY_CASE=<runtime>/<primitive>` it measures that one case
//! and prints `bytes_per_task future_bytes` on stdout.
//!
//! Cases:
//! - `weft/oneshot`, `tokio/oneshot`: the fair comparison. Each task awaits
//!   its own `futures_channel::oneshot::Receiver`; the senders are kept
//!   alive. The channels are created before the baseline is read, so the
//!   figure is what the runtime adds per task (task cell, the future's
//!   state, queue and registry entries, the registered waker), not the
//!   channel.
//! - `tokio/notify`: tokio's tasks pending on one shared
//!   `tokio::sync::Notify` (the usual way to park many tasks on tokio), for
//!   reference; weft has no `Notify` yet.

use std::{
    env,
    future::Future,
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    thread,
    time::Duration,
};

use futures_channel::oneshot;

/// Idle tasks spawned per case.
const TASKS: usize = 1_000_000;
/// Fresh processes per case; the table shows the median.
const RUNS: usize = 3;
/// Worker threads of both runtimes, as in the scheduler benches.
const NUM_WORKERS: usize = 2;
/// Names the case a child process measures.
const CASE_VAR: &str = "WEFT_MEMORY_CASE";
const CASES: [&str; 3] = ["weft/oneshot", "tokio/oneshot", "tokio/notify"];

fn main() {
    match env::var(CASE_VAR) {
        Ok(case) => measure(&case),
        Err(_) => drive(),
    }
}

/// Runs every case `RUNS` times, each in a fresh process, and prints the
/// medians.
fn drive() {
    let exe = env::current_exe().expect("path of the memory bench binary");
    println!(
        "memory per idle task: {TASKS} tasks, {NUM_WORKERS} workers, median of {RUNS} processes"
    );
    println!();
    println!("| runtime / waiting primitive | bytes per idle task | future size (bytes) | runs |");
    println!("|---|---|---|---|");
    for case in CASES {
        let mut runs: Vec<(f64, usize)> = (0..RUNS)
            .map(|_| {
                let out = Command::new(&exe)
                    .env(CASE_VAR, case)
                    .output()
                    .expect("run the memory bench as a child process");
                assert!(
                    out.status.success(),
                    "case {case} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
                let mut fields = stdout.split_whitespace();
                let bytes = fields
                    .next()
                    .and_then(|f| f.parse().ok())
                    .expect("bytes per task");
                let future = fields
                    .next()
                    .and_then(|f| f.parse().ok())
                    .expect("future size");
                (bytes, future)
            })
            .collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let all: Vec<String> = runs
            .iter()
            .map(|(bytes, _)| format!("{bytes:.0}"))
            .collect();
        let (median, future) = runs[RUNS / 2];
        println!("| {case} | {median:.0} | {future} | {} |", all.join(", "));
    }
}

/// Measures one case in this process and prints `bytes_per_task
/// future_bytes`.
fn measure(case: &str) {
    let (bytes, future) = match case {
        "weft/oneshot" => on_oneshot(
            &weft::runtime::Builder::new_multi_thread()
                .worker_threads(NUM_WORKERS)
                .build()
                .unwrap(),
        ),
        "tokio/oneshot" => on_oneshot(&tokio_runtime()),
        "tokio/notify" => {
            let rt = tokio_runtime();
            let notify = Arc::new(tokio::sync::Notify::new());
            idle_tasks(&rt, |polled| {
                let notify = notify.clone();
                async move {
                    let notified = notify.notified();
                    polled.fetch_add(1, Relaxed);
                    notified.await;
                }
            })
        }
        other => panic!("unknown {CASE_VAR} {other:?}; expected one of {CASES:?}"),
    };
    println!("{bytes} {future}");
    // The runtimes and their million tasks are torn down by the OS: nothing
    // after this line is measured, and dropping them would take longer than
    // the measurement.
    std::process::exit(0);
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(NUM_WORKERS)
        .enable_all()
        .build()
        .unwrap()
}

/// A runtime that can spawn a task and forget its join handle.
trait Spawn {
    fn spawn_detached<F: Future<Output = ()> + Send + 'static>(&self, future: F);
}

impl Spawn for weft::Runtime {
    fn spawn_detached<F: Future<Output = ()> + Send + 'static>(&self, future: F) {
        drop(self.spawn(future));
    }
}

impl Spawn for tokio::runtime::Runtime {
    fn spawn_detached<F: Future<Output = ()> + Send + 'static>(&self, future: F) {
        drop(self.spawn(future));
    }
}

/// Tasks each awaiting their own oneshot receiver. The channels are created,
/// and the senders kept, before the baseline is read.
fn on_oneshot(rt: &impl Spawn) -> (f64, usize) {
    let (senders, receivers): (Vec<oneshot::Sender<()>>, Vec<_>) =
        (0..TASKS).map(|_| oneshot::channel()).unzip();
    let mut receivers = receivers.into_iter();
    let measured = idle_tasks(rt, |polled| {
        let rx = receivers.next().expect("one receiver per task");
        async move {
            polled.fetch_add(1, Relaxed);
            let _ = rx.await;
        }
    });
    drop(senders);
    measured
}

/// Spawns `TASKS` tasks made by `make`, waits until every one has been
/// polled once (each bumps `polled` before it first returns `Pending`), and
/// returns the resident set growth per task and the size of one task's
/// future.
fn idle_tasks<Fut>(rt: &impl Spawn, mut make: impl FnMut(Arc<AtomicUsize>) -> Fut) -> (f64, usize)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let polled = Arc::new(AtomicUsize::new(0));
    let mut future_bytes = 0;
    settle();
    let before = resident_bytes();
    for _ in 0..TASKS {
        let future = make(polled.clone());
        future_bytes = std::mem::size_of_val(&future);
        rt.spawn_detached(future);
    }
    while polled.load(Relaxed) < TASKS {
        thread::sleep(Duration::from_millis(5));
    }
    settle();
    let after = resident_bytes();
    (
        after.saturating_sub(before) as f64 / TASKS as f64,
        future_bytes,
    )
}

/// Lets the workers finish what they are doing and park.
fn settle() {
    thread::sleep(Duration::from_millis(100));
}

/// This process's resident set, from the second field of /proc/self/statm.
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("resident pages in /proc/self/statm");
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always supported.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * usize::try_from(page).expect("positive page size")
}
