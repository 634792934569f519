//! `weft::sync`'s locks against tokio's, three ways in one run: weft::sync
//! on weft, tokio::sync on tokio, and tokio::sync on weft (which separates
//! the primitive from the runtime under it). Both runtimes have 2 workers.
//!
//! - `contended_mutex`: 8 tasks each take a `Mutex<u64>` and increment it
//!   `INCREMENTS` times.
//! - `semaphore`: 8 tasks each acquire and release a permit of a
//!   2-permit `Semaphore` `ACQUIRES` times.
//! - `notify_round_trip`: two tasks bounce `ROUND_TRIPS` notifications
//!   over two `Notify`s (`notify_one` → `notified().await`).
//!
//! One iteration spawns the tasks and waits (on the bench thread, through
//! a std channel, as the scheduler bench does) until all are done. After
//! criterion, a summary measures each workload's three flavours
//! interleaved (`SUMMARY_ROUNDS` rounds of one iteration each, this VM's
//! timings drift between runs) and prints the median times and the ratios
//! to tokio (`WEFT_BENCH_NO_SUMMARY=1` skips it). Run with
//! `cargo bench -p weft-benches --bench sync_locks [-- FILTER]`.

use std::{
    future::Future,
    pin::Pin,
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use criterion::{BenchmarkGroup, Criterion};

const WORKERS: usize = 2;
const TASKS: usize = 8;
const INCREMENTS: usize = 1_000;
const ACQUIRES: usize = 1_000;
const ROUND_TRIPS: usize = 1_000;
const SUMMARY_ROUNDS: usize = 31;

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The primitives of one `sync` implementation.
trait Flavor: 'static {
    type Mutex: Send + Sync + 'static;
    type Semaphore: Send + Sync + 'static;
    type Notify: Send + Sync + 'static;
    fn mutex() -> Self::Mutex;
    fn increment(m: &Self::Mutex) -> impl Future<Output = ()> + Send + '_;
    fn semaphore(permits: usize) -> Self::Semaphore;
    fn acquire_release(s: &Self::Semaphore) -> impl Future<Output = ()> + Send + '_;
    fn notify() -> Self::Notify;
    fn notify_one(n: &Self::Notify);
    fn notified(n: &Self::Notify) -> impl Future<Output = ()> + Send + '_;
}

struct WeftSync;

impl Flavor for WeftSync {
    type Mutex = weft::sync::Mutex<u64>;
    type Semaphore = weft::sync::Semaphore;
    type Notify = weft::sync::Notify;
    fn mutex() -> Self::Mutex {
        weft::sync::Mutex::new(0)
    }
    async fn increment(m: &Self::Mutex) {
        *m.lock().await.unwrap() += 1;
    }
    fn semaphore(permits: usize) -> Self::Semaphore {
        weft::sync::Semaphore::new(permits)
    }
    async fn acquire_release(s: &Self::Semaphore) {
        drop(s.acquire().await.unwrap());
    }
    fn notify() -> Self::Notify {
        weft::sync::Notify::new()
    }
    fn notify_one(n: &Self::Notify) {
        n.notify_one();
    }
    async fn notified(n: &Self::Notify) {
        n.notified().await.unwrap();
    }
}

struct TokioSync;

impl Flavor for TokioSync {
    type Mutex = tokio::sync::Mutex<u64>;
    type Semaphore = tokio::sync::Semaphore;
    type Notify = tokio::sync::Notify;
    fn mutex() -> Self::Mutex {
        tokio::sync::Mutex::new(0)
    }
    async fn increment(m: &Self::Mutex) {
        *m.lock().await += 1;
    }
    fn semaphore(permits: usize) -> Self::Semaphore {
        tokio::sync::Semaphore::new(permits)
    }
    async fn acquire_release(s: &Self::Semaphore) {
        drop(s.acquire().await.unwrap());
    }
    fn notify() -> Self::Notify {
        tokio::sync::Notify::new()
    }
    fn notify_one(n: &Self::Notify) {
        n.notify_one();
    }
    async fn notified(n: &Self::Notify) {
        n.notified().await;
    }
}

/// A runtime, seen as a way to spawn a task.
enum Rt {
    Weft(weft::Runtime),
    Tokio(tokio::runtime::Runtime),
}

impl Rt {
    fn weft() -> Rt {
        Rt::Weft(
            weft::runtime::Builder::new_multi_thread()
                .worker_threads(WORKERS)
                .build()
                .unwrap(),
        )
    }

    fn tokio() -> Rt {
        Rt::Tokio(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKERS)
                .enable_all()
                .build()
                .unwrap(),
        )
    }

    fn spawn(&self, f: BoxFut) {
        match self {
            Rt::Weft(rt) => drop(rt.spawn(f)),
            Rt::Tokio(rt) => drop(rt.spawn(f)),
        }
    }
}

/// One iteration of a workload: spawns its tasks on `rt`, returns when all
/// are done.
type Workload = fn(&Rt, &mpsc::Receiver<()>, &mpsc::SyncSender<()>);

fn contended_mutex<F: Flavor>(rt: &Rt, rx: &mpsc::Receiver<()>, tx: &mpsc::SyncSender<()>) {
    let m = Arc::new(F::mutex());
    for _ in 0..TASKS {
        let (m, tx) = (m.clone(), tx.clone());
        rt.spawn(Box::pin(async move {
            for _ in 0..INCREMENTS {
                F::increment(&m).await;
            }
            tx.send(()).unwrap();
        }));
    }
    for _ in 0..TASKS {
        rx.recv().unwrap();
    }
}

