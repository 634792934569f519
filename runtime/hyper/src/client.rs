//! A pooled HTTP client on weft that carries the caller's deadline: hyper-util's
//! legacy `Client` with a weft connector, [`WeftExecutor`] and [`WeftTimer`].
//!
//! Each [`Client::request`] is a weft await point of the calling task:
//! - before sending, it reads the caller's deadline (`weft::cancel::deadline`)
//!   and sends what is left of it, minus a margin, as `grpc-timeout` (weft's
//!   wire codec); a budget the margin eats whole refuses the call
//!   ([`Error::BudgetSpent`]) without touching the network;
//! - while waiting, it returns [`Error::Cancelled`] the moment the caller's
//!   scope is cancelled or its deadline passes.
//!
//! Connections are pooled and driven by detached tasks: a request's deadline
//! ends the request, never the pooled connection under it.

use std::{
    error::Error as StdError,
    fmt,
    future::{poll_fn, Future},
    io,
    net::{IpAddr, SocketAddr},
    pin::{pin, Pin},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{header::HeaderName, HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{
    connect::{Connected, Connection},
    Client as LegacyClient,
};
use weft::{
    cancel::{wire, Cancelled},
    net::TcpStream,
};

use crate::{
    rt::{WeftExecutor, WeftTimer},
    BoxError,
};

/// Why a request failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Not sent: the caller's remaining budget, minus the margin, is zero.
    BudgetSpent,
    /// The caller's scope was cancelled or its deadline passed while the
    /// request or its body was in flight ([`Cancelled::is_deadline`] says
    /// which).
    Cancelled(Cancelled),
    /// The request failed (connect, send, protocol).
    Request(hyper_util::client::legacy::Error),
    /// Reading the response body failed.
    Body(hyper::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BudgetSpent => f.write_str("request not sent: the deadline's budget is spent"),
            Error::Cancelled(c) => write!(f, "request interrupted: {c}"),
            Error::Request(e) => write!(f, "request failed: {e}"),
            Error::Body(e) => write!(f, "reading the response body failed: {e}"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::BudgetSpent => None,
            Error::Cancelled(c) => Some(c),
            Error::Request(e) => Some(e),
            Error::Body(e) => Some(e),
        }
    }
}

/// Settings of a [`Client`].
#[derive(Clone, Debug)]
pub struct Builder {
    margin: Duration,
    header: HeaderName,
    http2_only: bool,
    pool_idle_timeout: Option<Duration>,
    pool_max_idle_per_host: usize,
    handle: Option<weft::runtime::Handle>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            margin: Duration::ZERO,
            header: HeaderName::from_static(wire::HEADER),
            http2_only: false,
            pool_idle_timeout: Some(Duration::from_secs(90)),
            pool_max_idle_per_host: usize::MAX,
            handle: None,
        }
    }
}

impl Builder {
    /// Subtracted from the budget sent downstream, so the server gives up
    /// (and answers) before the caller does (default zero).
    pub fn margin(mut self, margin: Duration) -> Builder {
        self.margin = margin;
        self
    }

    /// The header the budget is sent in (default `grpc-timeout`).
    pub fn deadline_header(mut self, name: HeaderName) -> Builder {
        self.header = name;
        self
    }

    /// Speak HTTP/2 (prior knowledge, `h2c`) instead of HTTP/1.1.
    pub fn http2_only(mut self, yes: bool) -> Builder {
        self.http2_only = yes;
        self
    }

    /// How long an idle pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, t: impl Into<Option<Duration>>) -> Builder {
        self.pool_idle_timeout = t.into();
        self
    }

    /// The most idle connections kept per host (default unlimited).
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Builder {
        self.pool_max_idle_per_host = n;
        self
    }

    /// Runs the connection tasks on `handle`'s runtime (default: the
    /// runtime of the task that makes the request).
    pub fn runtime(mut self, handle: weft::runtime::Handle) -> Builder {
        self.handle = Some(handle);
        self
    }

    /// The client, for `Full<Bytes>` request bodies.
    pub fn build(self) -> Client<Full<Bytes>> {
        self.build_for()
    }

    /// The client, for request bodies of type `B`.
    pub fn build_for<B>(self) -> Client<B>
    where
        B: hyper::body::Body + Send + 'static + Unpin,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let exec = match self.handle.clone() {
            Some(h) => WeftExecutor::on(h),
            None => WeftExecutor::new(),
        };
        let mut b = LegacyClient::builder(exec);
        b.timer(WeftTimer)
            .pool_timer(WeftTimer)
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .http2_only(self.http2_only);
        Client {
            inner: b.build(Connector),
            margin: self.margin,
            header: self.header,
        }
    }
}

/// A pooled HTTP client; see the [module docs](self). Cheap to clone (the
/// clones share the pool).
pub struct Client<B = Full<Bytes>> {
    inner: LegacyClient<Connector, B>,
    margin: Duration,
    header: HeaderName,
}

impl<B> Clone for Client<B> {
    fn clone(&self) -> Self {
        Client {
            inner: self.inner.clone(),
            margin: self.margin,
            header: self.header.clone(),
        }
    }
}

impl<B> fmt::Debug for Client<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("margin", &self.margin)
            .field("header", &self.header)
            .finish()
    }
}

impl Client<Full<Bytes>> {
    /// A client with the defaults, for `Full<Bytes>` bodies.
    pub fn new() -> Client<Full<Bytes>> {
        Builder::default().build()
    }
}

