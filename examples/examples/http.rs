//! HTTP on weft with a deadline that crosses two hops.
//!
//! Three parts in one process, on one weft runtime:
//! - an *inventory* service (`/stock`) that takes 200 ms per lookup;
//! - a *frontend* service (`/order`) whose handler calls the inventory with
//!   weft-hyper's pooled client;
//! - a client that calls the frontend with a deadline.
//!
//! The client's deadline travels as `grpc-timeout` (minus a 10 ms margin per
//! hop): the frontend's handler runs as a task with that deadline, so its
//! call to the inventory carries what is left of it, and the inventory's
//! handler runs under a deadline shorter still. With a 500 ms budget the
//! order succeeds; with 80 ms the inventory's sleep is cancelled at its
//! deadline, the frontend answers 504 in time, and nothing keeps running.
//! Then both servers shut down gracefully.
//!
//! ```text
//! cargo run --release -p weft-examples --example http
//! ```

#[path = "two_hops/mod.rs"]
mod two_hops;

fn main() {
    let rt = match weft::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("http: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(two_hops::two_hops()) {
        eprintln!("http: {e}");
        std::process::exit(1);
    }
}
