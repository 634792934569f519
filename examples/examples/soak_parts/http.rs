//! The soak's HTTP part: a weft-hyper server whose handler works 0–30 ms
//! (cut at the request's deadline), and client loops on one pooled
//! weft-hyper client, each request under its own deadline of 5–60 ms (so
//! some are answered 504 by the server, some end at the client's own
//! deadline), some dropping a 512 KiB response after its first frame.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use weft::{net::TcpListener, sync::oneshot, time::sleep, JoinHandle};
use weft_hyper::{client, server::Body, server::ShutdownReport, Client, Server};

use crate::{Rng, Stats};

/// Client loops.
pub(crate) const CLIENTS: usize = 4;
const BIG: usize = 512 * 1024;
const MARGIN: Duration = Duration::from_millis(2);
/// Handlers running at once: the loops keep at most one request each in
/// flight, plus requests their callers gave up on, which end at their
/// deadline (60 ms at most). Far above that, far below a leak.
pub(crate) const MAX_HANDLERS: usize = 64;

/// The server and what the checks read from it.
pub(crate) struct HttpPart {
    pub(crate) addr: SocketAddr,
    pub(crate) client: Client,
    /// Handlers running now.
    pub(crate) handlers: Arc<AtomicUsize>,
    /// Handlers started over the run.
    pub(crate) handled: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<ShutdownReport>>>,
}

/// Counts a running handler while it lives.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// `/work/{ms}/{bytes}`: the handler's work and the body's size.
fn parse(path: &str) -> Option<(u64, usize)> {
    let mut it = path.strip_prefix("/work/")?.split('/');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl HttpPart {
    /// Binds and starts the server (from inside the runtime).
    pub(crate) async fn start() -> std::io::Result<HttpPart> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let handlers = Arc::new(AtomicUsize::new(0));
        let handled = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = oneshot::channel::<()>();
        let (h, n) = (handlers.clone(), handled.clone());
        let server = weft::spawn(async move {
            Server::builder()
                .grace(Duration::from_secs(2))
                .build()
                .serve(
                    listener,
                    move |req: Request<Body>| {
                        h.fetch_add(1, Relaxed);
                        n.fetch_add(1, Relaxed);
                        let running = Running(h.clone());
                        async move {
                            let _running = running;
                            let Some((ms, bytes)) = parse(req.uri().path()) else {
                                let mut bad =
                                    Response::new(Full::new(Bytes::from_static(b"bad path")));
                                *bad.status_mut() = StatusCode::NOT_FOUND;
                                return Ok(bad);
                            };
                            // Cut at the request's deadline: the server
                            // answers 504 then.
                            sleep(Duration::from_millis(ms)).await?;
                            Ok::<_, weft::cancel::Cancelled>(Response::new(Full::new(Bytes::from(
                                vec![b'w'; bytes],
                            ))))
                        }
                    },
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
        });
        Ok(HttpPart {
            addr,
            client: Client::builder().margin(MARGIN).build(),
            handlers,
            handled,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// Graceful shutdown (after every client loop ended): the report must
    /// show nothing cut, and no handler may be left running.
    pub(crate) async fn shutdown(&mut self) -> Result<ShutdownReport, String> {
        drop(self.stop.take());
        let server = self
            .server
            .take()
            .ok_or("the HTTP server was shut down twice")?;
        let report = server
            .await
            .map_err(|e| format!("the HTTP server task: {e}"))?
            .map_err(|e| format!("the HTTP server: {e}"))?;
        if report.cut_connections != 0 || report.cut_requests != 0 || report.still_running != 0 {
            return Err(format!(
                "the HTTP server's graceful shutdown had to cut work with no client left: {report:?}"
            ));
        }
        if report.requests < self.handled.load(Relaxed) {
            return Err(format!(
                "the HTTP server reports {} requests, its handler ran {} times",
                report.requests,
                self.handled.load(Relaxed)
            ));
        }
        let running = self.handlers.load(Relaxed);
        if running != 0 {
            return Err(format!(
                "{running} HTTP handlers still running after the server's shutdown"
            ));
        }
        Ok(report)
    }
}

enum Outcome {
    Ok,
    Timeout504,
    DroppedMidway,
    Unexpected(String),
}

pub(crate) async fn client_loop(
    client: Client,
    addr: SocketAddr,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    while !stop.load(Relaxed) {
        let work = rng.below(31);
        let big = rng.below(8) == 0;
        let bytes = if big {
            BIG
        } else {
            1 + rng.below(4096) as usize
        };
        let drop_midway = big && rng.below(2) == 0;
        let budget = Duration::from_millis(5 + rng.below(56));
        let uri: Uri = match format!("http://{addr}/work/{work}/{bytes}").parse() {
            Ok(uri) => uri,
            Err(e) => {
                stats.fail(format!("an HTTP uri: {e}"));
                return;
            }
        };
        let client = client.clone();
        let request = weft::task::Builder::new()
            .timeout(budget)
            .spawn(async move {
                let res = client.get(uri).await?;
                let status = res.status();
                if status == StatusCode::GATEWAY_TIMEOUT {
                    return Ok(Outcome::Timeout504);
                }
                if status != StatusCode::OK {
                    let body = client::read_body(res.into_body()).await?;
                    return Ok(Outcome::Unexpected(format!(
                        "status {status}: {}",
                        String::from_utf8_lossy(&body)
                    )));
                }
                if drop_midway {
                    // The first frame, then the response is dropped with most
                    // of its 512 KiB unread.
                    let mut body = res.into_body();
                    let _ = body.frame().await;
                    return Ok(Outcome::DroppedMidway);
                }
                let body = client::read_body(res.into_body()).await?;
                if body.len() != bytes {
                    return Ok(Outcome::Unexpected(format!(
                        "a body of {} bytes, {bytes} asked for",
                        body.len()
                    )));
                }
                Ok::<_, client::Error>(Outcome::Ok)
            });
        match request.await {
            Ok(Ok(Outcome::Ok)) => stats.count(crate::HTTP_OK),
            Ok(Ok(Outcome::Timeout504)) => stats.count(crate::HTTP_504),
            Ok(Ok(Outcome::DroppedMidway)) => stats.count(crate::HTTP_DROPPED),
            Ok(Ok(Outcome::Unexpected(what))) => {
                stats.fail(format!(
                    "an HTTP request (work {work} ms, {bytes} B, budget {budget:?}) got {what}"
                ));
                return;
            }
            Ok(Err(client::Error::Cancelled(c))) if c.is_deadline() => stats.count(crate::HTTP_CUT),
            Ok(Err(client::Error::BudgetSpent)) => stats.count(crate::HTTP_CUT),
            Ok(Err(e)) => {
                stats.fail(format!(
                    "an HTTP request (work {work} ms, {bytes} B, budget {budget:?}): {e} ({e:?})"
                ));
                return;
            }
            Err(e) if e.is_cancelled() => stats.count(crate::HTTP_CUT),
            Err(e) => {
                stats.fail(format!("an HTTP request task: {e}"));
                return;
            }
        }
    }
}
