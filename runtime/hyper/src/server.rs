//! An HTTP/1.1 server on weft: [`serve`] / [`Server::serve`].
//!
//! # Structure
//! - The accept loop runs in a cancellation scope of its own; every
//!   connection is a task spawned in it, so one [`CancelHandle`] reaches all
//!   of them (and everything their handlers spawned) and nothing else.
//! - A connection task drives hyper's HTTP/1 connection with weft's io and
//!   [`WeftTimer`] (hyper's header-read timeout), and watches two more
//!   things on each poll: the server's shutdown signal (then it asks
//!   hyper for a graceful close: finish the request in flight, then close)
//!   and its idle timer (no request for `idle_timeout`: close).
//! - A request with a deadline (from the deadline header, else the server's
//!   default, clamped by `max_deadline`) runs its handler as a task of its
//!   own with that deadline, a child of the connection: every await inside
//!   honours it, and the connection answers 504 the moment it passes,
//!   cancelling the handler's subtree. A request without one runs its
//!   handler inline in the connection task (no spawn).
//!
//! # Shutdown, in order
//! 1. The `shutdown` future completes: the accept loop ends and the
//!    listener is dropped (new connects are refused).
//! 2. The shutdown signal fires: each connection finishes the request in
//!    flight, if any, and closes; idle ones close at once.
//! 3. After `grace`, the connections still open are cancelled through the
//!    tree (their handlers see `Cancelled` at their next await point); the
//!    [`ShutdownReport`] says how many connections and requests were cut.
//! 4. `serve` returns once every connection task has ended (bounded by
//!    `grace` again: a handler that ignores its cancellation is counted in
//!    `still_running`, not waited for), and every handler task too: one cut
//!    at its deadline (answered 504) or with its connection is cancelled
//!    and left to end at its next await point, so it can outlive its
//!    connection for a moment (bounded by `grace` once more).

use std::{
    convert::Infallible,
    error::Error as StdError,
    fmt,
    future::{poll_fn, Future},
    io,
    pin::pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::*},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{header::HeaderName, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full, LengthLimitError, Limited};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::server::conn::auto;
use weft::{
    cancel::{wire, CancelHandle},
    net::{TcpListener, TcpStream},
};

use crate::{
    rt::WeftTimer,
    signal::{Listener, Signal, Tracker},
    BoxError,
};

/// The body a handler receives: hyper's, limited to the server's
/// `max_body_size` (reading past it fails with [`LengthLimitError`], which
/// the server answers with 413 if the handler returns it).
pub type Body = Limited<Incoming>;

/// The body of a response the server sends: the handler's, or one of the
/// server's own (400, 413, 500, 503, 504).
pub type ResponseBody<B> = Either<B, Full<Bytes>>;

/// Settings of a [`Server`].
#[derive(Clone, Debug)]
pub struct Builder {
    header_read_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_body_size: usize,
    deadline_header: HeaderName,
    default_deadline: Option<Duration>,
    max_deadline: Duration,
    grace: Duration,
    http2: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            header_read_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(60)),
            max_body_size: 2 * 1024 * 1024,
            deadline_header: HeaderName::from_static(wire::HEADER),
            default_deadline: None,
            max_deadline: Duration::from_secs(30),
            grace: Duration::from_secs(10),
            http2: false,
        }
    }
}

impl Builder {
    /// The defaults: 30 s header-read timeout, 60 s idle timeout, 2 MiB
    /// bodies, deadlines from `grpc-timeout` capped at 30 s, none by
    /// default, 10 s of grace at shutdown.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// How long a client may take to send a request's head, counted from
    /// when the server starts waiting for it (on a kept-alive connection,
    /// from the end of the previous response, so with hyper's HTTP/1 this
    /// also bounds the idle time between requests). `None`: no limit.
    pub fn header_read_timeout(mut self, t: impl Into<Option<Duration>>) -> Builder {
        self.header_read_timeout = t.into();
        self
    }

    /// Closes a connection with no request in flight for this long. `None`:
    /// no limit (the header-read timeout still applies).
    pub fn idle_timeout(mut self, t: impl Into<Option<Duration>>) -> Builder {
        self.idle_timeout = t.into();
        self
    }

