//! A line-protocol key-value server built from weft and std alone: shared
//! state on `weft::sync`, framing with `weft::io::BufReader`, an idle
//! deadline per connection, and a graceful shutdown on SIGTERM that lets
//! the requests in flight finish and cancels what is left after a grace
//! period, through the cancellation tree.
//!
//! ```sh
//! cargo run --release --example kv             # the server plus a demo client load, then SIGTERM to itself
//! cargo run --release --example kv -- --serve  # only the server, until SIGTERM or Ctrl-C
//! ```
//!
//! The protocol, one request per line: `SET key value`, `GET key`,
//! `DEL key`, `COUNT`, `SLOW millis` (a request that takes a while, to see
//! a shutdown let it finish), `QUIT`. Replies: `OK`, `VALUE v`, `NONE`,
//! `COUNT n`, `ERR why`, and `BYE` when the server closes the connection.

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use weft::{
    cancel::TaskGroup,
    io::{BufReader, BufWriter},
    net::{TcpListener, TcpStream},
    signal::unix::{signal, SignalKind},
    sync::{watch, RwLock},
    time::{sleep, timeout},
};

/// The shared state: readers share the lock, writers take it alone.
type Db = Arc<RwLock<HashMap<String, String>>>;

/// How a connection ended.
#[derive(Debug, PartialEq)]
enum End {
    /// The client closed or said QUIT.
    Client,
    /// The client sent nothing for the idle deadline.
    Idle,
    /// The server was shutting down; the connection's last request had
    /// finished.
    Shutdown,
}

struct Config {
    idle: Duration,
    grace: Duration,
}

#[weft::main(worker_threads = 2)]
async fn main() -> io::Result<()> {
    let serve_only = std::env::args().any(|a| a == "--serve");
    let config = Config {
        idle: Duration::from_millis(if serve_only { 30_000 } else { 300 }),
        grace: Duration::from_millis(if serve_only { 5_000 } else { 250 }),
    };
    let addr: SocketAddr = if serve_only {
        "127.0.0.1:7070".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    };
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("kv: listening on {addr} (idle deadline {:?})", config.idle);

    // SIGTERM (and Ctrl-C) start the shutdown; install both before any
    // client could send one.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    let demo = if serve_only {
        None
    } else {
        Some(weft::task::Builder::new().detached().spawn(demo(addr)))
    };

    let db: Db = Arc::default();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut group: TaskGroup<io::Result<End>> = TaskGroup::new().reap_finished();
    let served = AtomicUsize::new(0);
    loop {
        weft::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    served.fetch_add(1, Relaxed);
                    group.spawn(connection(stream, db.clone(), shutdown_rx.clone(), config.idle));
                }
                // A full fd table or a reset in the backlog: keep serving.
                Err(e) => eprintln!("kv: accept failed: {e}"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    // 1. Stop accepting: the port is free once the listener is dropped.
    drop(listener);
    // 2. Tell the connections: idle ones close now, busy ones after their
    //    current request.
    let in_flight = group.len();
    let _ = shutdown_tx.send(true);
    println!(
        "kv: shutting down, {in_flight} connection(s) open, grace {:?}",
        config.grace
    );
    // 3. Wait for them within the grace period. The drain task's deadline
    //    reaches the group's join: at the deadline the group cancels the
    //    connections still running (every await in them returns the
    //    cancellation) and still collects every result.
    let drain = weft::task::Builder::new()
        .timeout(config.grace)
        .spawn(async move { group.join_all().await })
        .await
        .expect("the drain task does not panic");
    let mut ends: HashMap<String, usize> = HashMap::new();
    let mut cut = 0;
    for res in drain {
        match res {
            Ok(Ok(end)) => *ends.entry(format!("{end:?}")).or_default() += 1,
            Ok(Err(e)) if cancelled(&e) => cut += 1,
            Ok(Err(e)) => *ends.entry(format!("error: {}", e.kind())).or_default() += 1,
            Err(join) if join.is_cancelled() => cut += 1,
            Err(join) => *ends.entry(format!("join error: {join}")).or_default() += 1,
        }
    }
    println!(
        "kv: served {} connection(s); at shutdown {in_flight} were open: {ends:?} after finishing, {cut} cut at the grace deadline",
        served.load(Relaxed)
    );
    println!(
        "kv: {} key(s) stored",
        db.read().await.map(|m| m.len()).unwrap_or(0)
    );

    if let Some(demo) = demo {
        demo.await.expect("the demo client does not panic")?;
        // The port is closed: a new client is refused.
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                println!("kv: after shutdown, a new connection is refused")
            }
            other => panic!("expected a refused connection after shutdown, got {other:?}"),
        }
    }
    Ok(())
}

