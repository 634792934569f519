//! TCP, UDP and Unix sockets on the worker's io driver (io_uring or epoll,
//! see [`io::Driver`](crate::io::Driver)), with owned buffers; a
//! [`TcpSocket`] builder for socket options; [`lookup_host`] for DNS off
//! the workers.
//!
//! ```no_run
//! # weft::Runtime::new().unwrap().block_on(async {
//! use weft::net::{TcpListener, TcpStream};
//!
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! weft::spawn(async move {
//!     let (conn, _) = listener.accept().await?;
//!     let mut buf = vec![0u8; 4096];
//!     loop {
//!         let (n, b) = conn.read(buf).await;
//!         let n = n?;
//!         if n == 0 {
//!             return Ok::<_, std::io::Error>(());
//!         }
//!         let (res, b) = conn.write_all(b[..n].to_vec()).await;
//!         res?;
//!         buf = b;
//!         buf.resize(4096, 0);
//!     }
//! });
//! let client = TcpStream::connect(addr).await?;
//! let (res, _) = client.write_all(&b"ping"[..]).await;
//! res?;
//! # Ok::<_, std::io::Error>(())
//! # }).unwrap();
//! ```
//!
//! Every operation is an await point of the task's scope: once the scope is
//! cancelled it returns an `io::Error` of kind `TimedOut` (deadline) or
//! `Interrupted` (other causes) whose inner error is the
//! [`Cancelled`](crate::cancel::Cancelled). Under io_uring an operation in a
//! task with a deadline is linked to a kernel `LINK_TIMEOUT`.

/// The owned-buffer traits, for code generic over streams (such as
/// `weft::io::BufReader`): each forwards to the type's own method.
macro_rules! owned_io {
    (read: $($read:ty),*; write: $($write:ty),*) => {
        $(
            impl crate::io::AsyncReadOwned for $read {
                fn read<B: crate::io::IoBufMut>(
                    &mut self,
                    buf: B,
                ) -> impl std::future::Future<Output = (std::io::Result<usize>, B)> + Send {
                    self.sock.recv(buf)
                }
            }
        )*
        $(
            impl crate::io::AsyncWriteOwned for $write {
                fn write<B: crate::io::IoBuf>(
                    &mut self,
                    buf: B,
                ) -> impl std::future::Future<Output = (std::io::Result<usize>, B)> + Send {
                    crate::net::compat::send(crate::net::compat::WriteParts::write_parts(&*self), buf)
                }
            }
        )*
    };
}

/// `compat::WriteParts` for a stream (its compat write state in `write`)
/// and its owned and borrowed write halves (in `compat`), in `tcp.rs` and
/// `unix/stream.rs`.
macro_rules! write_parts {
    ($stream:ty, $owned:ty, $borrowed:ty) => {
        impl WriteParts for $stream {
            fn write_parts(&self) -> (&Arc<Socket>, &WriteCompat) {
                (&self.sock, &self.write)
            }
        }

        impl WriteParts for $owned {
            fn write_parts(&self) -> (&Arc<Socket>, &WriteCompat) {
                (&self.sock, &self.compat)
            }
        }

        impl WriteParts for $borrowed {
            fn write_parts(&self) -> (&Arc<Socket>, &WriteCompat) {
                (self.sock, self.compat)
            }
        }
    };
}

mod addr;
mod compat;
mod dns;
mod op;
mod recv_stream;
mod socket;
mod sys;
mod tcp;
mod udp;
pub mod unix;

pub use self::{
    dns::{lookup_host, HostPort},
    recv_stream::RecvStream,
    socket::TcpSocket,
    tcp::{
        OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, TcpListener, TcpStream, WriteHalf,
    },
    udp::UdpSocket,
    unix::{UnixDatagram, UnixListener, UnixStream},
};
