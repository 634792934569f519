//! Where a request's budget goes, hop by hop.
//!
//! Starts the showcase's mesh (edge → middle → leaf on loopback, see
//! `mesh/mod.rs`) and sends a few requests, each with a deadline carried as
//! `grpc-timeout`. Every hop parses the budget it received, runs under it
//! (a weft scope with that deadline), forwards what is *left* to the next
//! hop on each attempt, and reports in the response: the budget it got,
//! when and with how much it called onward, and when it answered.
//!
//! Run with `cargo run --release --example deadline_chain`.

#[path = "mesh/mod.rs"]
mod mesh;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use mesh::{
    ms,
    wire::{Client, Request},
    Mesh,
};
use weft::{cancel::wire::Encoder, runtime::Builder, time};

async fn send(client: &Client, id: u64, budget: Duration, title: &str) {
    println!("\n{title}");
    let timeout = Encoder::new(mesh::MARGIN)
        .encode_remaining(budget)
        .expect("a budget above the margin");
    println!(
        "  client: waits {:.1} ms, sends grpc-timeout {timeout} (3 ms margin)",
        ms(budget)
    );
    let start = Instant::now();
    let req = Request {
        id,
        timeout,
        key: id as u32,
    };
    match time::timeout(budget, client.call(&req)).await {
        Ok(Ok(resp)) => {
            for hop in resp.trace.split(';').filter(|h| !h.is_empty()) {
                println!("  {hop}");
            }
            println!(
                "  client: {:?} after {:.1} ms ({})",
                resp.status,
                ms(start.elapsed()),
                resp.body
            );
        }
        Ok(Err(e)) => println!(
            "  client: transport error {e} after {:.1} ms",
            ms(start.elapsed())
        ),
        Err(_) => println!(
            "  client: own deadline passed after {:.1} ms, no answer",
            ms(start.elapsed())
        ),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Builder::new_multi_thread().worker_threads(2).build()?;
    rt.block_on(async {
        let mesh = Arc::new(Mesh::start().await.expect("the mesh starts"));
        let client = Client::new(mesh.edge_addr);
        // Warm up: open the pooled connections and give the middle's
        // latency histogram its first samples, so request 1 is a steady one.
        for id in 1000..1050 {
            let req = Request {
                id,
                timeout: Encoder::new(mesh::MARGIN)
                    .encode_remaining(Duration::from_secs(1))
                    .expect("a budget above the margin"),
                key: id as u32,
            };
            let _ = client.call(&req).await;
        }
        println!("deadline chain: client → edge → middle → leaf; each hop: budget received, calls onward @offset:budget sent, answer time");

        send(&client, 1, Duration::from_millis(100), "1. healthy, 100 ms budget").await;

        mesh.leaf.spikes.set_rate(1.0).expect("a valid rate");
        mesh.leaf.spikes.set_enabled(true);
        send(
            &client,
            2,
            Duration::from_millis(35),
            "2. every leaf call +40 ms, 35 ms budget: the middle hedges at 20 ms with what is left; the leaf's deadline ends both",
        )
        .await;
        mesh.leaf.spikes.set_enabled(false);

        mesh.leaf.faults.set_rate(1.0).expect("a valid rate");
        mesh.leaf.faults.set_enabled(true);
        send(
            &client,
            3,
            Duration::from_millis(100),
            "3. the leaf fails every call: the middle hedges at once; the edge retries (full-jitter backoff), each retry forwarding what is left",
        )
        .await;
        mesh.leaf.faults.set_enabled(false);

        mesh.leaf.kill().await;
        send(
            &client,
            4,
            Duration::from_millis(100),
            "4. the leaf is dead: connection refused, the middle answers from its fallback",
        )
        .await;
        mesh.leaf.start().await.expect("the leaf comes back");

        send(
            &client,
            5,
            Duration::from_millis(5),
            "5. a 5 ms budget: the edge gets 2 ms, below its expected attempt time (5 ms), so it does not call onward at all",
        )
        .await;
    });
    Ok(())
}
