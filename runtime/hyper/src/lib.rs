//! hyper 1.x on weft.
//!
//! - [`rt`]: hyper's runtime traits: [`WeftExecutor`] (detached tasks by
//!   default, so no request's deadline reaches a pooled connection) and
//!   [`WeftTimer`] (the timing wheel; `reset` moves a sleep in place). The
//!   io traits are implemented by weft itself on `weft::net::TcpStream` and
//!   `UnixStream` (its `hyper` feature), so hyper drives weft sockets with no
//!   adapter in between.
//! - [`server`]: [`serve`] with graceful shutdown, header-read and idle
//!   timeouts, a body-size limit and a per-request deadline from
//!   `grpc-timeout` that the handler runs under.
//! - [`client`]: a pooled [`Client`] whose requests are weft await points
//!   and carry the caller's remaining budget downstream.
//!
//! docs/HTTP.md in the repository describes the integration and its costs.

#![warn(missing_docs)]

pub mod client;
pub mod rt;
pub mod server;
mod signal;

pub use crate::{
    client::Client,
    rt::{WeftExecutor, WeftTimer},
    server::{serve, Server, ShutdownReport},
};

/// The boxed error hyper and http-body use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
