//! The HTTP part shared by the `http` example and the showcase: two services
//! and a client on one weft runtime, where the client's deadline reaches the
//! frontend's handler and the inventory call it makes (see `http.rs`).

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
use weft::{net::TcpListener, sync::oneshot};
use weft_hyper::{client, server::Body, Client, Server};

const HOP_MARGIN: Duration = Duration::from_millis(10);
/// How long the inventory takes per lookup.
const LOOKUP_MS: u64 = 200;
/// The budget that cannot cover a lookup: the frontend gets 70 ms of it and
/// the inventory 60 ms, so its lookup is cancelled at its deadline.
const SHORT_BUDGET_MS: u64 = 80;

fn budget_text() -> String {
    match weft::cancel::remaining() {
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        None => "none".into(),
    }
}

/// Starts the inventory and the frontend, orders with a 500 ms and an 80 ms
/// budget (expecting 200, then 504 in time with the inventory's lookup
/// cancelled), then shuts both servers down gracefully. `Err` when any of
/// that goes otherwise.
pub(crate) async fn two_hops() -> Result<(), Box<dyn Error>> {
    // Inventory: 200 ms per lookup, cut short by the request's deadline.
    let cancelled_lookups = Arc::new(AtomicUsize::new(0));
    let cancelled = cancelled_lookups.clone();
    let inventory = TcpListener::bind("127.0.0.1:0").await?;
    let inventory_addr = inventory.local_addr()?;
    let (stop_inventory, inventory_stopped) = oneshot::channel::<()>();
    let inventory_task = weft::spawn(async move {
        Server::builder()
            .build()
            .serve(
                inventory,
                move |_req: Request<Body>| {
                    let cancelled = cancelled.clone();
                    async move {
                        println!("  inventory: handler budget {}", budget_text());
                        if let Err(c) = weft::time::sleep(Duration::from_millis(LOOKUP_MS)).await {
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
    let (stop_frontend, frontend_stopped) = oneshot::channel::<()>();
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
    for budget in [
        Duration::from_millis(500),
        Duration::from_millis(SHORT_BUDGET_MS),
    ] {
        println!("client: ordering with {} ms of budget", budget.as_millis());
        let started = Instant::now();
        let client = client.clone();
        let uri = order_uri.clone();
        let outcome = weft::task::Builder::new()
            .timeout(budget)
            .spawn(async move {
                let res = client.get(uri).await?;
                let status = res.status();
                let body = client::read_body(res.into_body()).await?;
                Ok::<_, client::Error>((status, body))
            })
            .await?;
        let took = started.elapsed();
        let short = budget < Duration::from_millis(LOOKUP_MS);
        match outcome {
            Ok((status, body)) => {
                println!(
                    "client: {} {:?} after {:.1} ms",
                    status,
                    String::from_utf8_lossy(&body).trim_end(),
                    took.as_secs_f64() * 1e3
                );
                let expected = if short {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::OK
                };
                if status != expected {
                    return Err(format!("expected {expected}, got {status}").into());
                }
            }
            // On a busy machine the client's own deadline (10 ms after the
            // frontend's) can come before the 504 is back: the budget was
            // still honoured.
            Err(client::Error::Cancelled(c)) if short && c.is_deadline() => println!(
                "client: its own deadline came first ({c}) after {:.1} ms",
                took.as_secs_f64() * 1e3
            ),
            Err(e) => return Err(e.into()),
        }
        if took > budget + Duration::from_millis(100) {
            return Err(format!("the {budget:?} order took {took:?}").into());
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
    if cancelled_lookups.load(SeqCst) == 0 {
        return Err("the short order did not cancel the inventory's lookup".into());
    }
    Ok(())
}
