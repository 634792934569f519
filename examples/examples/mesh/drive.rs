//! Drives the mesh: open-loop load carrying deadlines, a fault schedule,
//! a live table every second and a summary.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use weft::{cancel::wire::Encoder, time};

use super::{
    ms, state,
    wire::{Client, Request, Status},
    Mesh,
};

/// Offered load and the deadline each request carries.
pub const RATE_PER_SEC: u64 = 400;
pub const DEADLINE: Duration = Duration::from_millis(150);

/// The fault schedule: (start second, what happens).
const PHASES: [(u64, &str); 6] = [
    (0, "healthy"),
    (3, "latency spikes: 25% of leaf calls +40 ms"),
    (5, "errors: 20% of leaf calls fail"),
    (7, "the leaf dies"),
    (10, "the leaf comes back"),
    (13, "end"),
];

#[derive(Default)]
struct Outcomes {
    ok: AtomicU64,
    degraded: AtomicU64,
    error: AtomicU64,
    deadline: AtomicU64,
    unavailable: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
    all_latencies_us: Mutex<Vec<u32>>,
}

impl Outcomes {
    fn record(&self, status: Option<Status>, took: Duration) {
        let counter = match status {
            Some(Status::Ok) => &self.ok,
            Some(Status::Degraded) => &self.degraded,
            Some(Status::Error) => &self.error,
            Some(Status::Unavailable) => &self.unavailable,
            Some(Status::DeadlineExceeded) | None => &self.deadline,
        };
        counter.fetch_add(1, Relaxed);
        if matches!(status, Some(Status::Ok | Status::Degraded)) {
            let us = took.as_micros().min(u128::from(u32::MAX)) as u32;
            self.latencies_us.lock().unwrap().push(us);
        }
    }

    fn total(&self) -> u64 {
        self.ok.load(Relaxed)
            + self.degraded.load(Relaxed)
            + self.error.load(Relaxed)
            + self.deadline.load(Relaxed)
            + self.unavailable.load(Relaxed)
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[i]) / 1e3
}

/// Cumulative numbers read once a second; the table prints differences.
#[derive(Clone, Copy, Default)]
struct Snapshot {
    done: u64,
    ok: u64,
    degraded: u64,
    error: u64,
    deadline: u64,
    retries: u64,
    retry_budget_stops: u64,
    hedges: u64,
    hedge_wins: u64,
    losers_cancelled: u64,
    leaf_served: u64,
    leaf_deadline: u64,
    leaf_killed: u64,
    hop_deadlines: u64,
    interrupted: u64,
    shed: u64,
}

fn snapshot(mesh: &Mesh, out: &Outcomes) -> Snapshot {
    let retry = mesh
        .edge
        .pipeline
        .retry()
        .map(|r| r.metrics())
        .unwrap_or_default();
    let hedge = mesh
        .middle
        .pipeline
        .hedge()
        .map(|h| h.metrics())
        .unwrap_or_default();
    Snapshot {
        done: out.total(),
        ok: out.ok.load(Relaxed),
        degraded: out.degraded.load(Relaxed),
        error: out.error.load(Relaxed) + out.unavailable.load(Relaxed),
        deadline: out.deadline.load(Relaxed),
        retries: retry.retries,
        retry_budget_stops: retry.budget_stops,
        hedges: hedge.hedges,
        hedge_wins: hedge.hedge_wins,
        losers_cancelled: hedge.cancelled,
        leaf_served: mesh.leaf.served.load(Relaxed),
        leaf_deadline: mesh.leaf.deadlines.load(Relaxed),
        leaf_killed: mesh.leaf.killed.load(Relaxed),
        hop_deadlines: mesh.edge.deadlines.load(Relaxed) + mesh.middle.deadlines.load(Relaxed),
        interrupted: mesh.edge.pipeline.metrics().interrupted
            + mesh.middle.pipeline.metrics().interrupted,
        shed: mesh.middle.pipeline.limit().metrics().shed,
    }
}

