//! Measures this machine's cross-core cache-line handoff: two threads pass
//! a counter back and forth through one atomic and it prints the time per
//! handoff. On the 2-vCPU benchmark VM this alternates between two states,
//! for seconds at a time: ≈ 50–70 ns and ≈ 230–250 ns. Contended
//! workloads (mpsc with several producers) slow down 1.5–2.5× in the slow
//! state, so run it before and after such a bench to know which state the
//! figures came from (docs/BENCHMARKS.md, "mpsc 4→1 and the machine's two
//! states").
//!
//! ```text
//! handoff [HANDOFFS]   (default 2,000,000)
//! ```

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::*},
        Arc,
    },
    time::Instant,
};

/// The counter, alone on its cache line pair.
#[repr(align(128))]
struct Line(AtomicU64);

/// Waits for the counter to reach `turn`, then passes it on.
fn take_turns(line: &Line, first: u64, handoffs: u64) {
    let mut turn = first;
    while turn < handoffs {
        while line.0.load(Acquire) != turn {
            std::hint::spin_loop();
        }
        line.0.store(turn + 1, Release);
        turn += 2;
    }
}

fn main() {
    let handoffs: u64 = std::env::args()
        .nth(1)
        .map_or(2_000_000, |n| n.parse().expect("HANDOFFS is a number"));
    let line = Arc::new(Line(AtomicU64::new(0)));
    let start = Instant::now();
    let peer = {
        let line = line.clone();
        std::thread::spawn(move || take_turns(&line, 1, handoffs))
    };
    take_turns(&line, 0, handoffs);
    peer.join().expect("the peer thread");
    let ns = start.elapsed().as_nanos() as f64 / handoffs as f64;
    println!("{ns:.1} ns/handoff");
}