impl Default for Client<Full<Bytes>> {
    fn default() -> Self {
        Client::new()
    }
}

impl Client<Full<Bytes>> {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl<B> Client<B>
where
    B: hyper::body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Sends `req` with the caller's remaining budget in the deadline header
    /// and waits for the response head; see the [module docs](self).
    ///
    /// # Errors
    /// [`Error::BudgetSpent`] (not sent), [`Error::Cancelled`] (the caller's
    /// deadline or cancellation), [`Error::Request`].
    pub async fn request(&self, mut req: Request<B>) -> Result<Response<Incoming>, Error> {
        if let Some(deadline) = weft::cancel::deadline() {
            let value = budget_header(self.margin, deadline, Instant::now())?;
            req.headers_mut().insert(self.header.clone(), value);
        }
        weft::cancel::check().map_err(Error::Cancelled)?;
        let fut = self.inner.request(req);
        until_cancelled(fut)
            .await?
            .map_err(|e| callers_or(e, Error::Request))
    }

    /// A GET of `uri`.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub async fn get(&self, uri: Uri) -> Result<Response<Incoming>, Error>
    where
        B: Default,
    {
        let req = Request::get(uri)
            .body(B::default())
            .expect("a GET with a parsed Uri is a valid request");
        self.request(req).await
    }
}

/// Reads a whole response body, as a weft await point (the caller's
/// deadline or cancellation ends it with [`Error::Cancelled`]).
///
/// # Errors
/// [`Error::Cancelled`], [`Error::Body`].
pub async fn read_body(body: Incoming) -> Result<Bytes, Error> {
    until_cancelled(body.collect())
        .await?
        .map(|c| c.to_bytes())
        .map_err(|e| callers_or(e, Error::Body))
}

/// An error that comes back while the caller's scope is cancelled is the
/// caller's: [`Error::Cancelled`]. The request future is polled before the
/// cancellation, and a connect it runs in the caller's task sees the
/// deadline at the same wake-up and fails with it, which hyper reports as
/// a connect error (the soak saw `client error (Connect)` for a request
/// whose 6 ms budget ran out while connecting).
fn callers_or<E>(error: E, otherwise: impl FnOnce(E) -> Error) -> Error {
    match weft::cancel::check() {
        Err(c) => Error::Cancelled(c),
        Ok(()) => otherwise(error),
    }
}

/// Runs `fut` until it completes or the current scope is cancelled (its
/// deadline included): the await-point rule for futures weft does not own.
async fn until_cancelled<F: Future>(fut: F) -> Result<F::Output, Error> {
    let mut fut = pin!(fut);
    let mut cancelled = pin!(weft::cancel::cancelled());
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        cancelled
            .as_mut()
            .poll(cx)
            .map(|c| Err(Error::Cancelled(c)))
    })
    .await
}

/// Connects to `http://` URIs over weft's TCP (host names through
/// `weft::net::lookup_host`, which does not block a worker).
#[derive(Clone, Copy, Debug, Default)]
pub struct Connector;

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Conn>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(connect(uri))
    }
}

async fn connect(uri: Uri) -> io::Result<Conn> {
    match uri.scheme_str() {
        Some("http") | None => {}
        Some(other) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("weft-hyper's connector speaks http only, not {other}"),
            ))
        }
    }
    let host = uri
        .host()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the URI has no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => weft::net::lookup_host((host, port)).await?.collect(),
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host resolved to no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(Conn(stream));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A client connection: weft's `TcpStream` with hyper-util's `Connection`.
#[derive(Debug)]
pub struct Conn(TcpStream);

impl Conn {
    /// The stream.
    pub fn into_inner(self) -> TcpStream {
        self.0
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// The deadline header's value for a call made at `now` under `deadline`:
/// the remaining budget minus `margin`, in the wire format.
///
/// The value is marked sensitive, so HTTP/2's HPACK never indexes it: it
/// differs on almost every request, and indexing it churned the
/// connection's dynamic table (each new value evicted an older entry, and
/// the encoder compared every request's value with the chain of earlier
/// ones: ≈ 3% of an HTTP/2 client's CPU samples, in `memcmp` and
/// `Header::value_eq`).
fn budget_header(margin: Duration, deadline: Instant, now: Instant) -> Result<HeaderValue, Error> {
    let value = wire::Encoder::new(margin)
        .encode(deadline, now)
        .map_err(|_| Error::BudgetSpent)?;
    let mut value = HeaderValue::from_str(&value).expect("the wire codec writes ASCII");
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod budget_header_tests {
    use super::*;

    #[test]
    fn the_budget_header_is_never_indexed_and_carries_the_budget_minus_the_margin() {
        let now = Instant::now();
        let value = budget_header(
            Duration::from_millis(10),
            now + Duration::from_millis(250),
            now,
        )
        .unwrap();
        assert!(
            value.is_sensitive(),
            "HPACK must not index a per-request value"
        );
        let parsed = wire::parse_timeout(value.to_str().unwrap()).unwrap();
        assert_eq!(parsed, Duration::from_millis(240));
    }

    #[test]
    fn a_budget_the_margin_eats_is_refused() {
        let now = Instant::now();
        let err = budget_header(
            Duration::from_millis(10),
            now + Duration::from_millis(5),
            now,
        )
        .unwrap_err();
        assert!(matches!(err, Error::BudgetSpent));
    }
}
