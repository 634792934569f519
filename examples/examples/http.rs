//! HTTP on weft with a deadline that crosses two hops.
//!
//! Three parts in one process, on one weft runtime:
//! - an *inventory* service (`/stock`) that takes 40 ms per lookup;
//! - a *frontend* service (`/order`) whose handler calls the inventory with
//!   weft-hyper's pooled client;
//! - a client that calls the frontend with a deadline.
//!
//! The client's deadline travels as `grpc-timeout` (minus a 10 ms margin per
//! hop): the frontend's handler runs as a task with that deadline, so its
//! call to the inventory carries what is left of it, and the inventory's
//! handler runs under a deadline shorter still. With a 500 ms budget the
//! order succeeds; with 30 ms the inventory's sleep is cancelled at its
//! deadline, the frontend answers 504 in time, and nothing keeps running.
//! Then both servers shut down gracefully.
//!
//! ```text
//! cargo run --release -p weft-examples --example http
//! ```

use std::{
    error::Error,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::Full;
use weft::net::TcpListener;
use weft_hyper::{client, server::Body, Client, Server};

const HOP_MARGIN: Duration = Duration::from_millis(10);

fn main() {
    if let Err(e) = run() {
        eprintln!("http: {e}");
        std::process::exit(1);
    }
}

fn budget_text() -> String {
    match weft::cancel::remaining() {
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        None => "none".into(),
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let rt = weft::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    rt.block_on(async {
        // Inventory: 40 ms per lookup, cut short by the request's deadline.
        let cancelled_lookups = Arc::new(AtomicUsize::new(0));
        let cancelled = cancelled_lookups.clone();
        let inventory = TcpListener::bind("127.0.0.1:0").await?;
        let inventory_addr = inventory.local_addr()?;
        let (stop_inventory, inventory_stopped) = futures_channel::oneshot::channel::<()>();
        let inventory_task = weft::spawn(async move {
            Server::builder()
                .build()
                .serve(
                    inventory,
                    move |_req: Request<Body>| {
                        let cancelled = cancelled.clone();
                        async move {
                            println!("  inventory: handler budget {}", budget_text());
                            if let Err(c) = weft::time::sleep(Duration::from_millis(40)).await {
                                cancelled.fetch_add(1, SeqCst);
                                println!("  inventory: lookup cancelled ({c})");
                                return Err(c);
                            }
                            Ok(Response::new(Full::new(Bytes::from_static(b"7 in stock"))))
                        }
                    },
                    async {
                        let _ = inventory_stopped.await;
                    },
                )
                .await
        });

        // Frontend: asks the inventory, with what is left of its budget.
        let frontend = TcpListener::bind("127.0.0.1:0").await?;
        let frontend_addr = frontend.local_addr()?;
        let stock_uri: Uri = format!("http://{inventory_addr}/stock").parse()?;
        let downstream = Client::builder().margin(HOP_MARGIN).build();
        let (stop_frontend, frontend_stopped) = futures_channel::oneshot::channel::<()>();
        let frontend_task = weft::spawn(async move {
            Server::builder()
                .build()
                .serve(
                    frontend,
                    move |_req: Request<Body>| {
                        let downstream = downstream.clone();
                        let stock_uri = stock_uri.clone();
                        async move {
                            println!("  frontend: handler budget {}", budget_text());
                            let res = downstream.get(stock_uri).await?;
                            let status = res.status();
                            let body = client::read_body(res.into_body()).await?;
                            let text = if status == StatusCode::OK {
                                format!("order ok: {}", String::from_utf8_lossy(&body))
                            } else {
                                format!("inventory said: {}", String::from_utf8_lossy(&body))
                            };
                            let mut out = Response::new(Full::new(Bytes::from(text)));
                            *out.status_mut() = status;
                            Ok::<_, client::Error>(out)
                        }
                    },
                    async {
                        let _ = frontend_stopped.await;
                    },
                )
                .await
        });

        let order_uri: Uri = format!("http://{frontend_addr}/order").parse()?;
        let client = Client::builder().margin(HOP_MARGIN).build();
        for budget in [Duration::from_millis(500), Duration::from_millis(30)] {
            println!("client: ordering with a {} ms budget", budget.as_millis());
            let started = Instant::now();
            let client = client.clone();
            let uri = order_uri.clone();
            let (status, body) = weft::task::Builder::new()
                .timeout(budget)
                .spawn(async move {
                    let res = client.get(uri).await?;
                    let status = res.status();
                    let body = client::read_body(res.into_body()).await?;
                    Ok::<_, client::Error>((status, body))
                })
                .await??;
            println!(
                "client: {} {:?} after {:.1} ms",
                status,
                String::from_utf8_lossy(&body).trim_end(),
                started.elapsed().as_secs_f64() * 1e3
            );
            let expected = if budget > Duration::from_millis(100) {
                StatusCode::OK
            } else {
                StatusCode::GATEWAY_TIMEOUT
            };
            if status != expected {
                return Err(format!("expected {expected}, got {status}").into());
            }
        }
        // Give the cancelled lookup's log line a moment, then shut down.
        weft::time::sleep(Duration::from_millis(20)).await?;
        drop(stop_frontend);
        let front = frontend_task.await??;
        drop(stop_inventory);
        let inv = inventory_task.await??;
        println!("frontend: {front}");
        println!("inventory: {inv}");
        println!(
            "inventory lookups cancelled by the client's deadline: {}",
            cancelled_lookups.load(SeqCst)
        );
        Ok::<_, Box<dyn Error>>(())
    })?;
    Ok(())
}