fn semaphore<F: Flavor>(rt: &Rt, rx: &mpsc::Receiver<()>, tx: &mpsc::SyncSender<()>) {
    let s = Arc::new(F::semaphore(2));
    for _ in 0..TASKS {
        let (s, tx) = (s.clone(), tx.clone());
        rt.spawn(Box::pin(async move {
            for _ in 0..ACQUIRES {
                F::acquire_release(&s).await;
            }
            tx.send(()).unwrap();
        }));
    }
    for _ in 0..TASKS {
        rx.recv().unwrap();
    }
}

fn notify_round_trip<F: Flavor>(rt: &Rt, rx: &mpsc::Receiver<()>, tx: &mpsc::SyncSender<()>) {
    let ping = Arc::new(F::notify());
    let pong = Arc::new(F::notify());
    {
        let (ping, pong, tx) = (ping.clone(), pong.clone(), tx.clone());
        rt.spawn(Box::pin(async move {
            for _ in 0..ROUND_TRIPS {
                F::notified(&ping).await;
                F::notify_one(&pong);
            }
            tx.send(()).unwrap();
        }));
    }
    let tx = tx.clone();
    rt.spawn(Box::pin(async move {
        for _ in 0..ROUND_TRIPS {
            F::notify_one(&ping);
            F::notified(&pong).await;
        }
        tx.send(()).unwrap();
    }));
    for _ in 0..2 {
        rx.recv().unwrap();
    }
}

/// One flavour of a workload: its name, its runtime's maker, an iteration.
type Flavour = (&'static str, fn() -> Rt, Workload);

/// The three flavours of one workload.
fn flavours(weft: Workload, tokio: Workload, tokio_on_weft: Workload) -> [Flavour; 3] {
    [
        ("weft", Rt::weft, weft),
        ("tokio", Rt::tokio, tokio),
        ("tokio_sync_on_weft", Rt::weft, tokio_on_weft),
    ]
}

fn workloads() -> [(&'static str, [Flavour; 3]); 3] {
    [
        (
            "contended_mutex",
            flavours(
                contended_mutex::<WeftSync>,
                contended_mutex::<TokioSync>,
                contended_mutex::<TokioSync>,
            ),
        ),
        (
            "semaphore",
            flavours(
                semaphore::<WeftSync>,
                semaphore::<TokioSync>,
                semaphore::<TokioSync>,
            ),
        ),
        (
            "notify_round_trip",
            flavours(
                notify_round_trip::<WeftSync>,
                notify_round_trip::<TokioSync>,
                notify_round_trip::<TokioSync>,
            ),
        ),
    ]
}

fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group
}

fn criterion_runs(c: &mut Criterion) {
    let (tx, rx) = mpsc::sync_channel(TASKS);
    for (name, mut fl) in workloads() {
        if weft_benches::swap_order() {
            fl.swap(0, 1);
        }
        let mut group = group(c, name);
        for (fname, make, work) in fl {
            let rt = make();
            group.bench_function(fname, |b| b.iter(|| work(&rt, &rx, &tx)));
            drop(rt);
        }
        group.finish();
    }
}

/// Interleaved rounds of one iteration per flavour (runtimes built once),
/// medians, and the ratios to tokio.
fn summary(filter: Option<&str>) {
    let (tx, rx) = mpsc::sync_channel(TASKS);
    println!("\nsync_locks summary ({SUMMARY_ROUNDS} interleaved rounds, median per iteration):");
    for (name, fl) in workloads() {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let rts: Vec<Rt> = fl.iter().map(|(_, make, _)| make()).collect();
        let mut times: [Vec<Duration>; 3] = Default::default();
        for (i, (_, _, work)) in fl.iter().enumerate() {
            work(&rts[i], &rx, &tx); // warm-up
        }
        for _ in 0..SUMMARY_ROUNDS {
            for (i, (_, _, work)) in fl.iter().enumerate() {
                let start = Instant::now();
                work(&rts[i], &rx, &tx);
                times[i].push(start.elapsed());
            }
        }
        let medians: Vec<Duration> = times
            .iter_mut()
            .map(|t| {
                t.sort();
                t[t.len() / 2]
            })
            .collect();
        let tokio = medians[1].as_secs_f64();
        println!(
            "  {name:<18} weft {:>9.1?}  tokio {:>9.1?}  tokio_sync_on_weft {:>9.1?}  \
             weft/tokio {:.2}  tokio_sync_on_weft/tokio {:.2}",
            medians[0],
            medians[1],
            medians[2],
            medians[0].as_secs_f64() / tokio,
            medians[2].as_secs_f64() / tokio,
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test_mode = args.iter().any(|a| a == "--test" || a == "--list");
    // The criterion filter (the first argument that is not a flag) also
    // narrows the summary.
    let filter = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(String::as_str);
    let mut c = Criterion::default().configure_from_args();
    criterion_runs(&mut c);
    c.final_summary();
    if !test_mode && std::env::var_os("WEFT_BENCH_NO_SUMMARY").is_none() {
        summary(filter);
    }
}