    /// The largest request body, in bytes: a larger `content-length` is
    /// answered with 413 before the handler runs; a body without one fails
    /// the handler's read past the limit.
    pub fn max_body_size(mut self, bytes: usize) -> Builder {
        self.max_body_size = bytes;
        self
    }

    /// The header carrying the client's remaining budget, in `grpc-timeout`
    /// format (default `grpc-timeout`). A value that does not parse is
    /// answered with 400.
    pub fn deadline_header(mut self, name: HeaderName) -> Builder {
        self.deadline_header = name;
        self
    }

    /// The deadline of a request that carries none (default: none).
    pub fn default_deadline(mut self, d: impl Into<Option<Duration>>) -> Builder {
        self.default_deadline = d.into();
        self
    }

    /// The longest deadline the server grants: a longer one from the wire is
    /// clamped to it (default 30 s).
    pub fn max_deadline(mut self, d: Duration) -> Builder {
        self.max_deadline = d;
        self
    }

    /// How long in-flight requests may run after shutdown starts before they
    /// are cancelled (default 10 s).
    pub fn grace(mut self, d: Duration) -> Builder {
        self.grace = d;
        self
    }

    /// Also speak HTTP/2 (prior knowledge, `h2c`) on the same port: each
    /// connection's first bytes choose (hyper-util's `auto` builder).
    /// HTTP/2 streams run as tasks in their connection's scope.
    pub fn http2(mut self, yes: bool) -> Builder {
        self.http2 = yes;
        self
    }

    /// The server.
    pub fn build(self) -> Server {
        Server {
            config: Arc::new(self),
        }
    }
}

/// An HTTP/1.1 server; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Server {
    config: Arc<Builder>,
}

/// What a shutdown did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections accepted over the server's life.
    pub connections: u64,
    /// Requests handled (answered or cut) over the server's life.
    pub requests: u64,
    /// Connections still open when the grace period ended, cancelled.
    pub cut_connections: usize,
    /// Requests in flight when the grace period ended, cancelled.
    pub cut_requests: usize,
    /// Connection tasks that had not ended `grace` after they were
    /// cancelled, and handler tasks that had not ended `grace` after the
    /// connections did (a handler that ignores cancellation); not waited
    /// for.
    pub still_running: usize,
}

/// Serves `handler` on `listener` with the default settings until the
/// calling task is cancelled. See [`Server::serve`].
pub async fn serve<H, F, B, E>(listener: TcpListener, handler: H) -> io::Result<ShutdownReport>
where
    H: Fn(Request<Body>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError> + Send + 'static,
{
    Server::builder()
        .build()
        .serve(listener, handler, std::future::pending())
        .await
}

/// Counters shared by the accept loop, the connections and the report.
/// Per-request counts live in each connection's [`Idle`] (no cache line
/// shared by every request on both workers); a connection adds its total
/// here when it ends, and the report sums the live ones.
#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    /// Requests of connections that have ended.
    requests: AtomicU64,
    /// The live connections' activity, for the report.
    live: std::sync::Mutex<slab::Slab<Arc<Idle>>>,
}

impl Stats {
    fn live(&self) -> std::sync::MutexGuard<'_, slab::Slab<Arc<Idle>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests in flight on live connections.
    fn in_flight(&self) -> usize {
        self.live()
            .iter()
            .map(|(_, c)| c.in_flight.load(Relaxed))
            .sum()
    }

    /// Requests handled so far.
    fn requests(&self) -> u64 {
        let live: u64 = self
            .live()
            .iter()
            .map(|(_, c)| c.requests.load(Relaxed))
            .sum();
        self.requests.load(Relaxed) + live
    }
}

struct Shared<H> {
    config: Arc<Builder>,
    handler: H,
    stats: Stats,
    shutdown: Arc<Signal>,
    conns: Arc<Tracker>,
    /// Handler tasks (requests with a deadline) alive: a handler cut at its
    /// deadline or with its connection is cancelled, not awaited, so it
    /// can outlive its connection for a moment; `serve` waits for these
    /// too before it returns.
    handlers: Arc<Tracker>,
}