/// True if `e` is a weft cancellation (an explicit cancel or a deadline).
fn cancelled(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<weft::cancel::Cancelled>())
        || e.kind() == io::ErrorKind::TimedOut
}

/// Serves one connection until the client leaves, it idles past `idle`,
/// or the server shuts down.
async fn connection(
    stream: TcpStream,
    db: Db,
    mut shutdown: watch::Receiver<bool>,
    idle: Duration,
) -> io::Result<End> {
    let (rd, wr) = stream.into_split();
    let mut reader = BufReader::new(rd);
    let mut writer = BufWriter::new(wr);
    loop {
        if *shutdown.borrow() {
            writer.write_all(b"BYE shutting down\n").await?;
            writer.flush().await?;
            return Ok(End::Shutdown);
        }
        let line = weft::select! {
            line = timeout(idle, reader.next_line()) => line,
            // A closed sender is a shutdown too; the loop's check replies.
            _ = shutdown.changed() => continue,
        };
        let line = match line {
            Err(_elapsed) => {
                writer.write_all(b"ERR idle timeout\n").await?;
                writer.flush().await?;
                return Ok(End::Idle);
            }
            Ok(Ok(None)) => return Ok(End::Client),
            Ok(Ok(Some(line))) => line,
            Ok(Err(e)) => return Err(e),
        };
        if line.trim() == "QUIT" {
            writer.write_all(b"BYE\n").await?;
            writer.flush().await?;
            return Ok(End::Client);
        }
        let reply = request(&db, &line).await?;
        writer.write_all(reply.as_bytes()).await?;
        writer.write_all(b"\n").await?;
        writer.flush().await?;
    }
}

/// Answers one request. The lock waits and the sleep are weft await
/// points: a cancelled connection leaves them with an error.
async fn request(db: &Db, line: &str) -> io::Result<String> {
    let mut words = line.split_whitespace();
    let reply = match (words.next(), words.next(), words.next()) {
        (Some("SET"), Some(key), Some(_)) => {
            let value = line
                .splitn(3, char::is_whitespace)
                .nth(2)
                .unwrap_or("")
                .trim();
            db.write().await?.insert(key.to_owned(), value.to_owned());
            "OK".to_owned()
        }
        (Some("GET"), Some(key), None) => match db.read().await?.get(key) {
            Some(v) => format!("VALUE {v}"),
            None => "NONE".to_owned(),
        },
        (Some("DEL"), Some(key), None) => match db.write().await?.remove(key) {
            Some(_) => "OK".to_owned(),
            None => "NONE".to_owned(),
        },
        (Some("COUNT"), None, None) => format!("COUNT {}", db.read().await?.len()),
        (Some("SLOW"), Some(ms), None) => match ms.parse::<u64>() {
            Ok(ms) if ms <= 10_000 => {
                sleep(Duration::from_millis(ms)).await?;
                "OK".to_owned()
            }
            _ => "ERR SLOW takes 0..=10000 milliseconds".to_owned(),
        },
        _ => format!("ERR unknown request {:?}", line.trim()),
    };
    Ok(reply)
}

