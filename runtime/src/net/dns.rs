//! Host name resolution off the workers.
//!
//! `getaddrinfo` blocks, so [`lookup_host`] runs it on the runtime's
//! blocking pool, as tokio does; the wait for it is a weft await point.
//! When the scope is cancelled or its deadline passes, the wait ends with
//! the cancellation and the blocking thread's answer, whenever it comes,
//! is dropped (a running `getaddrinfo` cannot be interrupted). Addresses
//! that are already IP literals resolve at once, on the calling thread.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs},
};

/// What [`lookup_host`] accepts: a `"host:port"` string, a `(host, port)`
/// pair, or addresses that need no lookup. Sealed: weft implements it.
pub trait HostPort: sealed::Sealed {}

mod sealed {
    /// The query a [`HostPort`](super::HostPort) turns into.
    pub trait Sealed {
        #[doc(hidden)]
        fn into_query(self) -> super::Query;
    }
}

/// An owned query, to move to the blocking pool.
#[doc(hidden)]
#[derive(Debug)]
pub enum Query {
    /// Nothing to look up.
    Ready(Vec<SocketAddr>),
    /// `"host:port"`.
    HostPort(String),
    /// A host and a port.
    Host(String, u16),
}

impl Query {
    fn from_host_port(s: &str) -> Query {
        match s.parse::<SocketAddr>() {
            Ok(addr) => Query::Ready(vec![addr]),
            Err(_) => Query::HostPort(s.to_owned()),
        }
    }

    fn from_host(host: &str, port: u16) -> Query {
        match host.parse::<IpAddr>() {
            Ok(ip) => Query::Ready(vec![SocketAddr::new(ip, port)]),
            Err(_) => Query::Host(host.to_owned(), port),
        }
    }
}

macro_rules! host_port {
    ($($ty:ty => |$v:ident| $query:expr;)*) => {
        $(
            impl HostPort for $ty {}
            impl sealed::Sealed for $ty {
                fn into_query(self) -> Query {
                    let $v = self;
                    $query
                }
            }
        )*
    };
}

host_port! {
    &str => |s| Query::from_host_port(s);
    String => |s| Query::from_host_port(&s);
    &String => |s| Query::from_host_port(s);
    (&str, u16) => |p| Query::from_host(p.0, p.1);
    (String, u16) => |p| Query::from_host(&p.0, p.1);
    (IpAddr, u16) => |p| Query::Ready(vec![SocketAddr::new(p.0, p.1)]);
    (Ipv4Addr, u16) => |p| Query::Ready(vec![SocketAddr::new(p.0.into(), p.1)]);
    (Ipv6Addr, u16) => |p| Query::Ready(vec![SocketAddr::new(p.0.into(), p.1)]);
    SocketAddr => |a| Query::Ready(vec![a]);
    SocketAddrV4 => |a| Query::Ready(vec![a.into()]);
    SocketAddrV6 => |a| Query::Ready(vec![a.into()]);
}

/// Resolves `host` to its socket addresses on the blocking pool.
///
/// ```no_run
/// # weft::Runtime::new().unwrap().block_on(async {
/// for addr in weft::net::lookup_host("localhost:80").await? {
///     println!("{addr}");
/// }
/// # Ok::<_, std::io::Error>(())
/// # }).unwrap();
/// ```
///
/// An await point: in a cancelled scope, or once its deadline passes, it
/// returns an `io::Error` of kind `TimedOut` (deadline) or `Interrupted`
/// whose inner error is the [`Cancelled`](crate::cancel::Cancelled),
/// without waiting for the lookup. A name that does not resolve gives the
/// resolver's error.
///
/// # Panics
/// Outside a weft runtime.
pub async fn lookup_host(host: impl HostPort) -> io::Result<impl Iterator<Item = SocketAddr>> {
    let addrs = match sealed::Sealed::into_query(host) {
        Query::Ready(addrs) => {
            // No lookup, but still an await point, as every other.
            crate::cancel::check().map_err(io::Error::from)?;
            addrs
        }
        query => {
            let lookup = crate::spawn_blocking(move || -> io::Result<Vec<SocketAddr>> {
                Ok(match query {
                    Query::HostPort(s) => s.to_socket_addrs()?.collect(),
                    Query::Host(h, port) => (h.as_str(), port).to_socket_addrs()?.collect(),
                    Query::Ready(addrs) => addrs,
                })
            });
            match lookup.await {
                Ok(res) => res?,
                Err(e) => match e.interrupted() {
                    Some(c) => return Err(c.clone().into()),
                    None => return Err(io::Error::other(format!("the lookup failed: {e}"))),
                },
            }
        }
    };
    Ok(addrs.into_iter())
}