/// What a connection's requests share: cloned per request (its count is
/// the connection's own, not the server's).
struct ConnCtx<H> {
    shared: Arc<Shared<H>>,
    idle: Arc<Idle>,
}

impl Server {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Accepts connections on `listener` and answers each request with
    /// `handler` until `shutdown` completes, then shuts down gracefully (see
    /// the [module docs](self)) and reports.
    ///
    /// A handler error is answered with 500 (413 if it is the body's
    /// [`LengthLimitError`], 504 if the request's deadline had passed).
    ///
    /// # Errors
    /// An `accept` error that is not about one connection (the listener
    /// itself failed), or the calling task's cancellation.
    pub async fn serve<H, F, B, E>(
        &self,
        listener: TcpListener,
        handler: H,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<ShutdownReport>
    where
        H: Fn(Request<Body>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Response<B>, E>> + Send + 'static,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        E: Into<BoxError> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            handler,
            stats: Stats::default(),
            shutdown: Arc::new(Signal::default()),
            conns: Arc::new(Tracker::default()),
            handlers: Arc::new(Tracker::default()),
        });
        let accepting = weft::cancel::scope(accept_loop(listener, shared.clone(), shutdown));
        let connections: CancelHandle = accepting.handle();
        // 1. Until `shutdown` (or an error): the listener goes with the loop.
        let accepted = accepting.await;
        // 2. Graceful close of every connection.
        shared.shutdown.fire();
        let grace = self.config.grace;
        let mut report = ShutdownReport::default();
        if weft::time::timeout(grace, shared.conns.zero())
            .await
            .is_err()
        {
            // 3. What is left is cut.
            report.cut_connections = shared.conns.live();
            report.cut_requests = shared.stats.in_flight();
            connections.cancel_with("server shutdown: grace period over");
            // 4. Bounded wait for the cut tasks to end.
            if weft::time::timeout(grace, shared.conns.zero())
                .await
                .is_err()
            {
                report.still_running = shared.conns.live();
            }
        }
        // Handlers cut at their deadline or with their connection were
        // cancelled, not awaited: they end at their next await point.
        if weft::time::timeout(grace, shared.handlers.zero())
            .await
            .is_err()
        {
            report.still_running += shared.handlers.live();
        }
        report.connections = shared.stats.connections.load(Relaxed);
        report.requests = shared.stats.requests();
        accepted.map(|()| report)
    }
}

