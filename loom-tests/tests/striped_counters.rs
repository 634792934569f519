#![cfg(weft_loom)]
//! loom model of the striped statistics counters (`weft_resilience`'s
//! `striped` module), through a retry policy's metrics: threads that own a
//! row bump it with a plain load and store, the others share the last row
//! by `fetch_add`, and a snapshot after the threads are joined counts every
//! call exactly once.
//!
//! Run: `RUSTFLAGS="--cfg weft_loom -C debug-assertions"
//! LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target-loom cargo test -p
//! loom-tests --release --test striped_counters`

use std::future::ready;

use loom::{future::block_on, sync::Arc, thread};
use weft_resilience::{
    env::ManualEnv,
    retry::{Retry, RetryConfig},
};

#[test]
fn owned_and_shared_rows_count_every_call_once() {
    loom::model(|| {
        // Two owned rows under loom: the main thread and the first spawned
        // thread to count take them; the other two share the last row.
        let retry = Arc::new(Retry::new(
            RetryConfig::builder()
                .max_attempts(1)
                .build()
                .expect("valid"),
        ));
        let call = |retry: &Retry| {
            let env = ManualEnv::new();
            block_on(retry.call(&env, |_| ready(Ok::<u32, ()>(1)))).expect("ok");
        };
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let retry = Arc::clone(&retry);
                thread::spawn(move || call(&retry))
            })
            .collect();
        call(&retry);
        for t in threads {
            t.join().expect("thread");
        }
        let m = retry.metrics();
        assert_eq!(m.calls, 4, "every call counted once");
        assert_eq!(m.attempts, 4);
    });
}
