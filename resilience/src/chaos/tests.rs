use std::{
    cell::Cell,
    pin::pin,
    task::{Context, Poll, Waker},
};

use super::*;
use crate::env::ManualEnv;

fn block<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the future waited"),
    }
}

#[test]
fn faults_are_injected_at_the_rate_without_calling() {
    let chaos = FaultChaos::new(ChaosConfig::rate(0.25).unwrap().seed(7), || "injected");
    let called = Cell::new(0);
    let mut faults = 0;
    for _ in 0..10_000 {
        match block(chaos.call(|| {
            called.set(called.get() + 1);
            async { Ok::<_, &str>(()) }
        })) {
            Err("injected") => faults += 1,
            Ok(()) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert!((2_300..2_700).contains(&faults), "{faults}");
    assert_eq!(
        called.get() + faults,
        10_000,
        "an injected call is not made"
    );
    let m = chaos.metrics();
    assert_eq!((m.calls, m.injected), (10_000, faults as u64));
}

#[test]
fn a_seed_replays_the_same_injections() {
    let run = || {
        let chaos = FaultChaos::new(ChaosConfig::rate(0.5).unwrap().seed(99), || ());
        (0..64)
            .map(|_| block(chaos.call(|| async { Ok::<_, ()>(()) })).is_err())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn switching_off_and_changing_the_rate() {
    let chaos = FaultChaos::new(ChaosConfig::rate(1.0).unwrap().disabled(), || ());
    assert!(block(chaos.call(|| async { Ok::<_, ()>(()) })).is_ok());
    chaos.set_enabled(true);
    assert!(block(chaos.call(|| async { Ok::<_, ()>(()) })).is_err());
    chaos.set_rate(0.0).unwrap();
    assert!(block(chaos.call(|| async { Ok::<_, ()>(()) })).is_ok());
    assert_eq!(chaos.set_rate(1.5), Err(ChaosConfigError::Rate(1.5)));
    assert_eq!(ChaosConfig::rate(-0.1), Err(ChaosConfigError::Rate(-0.1)));
}

#[test]
fn latency_is_waited_before_the_call_and_stops_at_the_deadline() {
    let env = ManualEnv::new();
    let chaos = LatencyChaos::new(ChaosConfig::rate(1.0).unwrap(), Duration::from_millis(300));
    assert_eq!(block(chaos.call(&env, || async { 5 })), Ok(5));
    assert_eq!(env.now(), Duration::from_millis(300));
    env.set_deadline(Some(Duration::from_millis(400)));
    let called = Cell::new(false);
    let out = block(chaos.call(&env, || {
        called.set(true);
        async { 6 }
    }));
    assert_eq!(out, Err(Interrupted::Deadline));
    assert!(!called.get());
    chaos.set_latency(Duration::ZERO);
    assert_eq!(chaos.latency(), Duration::ZERO);
}

#[test]
fn outcomes_replace_the_call() {
    let chaos = OutcomeChaos::new(ChaosConfig::rate(1.0).unwrap(), || Ok::<u16, ()>(503));
    assert_eq!(block(chaos.call(|| async { Ok(200) })), Ok(503));
    chaos.set_enabled(false);
    assert_eq!(block(chaos.call(|| async { Ok(200) })), Ok(200));
    assert_eq!(chaos.metrics().injected, 1);
}