/// A client connection with its reader and writer.
struct Client {
    reader: BufReader<weft::net::OwnedReadHalf>,
    writer: BufWriter<weft::net::OwnedWriteHalf>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> io::Result<Client> {
        let (rd, wr) = TcpStream::connect(addr).await?.into_split();
        Ok(Client {
            reader: BufReader::new(rd),
            writer: BufWriter::new(wr),
        })
    }

    async fn send(&mut self, line: &str) -> io::Result<()> {
        self.writer.write_all(line.as_bytes()).await?;
        self.writer.write_all(b"\n").await?;
        self.writer.flush().await
    }

    async fn reply(&mut self) -> io::Result<String> {
        self.reader
            .next_line()
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "server closed"))
    }

    async fn call(&mut self, line: &str) -> io::Result<String> {
        self.send(line).await?;
        self.reply().await
    }
}

fn expect(got: String, want: &str) -> io::Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(io::Error::other(format!("expected {want:?}, got {got:?}")))
    }
}

/// The demo load: clients that write and read back, one that idles, and
/// requests in flight when SIGTERM arrives.
async fn demo(addr: SocketAddr) -> io::Result<()> {
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 500;
    let start = Instant::now();
    let mut clients = TaskGroup::new();
    for c in 0..CLIENTS {
        clients.spawn(async move {
            let mut client = Client::connect(addr).await?;
            for i in 0..ROUNDS {
                expect(
                    client.call(&format!("SET c{c}-k{i} value {i}")).await?,
                    "OK",
                )?;
                expect(
                    client.call(&format!("GET c{c}-k{i}")).await?,
                    &format!("VALUE value {i}"),
                )?;
            }
            expect(client.call(&format!("DEL c{c}-k0")).await?, "OK")?;
            expect(client.call(&format!("GET c{c}-k0")).await?, "NONE")?;
            expect(client.call("QUIT").await?, "BYE")?;
            io::Result::Ok(())
        });
    }
    for res in clients.join_all().await {
        res.map_err(io::Error::other)??;
    }
    let elapsed = start.elapsed();
    println!(
        "demo: {CLIENTS} clients × {} requests in {elapsed:.2?} ({:.0} req/s)",
        2 * ROUNDS + 3,
        (CLIENTS * (2 * ROUNDS + 3)) as f64 / elapsed.as_secs_f64()
    );

    // An idle connection is closed at its deadline.
    let mut idle = Client::connect(addr).await?;
    let waited = Instant::now();
    expect(idle.reply().await?, "ERR idle timeout")?;
    println!(
        "demo: an idle client was closed after {:.0?}",
        waited.elapsed()
    );

    // Bad input gets a clear error, and the connection stays usable.
    let mut client = Client::connect(addr).await?;
    let reply = client.call("FLY away").await?;
    println!("demo: `FLY away` -> {reply}");
    expect(
        client.call("COUNT").await?,
        &format!("COUNT {}", CLIENTS * (ROUNDS - 1)),
    )?;

    // SIGTERM with two requests in flight: a short one that finishes within
    // the grace period, and one too long for it, which is cancelled through
    // the tree at the grace deadline (its sleep returns the cancellation,
    // the connection task ends, the client sees the stream end).
    let mut slow = Client::connect(addr).await?;
    slow.send("SLOW 150").await?;
    let mut stuck = Client::connect(addr).await?;
    stuck.send("SLOW 5000").await?;
    sleep(Duration::from_millis(30))
        .await
        .map_err(io::Error::from)?;
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    assert!(status.success(), "kill -TERM failed");
    println!("demo: sent SIGTERM with two requests in flight");
    expect(client.reply().await?, "BYE shutting down")?;
    expect(slow.reply().await?, "OK")?;
    expect(slow.reply().await?, "BYE shutting down")?;
    match stuck.reply().await {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
        other => {
            return Err(io::Error::other(format!(
                "expected the stuck request cut, got {other:?}"
            )))
        }
    }
    println!("demo: the idle connection got BYE, the short request finished then got BYE, the long one was cut");
    Ok(())
}