/// Accepts until `shutdown`, spawning a connection task per stream (in the
/// current scope: the server's connection scope).
async fn accept_loop<H, F, B, E>(
    listener: TcpListener,
    shared: Arc<Shared<H>>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    H: Fn(Request<Body>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError> + Send + 'static,
{
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = {
            let mut accept = pin!(listener.accept());
            poll_fn(|cx| {
                if shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                accept.as_mut().poll(cx).map(Some)
            })
            .await
        };
        match accepted {
            None => return Ok(()),
            Some(Ok((stream, _peer))) => {
                shared.stats.connections.fetch_add(1, Relaxed);
                let guard = shared.conns.enter();
                let shared = shared.clone();
                weft::spawn(async move {
                    let _guard = guard;
                    connection(stream, shared).await;
                });
            }
            // A connection that failed before we took it, or out of fds for
            // a moment (the next accept re-arms): keep serving.
            Some(Err(e)) if is_per_connection(&e) => {
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    // Let fds free up instead of spinning on the error.
                    weft::time::sleep(Duration::from_millis(10))
                        .await
                        .map_err(io::Error::from)?;
                }
            }
            Some(Err(e)) => return Err(e),
        }
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// One connection: hyper's HTTP/1 (or auto-detected HTTP/2) state machine, the shutdown signal and
/// the idle timer, all polled by this task.
async fn connection<H, F, B, E>(stream: TcpStream, shared: Arc<Shared<H>>)
where
    H: Fn(Request<Body>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let config = &shared.config;
    let started = Instant::now();
    let idle = Arc::new(Idle {
        started,
        in_flight: AtomicUsize::new(0),
        requests: AtomicU64::new(0),
        last_done: AtomicU64::new(0),
    });
    let key = shared.stats.live().insert(idle.clone());
    let _registered = Unregister {
        stats: &shared.stats,
        key,
    };
    let svc = {
        let ctx = Arc::new(ConnCtx {
            shared: shared.clone(),
            idle: idle.clone(),
        });
        service_fn(move |req| {
            // Counted when hyper hands the request over, not when its
            // future first runs (for HTTP/2, later, in the stream's task):
            // the first-request timer of `drive` must see it at once.
            let in_flight = InFlight::enter(ctx.clone());
            async move { Ok::<_, Infallible>(answer(req, &in_flight.0.shared).await) }
        })
    };
    if config.http2 {
        let mut builder = auto::Builder::new(StreamExecutor(shared.handlers.clone()));
        builder
            .http1()
            .timer(WeftTimer)
            .header_read_timeout(config.header_read_timeout)
            .keep_alive(true);
        builder.http2().timer(WeftTimer);
        let conn = builder.serve_connection(stream, svc);
        drive(conn, &shared, &idle).await;
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(WeftTimer)
            .header_read_timeout(config.header_read_timeout)
            .keep_alive(true);
        drive(builder.serve_connection(stream, svc), &shared, &idle).await;
    }
}

/// hyper's executor for a connection's HTTP/2 streams: each stream is a
/// child task of the connection (the tree reaches it, as
/// [`crate::rt::WeftExecutor::in_current_scope`] would), counted with the handler
/// tasks, so that `serve` also waits for a stream still finishing its
/// handler after its connection ended (a handler without a deadline runs
/// in its stream's task).
#[derive(Clone)]
struct StreamExecutor(Arc<Tracker>);

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let running = self.0.enter();
        drop(weft::task::Builder::new().spawn(async move {
            let _running = running;
            fut.await
        }));
    }
}

/// A hyper connection that can be asked to close gracefully.
trait GracefulConnection: Future {
    fn start_graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConnection for http1::Connection<I, S>
where
    http1::Connection<I, S>: Future,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<BoxError>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    fn start_graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E> GracefulConnection for auto::Connection<'_, I, S, E>
where
    Self: Future,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<BoxError>,
    S::ResBody: hyper::body::Body + Send + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn start_graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Polls `conn` to its end, starting its graceful close on the server's
/// shutdown signal or when the connection has been idle too long.
async fn drive<C: GracefulConnection, H>(conn: C, shared: &Shared<H>, idle: &Idle) {
    let mut conn = pin!(conn);
    let mut shutdown = Listener::new(shared.shutdown.clone());
    let mut closing = false;
    let idle_timeout = shared.config.idle_timeout;
    let mut idle_sleep = idle_timeout.map(|t| Box::pin(weft::time::sleep_until(idle.started + t)));
    // hyper-util's protocol detection (`http2(true)`) reads the first bytes
    // with no timer of its own, and hyper's HTTP/2 has no head timeout: a
    // client that sends nothing, or half a preface, would hold the
    // connection until the idle timeout (for ever without one). So with no
    // request begun within `header_read_timeout` the connection is asked to
    // close gracefully, which ends one still detecting its protocol at once
    // and sends an HTTP/2 client a GOAWAY it can retry after; one still
    // open a timeout later (a client past the preface that does not finish
    // the close, an HTTP/1 head begun but not ended) is dropped. (hyper's
    // HTTP/1 has its own header timer.)
    let header_timeout = shared.config.header_read_timeout;
    let mut first_request = header_timeout
        .filter(|_| shared.config.http2)
        .map(|t| Box::pin(weft::time::sleep_until(add_saturating(idle.started, t))));
    let mut first_request_warned = false;
    poll_fn(|cx: &mut Context<'_>| {
        if let (Some(sleep), Some(t)) = (first_request.as_mut(), header_timeout) {
            if sleep.as_mut().poll(cx).is_ready() {
                if idle.requests.load(Relaxed) > 0 {
                    first_request = None;
                } else if first_request_warned {
                    return Poll::Ready(());
                } else {
                    first_request_warned = true;
                    if !closing {
                        closing = true;
                        conn.as_mut().start_graceful_shutdown();
                    }
                    sleep.as_mut().reset(add_saturating(Instant::now(), t));
                    if sleep.as_mut().poll(cx).is_ready() {
                        // Already due (a timeout under a tick): no waker
                        // was registered, so come back at once.
                        cx.waker().wake_by_ref();
                    }
                }
            }
        }
        if !closing && shutdown.poll(cx).is_ready() {
            closing = true;
            conn.as_mut().start_graceful_shutdown();
        }
        if let (false, Some(t), Some(sleep)) = (closing, idle_timeout, idle_sleep.as_mut()) {
            while sleep.as_mut().poll(cx).is_ready() {
                match idle.idle_until(t) {
                    Some(until) if until > Instant::now() => sleep.as_mut().reset(until),
                    Some(_) => {
                        closing = true;
                        conn.as_mut().start_graceful_shutdown();
                        break;
                    }
                    // A request is in flight: look again a period later.
                    None => sleep.as_mut().reset(Instant::now() + t),
                }
            }
        }
        conn.as_mut().poll(cx).map(drop)
    })
    .await;
}

