//! The mesh's framed protocol: a 4-byte big-endian length, then a UTF-8
//! payload of `|`-separated fields.
//!
//! ```text
//! request:  id | grpc-timeout | key | hops       (hops: how the budget travelled)
//! response: id | status | body | trace
//! ```
//!
//! One request is in flight per connection at a time; the client keeps idle
//! connections in a small pool and drops a connection whose call was
//! cancelled (its state is unknown), so a cancelled call closes its socket.

use std::{io, net::SocketAddr, sync::Mutex};

use weft::net::TcpStream;

/// The largest frame accepted.
const MAX_FRAME: usize = 64 * 1024;

/// A request travelling down the mesh.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: u64,
    /// The caller's remaining budget, as `grpc-timeout` (empty: none).
    pub timeout: String,
    pub key: u32,
}

/// How a hop answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// A fallback answered: the leaf was unreachable.
    Degraded,
    Error,
    DeadlineExceeded,
    Unavailable,
}

impl Status {
    fn code(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Error => "error",
            Status::DeadlineExceeded => "deadline",
            Status::Unavailable => "unavailable",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "ok" => Status::Ok,
            "degraded" => Status::Degraded,
            "error" => Status::Error,
            "deadline" => Status::DeadlineExceeded,
            "unavailable" => Status::Unavailable,
            _ => return None,
        })
    }
}

/// A response travelling back up.
#[derive(Debug, Clone)]
pub struct Response {
    pub id: u64,
    pub status: Status,
    pub body: String,
    /// One record per hop, outermost first (`;`-separated).
    pub trace: String,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        frame(&format!("{}|{}|{}", self.id, self.timeout, self.key))
    }

    pub fn decode(payload: &str) -> io::Result<Request> {
        let mut f = payload.split('|');
        let (Some(id), Some(timeout), Some(key)) = (f.next(), f.next(), f.next()) else {
            return Err(bad("short request"));
        };
        Ok(Request {
            id: id.parse().map_err(|_| bad("request id"))?,
            timeout: timeout.to_string(),
            key: key.parse().map_err(|_| bad("request key"))?,
        })
    }
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        frame(&format!(
            "{}|{}|{}|{}",
            self.id,
            self.status.code(),
            self.body,
            self.trace
        ))
    }

    pub fn decode(payload: &str) -> io::Result<Response> {
        let mut f = payload.splitn(4, '|');
        let (Some(id), Some(status), Some(body), Some(trace)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            return Err(bad("short response"));
        };
        Ok(Response {
            id: id.parse().map_err(|_| bad("response id"))?,
            status: Status::parse(status).ok_or_else(|| bad("status"))?,
            body: body.to_string(),
            trace: trace.to_string(),
        })
    }
}

fn frame(payload: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload.as_bytes());
    out
}

/// A connection with its read buffer.
pub struct Conn {
    stream: TcpStream,
    acc: Vec<u8>,
    scratch: Option<Vec<u8>>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            acc: Vec::new(),
            scratch: Some(Vec::with_capacity(4096)),
        }
    }

    pub async fn send(&self, frame: Vec<u8>) -> io::Result<()> {
        let (res, _) = self.stream.write_all(frame).await;
        res
    }

    /// The next frame's payload; `None` at a clean end of stream.
    pub async fn next(&mut self) -> io::Result<Option<String>> {
        loop {
            if self.acc.len() >= 4 {
                let len = u32::from_be_bytes(self.acc[..4].try_into().unwrap()) as usize;
                if len > MAX_FRAME {
                    return Err(bad("frame too large"));
                }
                if self.acc.len() >= 4 + len {
                    let payload = String::from_utf8(self.acc[4..4 + len].to_vec())
                        .map_err(|_| bad("frame is not UTF-8"))?;
                    self.acc.drain(..4 + len);
                    return Ok(Some(payload));
                }
            }
            let mut buf = self.scratch.take().unwrap_or_default();
            buf.clear();
            let (res, buf) = self.stream.read(buf).await;
            let n = res?;
            self.acc.extend_from_slice(&buf[..n]);
            self.scratch = Some(buf);
            if n == 0 {
                return if self.acc.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }
}

/// A client to one address: a pool of idle connections.
pub struct Client {
    addr: SocketAddr,
    idle: Mutex<Vec<Conn>>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// One request, one response. A call that fails or is dropped midway
    /// closes its connection. A pooled connection that turns out dead (the
    /// peer restarted) empties the pool and the request goes once more on
    /// a fresh connection, as HTTP clients do.
    pub async fn call(&self, req: &Request) -> io::Result<Response> {
        let pooled = self.idle.lock().unwrap().pop();
        let (mut conn, resp) = match pooled {
            Some(conn) => match Self::exchange(conn, req).await {
                Ok(done) => done,
                Err(_) => {
                    self.idle.lock().unwrap().clear();
                    Self::exchange(self.connect().await?, req).await?
                }
            },
            None => Self::exchange(self.connect().await?, req).await?,
        };
        conn.acc.clear();
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < 64 {
            idle.push(conn);
        }
        Ok(resp)
    }

    async fn connect(&self) -> io::Result<Conn> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn::new(stream))
    }

    async fn exchange(mut conn: Conn, req: &Request) -> io::Result<(Conn, Response)> {
        conn.send(req.encode()).await?;
        let payload = conn.next().await?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let resp = Response::decode(&payload)?;
        if resp.id != req.id {
            return Err(bad("response to another request"));
        }
        Ok((conn, resp))
    }
}