fn header() {
    println!(
        "   {:>3} {:<13}| {:>5} {:>5} {:>5} {:>4} {:>4} | {:>5} {:>6} | {:>5} {:>6} {:>6} | {:>5} {:>4} {:>5} {:>6} {:>5} {:>4} | {:>5} {:>4} {:>4} | {:>4} {:>4} {:>4} | {:>5} {:>6} {:>3}",
        "t", "phase", "req/s", "ok", "degr", "err", "ddl", "p50", "p99",
        "retry", "budget", "e-brk", "hedge", "won", "lost", "m-brk", "limit", "shed", "leaf", "ddl", "kill",
        "ddl", "gone", "lost", "tasks", "polls", "io"
    );
    println!(
        "   {:>3} {:<13}| {:^28} | {:^12} | {:^20} | {:^36} | {:^16} | {:^14} | {:^17}",
        "s",
        "",
        "client outcomes (per s)",
        "latency ms",
        "edge → middle",
        "middle → leaf",
        "leaf",
        "cancel, cause",
        "runtime"
    );
}

/// Runs the fault schedule under load and prints the table and a summary.
pub async fn showcase(mesh: Arc<Mesh>) {
    let client = Arc::new(Client::new(mesh.edge_addr));
    let out = Arc::new(Outcomes::default());
    let start = Instant::now();
    let end = Duration::from_secs(PHASES[PHASES.len() - 1].0);
    let handle = weft::runtime::Handle::current();
    println!(
        "10. a service mesh on loopback: load → edge → middle → leaf, {RATE_PER_SEC} req/s, each with a {} ms deadline sent as grpc-timeout",
        DEADLINE.as_millis()
    );
    println!(
        "    edge→middle: retry ×3 (10% budget) + breaker; middle→leaf: hedge at p95 (10% budget) + breaker + adaptive limit + bulkhead + fallback \"degraded\"\n"
    );
    header();

    // The load: one request task every 1/RATE s (open loop: a slow mesh
    // does not slow the offered load down).
    let load = {
        let (client, out) = (client.clone(), out.clone());
        weft::spawn(async move {
            let mut tick = time::interval(Duration::from_millis(5));
            let per_tick = RATE_PER_SEC / 200;
            let mut id = 0u64;
            while start.elapsed() < end {
                if tick.tick().await.is_err() {
                    break; // the load task was cancelled
                }
                for _ in 0..per_tick {
                    id += 1;
                    let (client, out) = (client.clone(), out.clone());
                    weft::spawn(async move {
                        let sent = Instant::now();
                        let req = Request {
                            id,
                            timeout: Encoder::new(super::MARGIN)
                                .encode_remaining(DEADLINE)
                                .expect("a deadline above the margin"),
                            key: (id % 10_000) as u32,
                        };
                        let status = match time::timeout(DEADLINE, client.call(&req)).await {
                            Ok(Ok(resp)) => Some(resp.status),
                            Ok(Err(_)) => Some(Status::Unavailable),
                            Err(_) => None,
                        };
                        out.record(status, sent.elapsed());
                    });
                }
            }
            id
        })
    };

    let mut phase = 0;
    let mut last = snapshot(&mesh, &out);
    let mut second = time::interval(Duration::from_secs(1));
    second.tick().await.expect("the driver is not cancelled");
    for t in 1..=end.as_secs() {
        second.tick().await.expect("the driver is not cancelled");
        let now = snapshot(&mesh, &out);
        let mut lat = std::mem::take(&mut *out.latencies_us.lock().unwrap());
        lat.sort_unstable();
        out.all_latencies_us.lock().unwrap().extend_from_slice(&lat);
        let rt = handle.metrics();
        let polls: u64 = rt.worker.iter().map(|w| w.polls).sum();
        let b = mesh.edge.budget.metrics();
        println!(
            "   {:>3} {:<13}| {:>5} {:>5} {:>5} {:>4} {:>4} | {:>5.1} {:>6.1} | {:>5} {:>6} {:>6} | {:>5} {:>4} {:>5} {:>6} {:>5} {:>4} | {:>5} {:>4} {:>4} | {:>4} {:>4} {:>4} | {:>5} {:>5}k {:>3}",
            t,
            PHASES[phase].1.split(':').next().unwrap_or(""),
            now.done - last.done,
            now.ok - last.ok,
            now.degraded - last.degraded,
            now.error - last.error,
            now.deadline - last.deadline,
            percentile(&lat, 50.0),
            percentile(&lat, 99.0),
            now.retries - last.retries,
            format!("{}/{}", b.retries, b.retries + b.available),
            state(mesh.edge.pipeline.breaker().expect("edge has a breaker")),
            now.hedges - last.hedges,
            now.hedge_wins - last.hedge_wins,
            now.losers_cancelled - last.losers_cancelled,
            state(mesh.middle.pipeline.breaker().expect("middle has a breaker")),
            mesh.middle.pipeline.limit().limit(),
            now.shed - last.shed,
            now.leaf_served - last.leaf_served,
            now.leaf_deadline - last.leaf_deadline,
            now.leaf_killed - last.leaf_killed,
            (now.deadline - last.deadline) + (now.hop_deadlines - last.hop_deadlines),
            now.interrupted - last.interrupted,
            now.losers_cancelled - last.losers_cancelled,
            rt.alive_tasks,
            polls / 1000,
            rt.io_ops_in_flight,
        );
        last = now;
        // The fault schedule: phases start on the second.
        while phase + 1 < PHASES.len() && PHASES[phase + 1].0 <= t {
            phase += 1;
            apply(&mesh, phase).await;
        }
    }
    let offered = load.await.expect("the load task finishes");
    // Let the last requests finish (each is bounded by its deadline).
    time::sleep(DEADLINE + Duration::from_millis(50))
        .await
        .expect("not cancelled");
    summary(&mesh, &out, offered, start.elapsed());
}