/// Takes a connection out of the live set and adds its request count to
/// the server's.
struct Unregister<'a> {
    stats: &'a Stats,
    key: usize,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        // Under the lock, so a report never misses the connection's count.
        let mut live = self.stats.live();
        let idle = live.remove(self.key);
        self.stats
            .requests
            .fetch_add(idle.requests.load(Relaxed), Relaxed);
        drop(live);
    }
}

/// A connection's activity, for its idle timer and the report.
struct Idle {
    started: Instant,
    /// Requests this connection has handled (answered or in flight).
    requests: AtomicU64,
    /// Requests of this connection in flight.
    in_flight: AtomicUsize,
    /// When the last request ended, in ns of `weft::time::coarse_now()`
    /// (0: none yet). The coarse clock: a precise read per request cost
    /// more than the rest of this bookkeeping (BENCHMARKS.md, "HTTP").
    last_done: AtomicU64,
}

impl Idle {
    /// When the connection becomes idle for `t`, or `None` while busy.
    fn idle_until(&self, t: Duration) -> Option<Instant> {
        if self.in_flight.load(Relaxed) > 0 {
            return None;
        }
        let last = self.last_done.load(Relaxed);
        if last == 0 {
            return Some(self.started + t);
        }
        // The stamp lags the true end of the last request by at most the
        // coarse clock's lag and the reading of now by no less than zero,
        // so `ago` overstates the idle time by at most that lag. Adding two
        // ticks (the lag `weft::time` allows for) means the connection is
        // never closed before it has been idle for `t`.
        let ago = weft::time::coarse_now().saturating_sub(Duration::from_nanos(last));
        let now = Instant::now();
        let last = now
            .checked_sub(ago)
            .unwrap_or(self.started)
            .max(self.started);
        Some(last + 2 * weft::time::coarse_resolution() + t)
    }
}

/// Counts a request of the connection, and one in flight until dropped;
/// then stamps the connection's last activity. It holds the request's
/// reference to its connection's context (one `Arc` clone per request).
struct InFlight<H>(Arc<ConnCtx<H>>);

impl<H> InFlight<H> {
    fn enter(ctx: Arc<ConnCtx<H>>) -> InFlight<H> {
        ctx.idle.requests.fetch_add(1, Relaxed);
        ctx.idle.in_flight.fetch_add(1, Relaxed);
        InFlight(ctx)
    }
}

impl<H> Drop for InFlight<H> {
    fn drop(&mut self) {
        let idle = &self.0.idle;
        let now = weft::time::coarse_now().as_nanos() as u64;
        idle.last_done.store(now.max(1), Relaxed);
        idle.in_flight.fetch_sub(1, Relaxed);
    }
}

