//! A small service mesh on loopback, shared by the `showcase` and
//! `deadline_chain` examples: edge → middle → leaf, each a weft TCP server
//! speaking the framed protocol of `wire.rs`, each hop under the deadline
//! its caller sent (`grpc-timeout`, `weft::cancel::wire`), each call to the
//! next hop through a `weft_resilience` pipeline.
//!
//! * **edge → middle**: retry (3 attempts, full-jitter backoff, a 10 %
//!   retry budget), a breaker.
//! * **middle → leaf**: hedging after the leaf's p95 latency (budgeted),
//!   a breaker, an adaptive concurrency limit (Gradient2) that sheds at
//!   once, a bulkhead of 64, and a fallback answering "degraded" when the
//!   leaf is unreachable or a layer refuses.
//! * **leaf**: base work of 1–2 ms, plus chaos the driver switches on and
//!   off: latency spikes, injected errors, and death (its server task is
//!   cancelled, which cancels every connection task under it, and the port
//!   closes) and resurrection (a new server on the same port).

#![allow(dead_code, unreachable_pub)]

pub mod drive;
pub mod wire;

use std::{
    future::{ready, Future, Ready},
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use weft::{
    cancel::{
        self,
        wire::{parse_timeout, Encoder},
    },
    net::TcpListener,
    time, JoinHandle,
};
use weft_resilience::{
    breaker::{Breaker, Config, State},
    chaos::{ChaosConfig, FaultChaos, LatencyChaos},
    env::WeftEnv,
    fallback::Fallback,
    hedge::{Hedge, HedgeConfig, HedgeDelay},
    limit::{Adaptive, Bulkhead, Gradient2},
    policy::{OnCallErrors, Pipeline, PolicyError, Unlimited},
    retry::{Backoff, Jitter, Retry, RetryBudget, RetryConfig},
};

use self::wire::{Client, Conn, Request, Response, Status};

/// Why a call to the next hop failed.
#[derive(Debug)]
pub enum MeshError {
    Io(io::Error),
    /// The next hop answered with an error; its trace.
    Status(Status, String),
}

impl std::fmt::Display for MeshError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MeshError::Io(e) => write!(f, "{e}"),
            MeshError::Status(s, _) => write!(f, "{s:?}"),
        }
    }
}

type Picks = fn(&PolicyError<MeshError>) -> bool;
type Degrade = fn(PolicyError<MeshError>) -> Ready<Result<Response, PolicyError<MeshError>>>;

/// edge → middle.
pub type EdgePipeline = Pipeline<WeftEnv, Unlimited, Unlimited, Unlimited>;
/// middle → leaf.
pub type MiddlePipeline = Pipeline<
    WeftEnv,
    Adaptive,
    Bulkhead,
    Unlimited,
    weft_resilience::breaker::ErrorsFail,
    OnCallErrors,
    Fallback<Picks, Degrade>,
>;