async fn apply(mesh: &Mesh, phase: usize) {
    let leaf = &mesh.leaf;
    match phase {
        1 => leaf.spikes.set_enabled(true),
        2 => {
            leaf.spikes.set_enabled(false);
            leaf.faults.set_enabled(true);
        }
        3 => {
            leaf.faults.set_enabled(false);
            leaf.kill().await;
        }
        4 => {
            if let Err(e) = leaf.start().await {
                println!("   (the leaf could not come back: {e})");
            }
        }
        _ => {}
    }
    println!("   ---- {}", PHASES[phase].1);
}

fn summary(mesh: &Mesh, out: &Outcomes, offered: u64, took: Duration) {
    let mut lat = std::mem::take(&mut *out.all_latencies_us.lock().unwrap());
    lat.sort_unstable();
    let s = snapshot(mesh, out);
    let retry = mesh
        .edge
        .pipeline
        .retry()
        .map(|r| r.metrics())
        .unwrap_or_default();
    let hedge = mesh
        .middle
        .pipeline
        .hedge()
        .map(|h| h.metrics())
        .unwrap_or_default();
    let middle = mesh.middle.pipeline.metrics();
    let fallback = mesh.middle.pipeline.fallback().metrics();
    println!("\n   summary after {:.1} s:", took.as_secs_f64());
    println!(
        "   requests: {offered} offered, {} answered ok, {} degraded (fallback), {} failed, {} past their deadline; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        s.ok,
        s.degraded,
        s.error,
        s.deadline,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().map_or(f64::NAN, |m| f64::from(*m) / 1e3),
    );
    println!(
        "   edge → middle: {} calls, {} retries, {} stopped by the budget, {} by the deadline",
        retry.calls, retry.retries, retry.budget_stops, retry.deadline_stops
    );
    println!(
        "   middle → leaf: {} calls, {} hedges ({} won), {} losers cancelled, {} refused by the breaker, {} fallbacks",
        hedge.calls,
        hedge.hedges,
        hedge.hedge_wins,
        hedge.cancelled,
        middle.refused_by(weft_resilience::policy::Layer::Breaker),
        fallback.used
    );
    println!(
        "   leaf: {} requests served ({:.2}× the offered load), {} injected errors, {} spikes, {} cut at their deadline, {} cut by its death",
        s.leaf_served,
        s.leaf_served as f64 / offered.max(1) as f64,
        mesh.leaf.failed.load(Relaxed),
        mesh.leaf.spikes.metrics().injected,
        s.leaf_deadline,
        s.leaf_killed
    );
    let limit = mesh.middle.pipeline.limit().metrics();
    println!(
        "   middle → leaf limits: adaptive limit {} now ({} in flight, {} calls shed), bulkhead {} rejected",
        limit.limit,
        limit.in_flight,
        limit.shed,
        mesh.middle.pipeline.bulkhead().metrics().rejected
    );
    println!(
        "   breakers now: edge→middle {}, middle→leaf {}",
        state(mesh.edge.pipeline.breaker().expect("edge has a breaker")),
        state(
            mesh.middle
                .pipeline
                .breaker()
                .expect("middle has a breaker")
        )
    );
    let _ = ms(Duration::ZERO);
}