async fn answer<H, F, B, E>(req: Request<Incoming>, shared: &Shared<H>) -> Response<ResponseBody<B>>
where
    H: Fn(Request<Body>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError> + Send + 'static,
{
    let config = &shared.config;
    let deadline = match admit(req.headers(), config, Instant::now) {
        Ok(deadline) => deadline,
        Err((status, msg)) => return plain(status, msg),
    };
    let req = req.map(|body| Limited::new(body, config.max_body_size));
    let Some(deadline) = deadline else {
        // No deadline: the handler runs in the connection task.
        return into_response((shared.handler)(req).await, None);
    };
    if deadline <= Instant::now() {
        return plain(StatusCode::GATEWAY_TIMEOUT, "deadline exceeded\n");
    }
    let handler = (shared.handler)(req);
    let running = shared.handlers.enter();
    let mut awaited = Awaited(Some(
        weft::task::Builder::new()
            .name("http request")
            .deadline(deadline)
            .spawn(async move {
                let _running = running;
                handler.await
            }),
    ));
    let task = awaited.0.as_mut().expect("set above");
    let mut timer = pin!(weft::time::sleep_until(deadline));
    enum Outcome<T> {
        Done(T),
        Deadline,
        Cut,
    }
    let outcome = poll_fn(|cx| {
        if let Poll::Ready(res) = std::pin::Pin::new(&mut *task).poll(cx) {
            return Poll::Ready(Outcome::Done(res));
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Outcome::Deadline),
            Poll::Ready(Err(_)) => Poll::Ready(Outcome::Cut),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    let task = awaited.answered();
    match outcome {
        // The handler's own scope was cut (graceful shutdown's end, or the
        // connection's scope): it reported what it saw.
        Outcome::Done(Ok(res)) => into_response(res, Some(deadline)),
        Outcome::Done(Err(join)) if join.is_panic() => {
            plain(StatusCode::INTERNAL_SERVER_ERROR, "handler panicked\n")
        }
        Outcome::Done(Err(join)) if join.interrupted().is_some() => {
            // This (the connection's) scope was cancelled while waiting:
            // the handler may still run; its subtree goes too.
            task.cancel_with("connection cancelled");
            plain(StatusCode::SERVICE_UNAVAILABLE, "request cancelled\n")
        }
        Outcome::Done(Err(_)) => {
            if Instant::now() >= deadline {
                plain(StatusCode::GATEWAY_TIMEOUT, "deadline exceeded\n")
            } else {
                plain(StatusCode::SERVICE_UNAVAILABLE, "request cancelled\n")
            }
        }
        Outcome::Deadline => {
            // The handler may not have reached an await point: cancel its
            // subtree explicitly (a no-op if its deadline already did).
            task.cancel_with("request deadline exceeded");
            plain(StatusCode::GATEWAY_TIMEOUT, "deadline exceeded\n")
        }
        Outcome::Cut => {
            task.cancel_with("connection cancelled");
            plain(StatusCode::SERVICE_UNAVAILABLE, "request cancelled\n")
        }
    }
}

/// A request's handler task while the request waits for it. If hyper
/// drops the request's future first, the client has gone (its HTTP/1
/// connection closed, or an HTTP/2 `RST_STREAM` for the stream): the task
/// and its subtree are cancelled, as Go cancels a request's context when
/// its client goes. A dropped `JoinHandle` alone would leave the handler,
/// and every downstream call it makes, running to its deadline.
struct Awaited<T>(Option<weft::task::JoinHandle<T>>);

impl<T> Awaited<T> {
    /// The request has its outcome: the handle is the caller's again.
    fn answered(mut self) -> weft::task::JoinHandle<T> {
        self.0.take().expect("answered once")
    }
}

impl<T> Drop for Awaited<T> {
    fn drop(&mut self) {
        // A handler that finished may have left children running in its
        // scope on purpose: only an unfinished one is cancelled.
        if let Some(task) = self.0.take().filter(|t| !t.is_finished()) {
            task.cancel_with("the client went away");
        }
    }
}

/// What weft reads from a request head before the handler runs: the
/// deadline the request runs under (`None`: no deadline), or the status and
/// message that answer it at once (413 for a declared body over the limit,
/// 400 for a deadline header that does not parse, 504 for a budget of 0).
///
/// `now` is read only when there is a deadline to compute (a request with
/// neither the header nor a default deadline costs no clock read).
fn admit(
    headers: &HeaderMap,
    config: &Builder,
    now: impl FnOnce() -> Instant,
) -> Result<Option<Instant>, (StatusCode, &'static str)> {
    if let Some(len) = content_length(headers) {
        if len > config.max_body_size as u64 {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"));
        }
    }
    let (deadline, now) = match (
        headers.get(&config.deadline_header),
        config.default_deadline,
    ) {
        (Some(value), _) => {
            let now = now();
            let deadline = parse_budget(value, config.max_deadline, now)
                .map_err(|msg| (StatusCode::BAD_REQUEST, msg))?;
            (deadline, now)
        }
        (None, Some(d)) => {
            let now = now();
            (add_saturating(now, d.min(config.max_deadline)), now)
        }
        (None, None) => return Ok(None),
    };
    if deadline <= now {
        return Err((StatusCode::GATEWAY_TIMEOUT, "deadline exceeded\n"));
    }
    Ok(Some(deadline))
}

/// `now + d`, or as far ahead as the clock holds when that overflows (a
/// "no cap" `max_deadline` and `default_deadline` of `Duration::MAX`).
fn add_saturating(now: Instant, mut d: Duration) -> Instant {
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        d /= 2;
    }
}

/// [`admit`], for the fuzz target `http_head` (`fuzz/`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn __fuzz_admit(
    headers: &HeaderMap,
    config: &Builder,
    now: Instant,
) -> Result<Option<Instant>, (StatusCode, &'static str)> {
    admit(headers, config, || now)
}

/// The deadline a `grpc-timeout`-format header asks for, clamped to `max`.
fn parse_budget(value: &HeaderValue, max: Duration, now: Instant) -> Result<Instant, &'static str> {
    let text = value
        .to_str()
        .map_err(|_| "invalid deadline header: not ASCII\n")?;
    wire::parse_deadline(text, now, max)
        .map(|p| p.deadline)
        .map_err(|_| "invalid deadline header: expected 1-8 digits and one of H M S m u n\n")
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn into_response<B, E>(
    res: Result<Response<B>, E>,
    deadline: Option<Instant>,
) -> Response<ResponseBody<B>>
where
    E: Into<BoxError>,
{
    match res {
        Ok(r) => r.map(Either::Left),
        Err(e) => {
            let e: BoxError = e.into();
            if is_length_limit(&*e) {
                plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
            } else if deadline.is_some_and(|d| Instant::now() >= d) || is_deadline(&*e) {
                plain(StatusCode::GATEWAY_TIMEOUT, "deadline exceeded\n")
            } else {
                plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
            }
        }
    }
}

/// True if `e` (or a source, or an io error's inner error) is the body
/// limit's error: a handler that reads the body through an io adapter
/// gets it wrapped in an `io::Error`, whose `source()` skips it.
fn is_length_limit(e: &(dyn StdError + 'static)) -> bool {
    find_in_chain(e, |err| {
        err.is::<LengthLimitError>().then_some(()).is_some()
    })
}

/// True if `e` (or a source, or an io error's inner error) is a deadline's
/// cancellation.
fn is_deadline(e: &(dyn StdError + 'static)) -> bool {
    find_in_chain(e, |err| {
        err.downcast_ref::<weft::cancel::Cancelled>()
            .is_some_and(|c| c.is_deadline())
    })
}

/// True if `found` holds for `e`, one of its sources, or the inner error
/// of an `io::Error` among them.
fn find_in_chain(
    e: &(dyn StdError + 'static),
    found: impl Fn(&(dyn StdError + 'static)) -> bool,
) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if found(err) {
            return true;
        }
        let inner = err.downcast_ref::<io::Error>().and_then(|io| io.get_ref());
        if inner.is_some_and(|inner| found(inner)) {
            return true;
        }
        cur = err.source();
    }
    false
}

fn plain<B>(status: StatusCode, msg: &'static str) -> Response<ResponseBody<B>> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::from_static(msg.as_bytes()))));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections, {} requests; cut at the end of the grace period: {} connections, {} requests",
            self.connections, self.requests, self.cut_connections, self.cut_requests
        )
    }
}