/// A record of one hop, for the trace: `name` received `budget`, forwarded
/// the budgets in `forwarded` (one per attempt) and answered after `total`.
fn hop_record(
    name: &str,
    budget: Duration,
    forwarded: &[(Duration, Duration)],
    total: Duration,
) -> String {
    let sent: Vec<String> = forwarded
        .iter()
        .map(|(at, b)| format!("@{:.1}ms:{:.1}ms", ms(*at), ms(*b)))
        .collect();
    format!(
        "{name} got {:.1}ms, answered after {:.1}ms, sent [{}]",
        ms(budget),
        ms(total),
        sent.join(" ")
    )
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Every hop forwards its remaining budget minus this margin (Envoy's
/// timeout-header offset), so a hop gives up just before its caller does
/// and its "deadline exceeded" answer, with its trace, still arrives.
pub const MARGIN: Duration = Duration::from_millis(3);

/// Serves `handler` on `listener`: one task per connection, one request at
/// a time per connection, each under the deadline its caller sent.
pub fn serve<H, Fut>(
    name: &'static str,
    listener: TcpListener,
    handler: H,
    deadlines: Arc<AtomicU64>,
) -> JoinHandle<()>
where
    H: Fn(Request, Duration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let handler = Arc::new(handler);
    weft::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return; // cancelled (the server is going down) or failing
            };
            let _ = stream.set_nodelay(true);
            let (handler, deadlines) = (handler.clone(), deadlines.clone());
            // A child of the server task: cancelling the server ends it.
            weft::spawn(async move {
                let mut conn = Conn::new(stream);
                while let Ok(Some(payload)) = conn.next().await {
                    let Ok(req) = Request::decode(&payload) else {
                        return;
                    };
                    let budget = parse_timeout(&req.timeout).unwrap_or(Duration::from_secs(1));
                    let (id, start) = (req.id, Instant::now());
                    let resp = match time::timeout(budget, handler(req, budget)).await {
                        Ok(resp) => resp,
                        Err(_) => {
                            deadlines.fetch_add(1, Relaxed);
                            Response {
                                id,
                                status: Status::DeadlineExceeded,
                                body: String::new(),
                                trace: format!(
                                    "{name} got {:.1}ms, its deadline passed after {:.1}ms (work cancelled)",
                                    ms(budget),
                                    ms(start.elapsed())
                                ),
                            }
                        }
                    };
                    if conn.send(resp.encode()).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

/// The leaf's chaos switches and counters.
pub struct Leaf {
    pub addr: SocketAddr,
    pub spikes: LatencyChaos,
    pub faults: FaultChaos<fn() -> ()>,
    pub served: AtomicU64,
    pub failed: AtomicU64,
    /// Requests whose deadline passed in the leaf.
    pub deadlines: Arc<AtomicU64>,
    /// Requests cut because the leaf was killed under them.
    pub killed: AtomicU64,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Leaf {
    async fn handle(self: Arc<Self>, req: Request, budget: Duration) -> Response {
        let start = Instant::now();
        self.served.fetch_add(1, Relaxed);
        let work = self
            .spikes
            .call(&WeftEnv::new(), || {
                time::sleep(Duration::from_micros(1000 + u64::from(req.key % 1000)))
            })
            .await;
        let status = match work {
            Ok(Ok(())) => match self.faults.call(|| async { Ok::<_, ()>(()) }).await {
                Ok(()) => Status::Ok,
                Err(()) => {
                    self.failed.fetch_add(1, Relaxed);
                    Status::Error
                }
            },
            // Our own server was cancelled under us (the leaf "dies").
            _ => {
                self.killed.fetch_add(1, Relaxed);
                Status::Unavailable
            }
        };
        Response {
            id: req.id,
            status,
            body: format!("value-{}", req.key),
            trace: hop_record("leaf", budget, &[], start.elapsed()),
        }
    }

    /// Starts (or restarts) the leaf's server on its address.
    pub async fn start(self: &Arc<Self>) -> io::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        let leaf = self.clone();
        let server = serve(
            "leaf",
            listener,
            move |req, budget| leaf.clone().handle(req, budget),
            self.deadlines.clone(),
        );
        *self.server.lock().unwrap() = Some(server);
        Ok(())
    }

    /// Kills the leaf: cancels its server task, so every connection task
    /// under it is cancelled through the tree and its sockets close.
    pub async fn kill(&self) {
        let server = self.server.lock().unwrap().take();
        if let Some(server) = server {
            server.cancel_with("the leaf dies");
            let _ = cancel::shield(Duration::from_secs(1), server).await;
        }
    }

    pub fn is_up(&self) -> bool {
        self.server.lock().unwrap().is_some()
    }
}

/// The middle hop: calls the leaf through a hedging pipeline.
pub struct Middle {
    pub pipeline: MiddlePipeline,
    pub leaf: Client,
    pub deadlines: Arc<AtomicU64>,
    pub budget: Arc<RetryBudget>,
}

/// The edge hop: calls the middle through a retrying pipeline.
pub struct Edge {
    pub pipeline: EdgePipeline,
    pub middle: Client,
    pub deadlines: Arc<AtomicU64>,
    pub budget: Arc<RetryBudget>,
}

/// Sends `req` onward with the caller's remaining budget; the attempts'
/// (offset, budget) pairs are pushed to `sent`.
async fn forward(
    client: &Client,
    id: u64,
    key: u32,
    start: Instant,
    sent: &Mutex<Vec<(Duration, Duration)>>,
) -> Result<Response, MeshError> {
    let left = cancel::remaining().unwrap_or(Duration::from_secs(1));
    let timeout = Encoder::new(MARGIN)
        .encode_remaining(left)
        .map_err(|_| MeshError::Status(Status::DeadlineExceeded, String::new()))?;
    sent.lock()
        .unwrap()
        .push((start.elapsed(), left.saturating_sub(MARGIN)));
    let resp = client
        .call(&Request { id, timeout, key })
        .await
        .map_err(MeshError::Io)?;
    match resp.status {
        Status::Ok | Status::Degraded => Ok(resp),
        other => Err(MeshError::Status(other, resp.trace)),
    }
}

/// A hop's answer from its pipeline's outcome.
fn answer(
    name: &str,
    id: u64,
    budget: Duration,
    start: Instant,
    sent: &Mutex<Vec<(Duration, Duration)>>,
    out: Result<Response, PolicyError<MeshError>>,
) -> Response {
    let record = hop_record(name, budget, &sent.lock().unwrap(), start.elapsed());
    match out {
        Ok(resp) => Response {
            id,
            status: resp.status,
            body: resp.body,
            trace: if resp.trace.is_empty() {
                record
            } else {
                format!("{record};{}", resp.trace)
            },
        },
        Err(e) => Response {
            id,
            trace: match &e {
                PolicyError::Call(MeshError::Status(_, trace)) if !trace.is_empty() => {
                    format!("{record};{trace}")
                }
                _ => record,
            },
            status: match e {
                PolicyError::Call(MeshError::Status(s, _)) => s,
                PolicyError::Interrupted(_) => Status::DeadlineExceeded,
                PolicyError::Refused {
                    reason: weft_resilience::policy::Reason::DeadlineTooClose { .. },
                    ..
                } => Status::DeadlineExceeded,
                _ => Status::Unavailable,
            },
            body: format!("{e}"),
        },
    }
}

impl Middle {
    async fn handle(self: Arc<Self>, req: Request, budget: Duration) -> Response {
        let start = Instant::now();
        let sent = Mutex::new(Vec::new());
        let out = self
            .pipeline
            .call(|_| forward(&self.leaf, req.id, req.key, start, &sent))
            .await;
        answer("middle", req.id, budget, start, &sent, out)
    }
}

impl Edge {
    async fn handle(self: Arc<Self>, req: Request, budget: Duration) -> Response {
        let start = Instant::now();
        let sent = Mutex::new(Vec::new());
        let out = self
            .pipeline
            .call(|_| forward(&self.middle, req.id, req.key, start, &sent))
            .await;
        answer("edge", req.id, budget, start, &sent, out)
    }
}

fn breaker(name: &str) -> Arc<Breaker> {
    Arc::new(Breaker::new(
        name,
        Config::builder()
            .count_window(40)
            .minimum_calls(20)
            .failure_rate_threshold(50.0)
            .no_slow_calls()
            .open_backoff(weft_resilience::breaker::Backoff::fixed(
                Duration::from_millis(800),
            ))
            .half_open_permits(3)
            .half_open_successes(3)
            .build()
            .expect("a valid breaker config"),
    ))
}

fn budget() -> Arc<RetryBudget> {
    Arc::new(
        RetryBudget::builder()
            .ratio(0.1)
            .floor_per_sec(5)
            .window(Duration::from_secs(2), 10)
            .build()
            .expect("a valid budget"),
    )
}

fn unreachable_leaf(e: &PolicyError<MeshError>) -> bool {
    matches!(
        e,
        PolicyError::Refused { .. }
            | PolicyError::Call(MeshError::Io(_))
            | PolicyError::Call(MeshError::Status(Status::Unavailable, _))
    )
}

fn degraded(_: PolicyError<MeshError>) -> Ready<Result<Response, PolicyError<MeshError>>> {
    ready(Ok(Response {
        id: 0,
        status: Status::Degraded,
        body: "stale".into(),
        trace: "fallback: leaf unreachable".into(),
    }))
}

/// The three hops, running.
pub struct Mesh {
    pub edge_addr: SocketAddr,
    pub edge: Arc<Edge>,
    pub middle: Arc<Middle>,
    pub leaf: Arc<Leaf>,
}

impl Mesh {
    /// Starts leaf, middle and edge on loopback.
    pub async fn start() -> io::Result<Mesh> {
        // The leaf's port is taken from a listener we keep, then reused on
        // every restart.
        let probe = TcpListener::bind("127.0.0.1:0").await?;
        let leaf_addr = probe.local_addr()?;
        drop(probe);
        let leaf = Arc::new(Leaf {
            addr: leaf_addr,
            spikes: LatencyChaos::new(
                ChaosConfig::rate(0.25)
                    .expect("a valid rate")
                    .disabled()
                    .seed(1),
                Duration::from_millis(40),
            ),
            faults: FaultChaos::new(
                ChaosConfig::rate(0.2)
                    .expect("a valid rate")
                    .disabled()
                    .seed(2),
                (|| ()) as fn(),
            ),
            served: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            deadlines: Arc::new(AtomicU64::new(0)),
            killed: AtomicU64::new(0),
            server: Mutex::new(None),
        });
        leaf.start().await?;

        let middle_budget = budget();
        let middle = Arc::new(Middle {
            pipeline: Pipeline::new("leaf", WeftEnv::new())
                .with_timeout(Duration::from_secs(1))
                .with_hedge(Hedge::with_predicate(
                    HedgeConfig::builder()
                        .max_attempts(2)
                        .delay(HedgeDelay::Percentile {
                            percentile: 95.0,
                            min_samples: 50,
                            otherwise: Duration::from_millis(20),
                        })
                        .budget(middle_budget.clone())
                        .expected_attempt(Duration::from_millis(2))
                        .build()
                        .expect("a valid hedge config"),
                    OnCallErrors,
                ))
                .with_breaker(breaker("leaf"))
                .with_limit(
                    Adaptive::builder()
                        // A floor of 40 and a tolerance of 2× the long
                        // average: this VM's scheduling noise is not load.
                        .algorithm(Gradient2::default().limits(40, 100, 400).rtt_tolerance(2.0))
                        .name("leaf")
                        .build()
                        .expect("a valid adaptive limit"),
                )
                .with_bulkhead(
                    Bulkhead::builder()
                        .max_concurrent(64)
                        .name("leaf")
                        .build()
                        .expect("a valid bulkhead"),
                )
                .with_fallback(Fallback::new(
                    unreachable_leaf as Picks,
                    degraded as Degrade,
                )),
            leaf: Client::new(leaf_addr),
            deadlines: Arc::new(AtomicU64::new(0)),
            budget: middle_budget,
        });
        let middle_listener = TcpListener::bind("127.0.0.1:0").await?;
        let middle_addr = middle_listener.local_addr()?;
        let m = middle.clone();
        serve(
            "middle",
            middle_listener,
            move |req, budget| m.clone().handle(req, budget),
            middle.deadlines.clone(),
        );

        let edge_budget = budget();
        let edge = Arc::new(Edge {
            pipeline: Pipeline::new("middle", WeftEnv::new())
                .with_timeout(Duration::from_secs(1))
                .with_retry(Retry::with_predicate(
                    RetryConfig::builder()
                        .max_attempts(3)
                        .backoff(
                            Backoff::exponential(
                                Duration::from_millis(2),
                                Duration::from_millis(20),
                            )
                            .jitter(Jitter::Full),
                        )
                        .expected_attempt(Duration::from_millis(5))
                        .budget(edge_budget.clone())
                        .build()
                        .expect("a valid retry config"),
                    OnCallErrors,
                ))
                .with_breaker(breaker("middle")),
            middle: Client::new(middle_addr),
            deadlines: Arc::new(AtomicU64::new(0)),
            budget: edge_budget,
        });
        let edge_listener = TcpListener::bind("127.0.0.1:0").await?;
        let edge_addr = edge_listener.local_addr()?;
        let e = edge.clone();
        serve(
            "edge",
            edge_listener,
            move |req, budget| e.clone().handle(req, budget),
            edge.deadlines.clone(),
        );
        Ok(Mesh {
            edge_addr,
            edge,
            middle,
            leaf,
        })
    }
}

/// A breaker's state in one letter.
pub fn state(b: &Breaker) -> &'static str {
    match b.state() {
        State::Closed => "closed",
        State::Open => "OPEN",
        State::HalfOpen => "half",
        _ => "other",
    }
}
