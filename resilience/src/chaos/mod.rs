//! Chaos: faults, latency and outcomes injected at a rate, to test what the
//! other policies do with them (Polly v8's chaos strategies).
//!
//! * [`FaultChaos`] returns an error instead of calling.
//! * [`LatencyChaos`] waits before calling (on the [`Env`]'s sleep).
//! * [`OutcomeChaos`] returns a made-up outcome instead of calling.
//!
//! Each draws from its own seeded generator ([`ChaosConfig::seed`] for
//! reproducible tests), can be switched on and off and have its rate changed
//! while running (a leaf that "dies" for ten seconds, then comes back), and
//! counts what it injected. A disabled or zero-rate injector costs one
//! relaxed load per call.

use std::{
    fmt,
    future::Future,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use crate::{
    env::{Env, Interrupted},
    rng::Rng,
};

/// Why a chaos setting was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ChaosConfigError {
    /// An injection rate must be in `[0, 1]`.
    Rate(f64),
}

impl fmt::Display for ChaosConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChaosConfigError::Rate(r) => {
                write!(
                    f,
                    "injection rate {r} must be in [0, 1] (0.1 = 10 % of calls)"
                )
            }
        }
    }
}

impl std::error::Error for ChaosConfigError {}

/// When an injector fires: a rate, a switch and a seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChaosConfig {
    rate: f64,
    enabled: bool,
    seed: Option<u64>,
}

impl ChaosConfig {
    /// Injects into `rate` of the calls (in `[0, 1]`), enabled.
    pub fn rate(rate: f64) -> Result<ChaosConfig, ChaosConfigError> {
        check_rate(rate)?;
        Ok(ChaosConfig {
            rate,
            enabled: true,
            seed: None,
        })
    }

    /// Starts disabled (switch on with `set_enabled`).
    pub fn disabled(mut self) -> ChaosConfig {
        self.enabled = false;
        self
    }

    /// Seeds the generator, so a test sees the same injections every run.
    pub fn seed(mut self, seed: u64) -> ChaosConfig {
        self.seed = Some(seed);
        self
    }
}

fn check_rate(rate: f64) -> Result<(), ChaosConfigError> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(ChaosConfigError::Rate(rate))
    }
}

/// The rate, switch and counters every injector shares.
struct Injector {
    rate_bits: AtomicU64,
    enabled: AtomicBool,
    rng: Rng,
    calls: AtomicU64,
    injected: AtomicU64,
}

impl Injector {
    fn new(config: ChaosConfig) -> Injector {
        Injector {
            rate_bits: AtomicU64::new(config.rate.to_bits()),
            enabled: AtomicBool::new(config.enabled),
            rng: Rng::new(config.seed),
            calls: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    #[inline]
    fn fires(&self) -> bool {
        // Relaxed throughout: a switch and statistics; a call that sees the
        // old rate for an instant after a change is fine.
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !self.enabled.load(Ordering::Relaxed) {
            return false;
        }
        let rate = f64::from_bits(self.rate_bits.load(Ordering::Relaxed));
        if rate <= 0.0 || self.rng.next_f64() >= rate {
            return false;
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn metrics(&self) -> ChaosMetrics {
        ChaosMetrics {
            calls: self.calls.load(Ordering::Relaxed),
            injected: self.injected.load(Ordering::Relaxed),
            enabled: self.enabled.load(Ordering::Relaxed),
            rate: f64::from_bits(self.rate_bits.load(Ordering::Relaxed)),
        }
    }
}

/// A snapshot of an injector.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ChaosMetrics {
    /// Calls seen.
    pub calls: u64,
    /// Calls injected into.
    pub injected: u64,
    /// Whether it is switched on.
    pub enabled: bool,
    /// The current rate.
    pub rate: f64,
}

macro_rules! controls {
    () => {
        /// Switches injection on or off.
        pub fn set_enabled(&self, enabled: bool) {
            self.injector.enabled.store(enabled, Ordering::Relaxed);
        }

        /// Changes the rate (in `[0, 1]`).
        pub fn set_rate(&self, rate: f64) -> Result<(), ChaosConfigError> {
            check_rate(rate)?;
            self.injector
                .rate_bits
                .store(rate.to_bits(), Ordering::Relaxed);
            Ok(())
        }

        /// The counters now.
        pub fn metrics(&self) -> ChaosMetrics {
            self.injector.metrics()
        }
    };
}

/// Returns `fault()` as the error instead of calling, at a rate.
pub struct FaultChaos<G> {
    injector: Injector,
    fault: G,
}

impl<G> FaultChaos<G> {
    /// Injects `fault()` (`Fn() -> E`) per `config`.
    pub fn new(config: ChaosConfig, fault: G) -> FaultChaos<G> {
        FaultChaos {
            injector: Injector::new(config),
            fault,
        }
    }

    controls!();

    /// Calls `op`, or returns the injected fault without calling it.
    pub async fn call<F, Fut, T, E>(&self, op: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        G: Fn() -> E,
    {
        if self.injector.fires() {
            return Err((self.fault)());
        }
        op().await
    }
}

/// Waits `latency` before calling, at a rate.
pub struct LatencyChaos {
    injector: Injector,
    latency_nanos: AtomicU64,
}

impl LatencyChaos {
    /// Adds `latency` per `config`.
    pub fn new(config: ChaosConfig, latency: Duration) -> LatencyChaos {
        LatencyChaos {
            injector: Injector::new(config),
            latency_nanos: AtomicU64::new(nanos(latency)),
        }
    }

    controls!();

    /// Changes the injected latency.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_nanos.store(nanos(latency), Ordering::Relaxed);
    }

    /// The injected latency.
    pub fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed))
    }

    /// Calls `op`, first waiting the latency if it fires. `Err` if the
    /// caller is cancelled or runs out of time while waiting (the call is
    /// then not made).
    pub async fn call<En, F, Fut>(&self, env: &En, op: F) -> Result<Fut::Output, Interrupted>
    where
        En: Env,
        F: FnOnce() -> Fut,
        Fut: Future,
    {
        if self.injector.fires() {
            env.sleep(self.latency()).await?;
        }
        Ok(op().await)
    }
}

/// Returns `outcome()` instead of calling, at a rate.
pub struct OutcomeChaos<G> {
    injector: Injector,
    outcome: G,
}

impl<G> OutcomeChaos<G> {
    /// Injects `outcome()` (`Fn() -> Result<T, E>`) per `config`.
    pub fn new(config: ChaosConfig, outcome: G) -> OutcomeChaos<G> {
        OutcomeChaos {
            injector: Injector::new(config),
            outcome,
        }
    }

    controls!();

    /// Calls `op`, or returns the injected outcome without calling it.
    pub async fn call<F, Fut, T, E>(&self, op: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        G: Fn() -> Result<T, E>,
    {
        if self.injector.fires() {
            return (self.outcome)();
        }
        op().await
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<G> fmt::Debug for FaultChaos<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultChaos")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for LatencyChaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyChaos")
            .field("latency", &self.latency())
            .field("metrics", &self.metrics())
            .finish()
    }
}

impl<G> fmt::Debug for OutcomeChaos<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutcomeChaos")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
