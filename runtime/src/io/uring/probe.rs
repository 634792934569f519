//! What the kernel offers, found out once at start-up ([`probe`]), and a
//! ring built with the best setup flags it accepts ([`build_ring`]).
//!
//! The probe refuses io_uring (the runtime falls back to epoll, or fails
//! when io_uring was asked for) unless every opcode the driver uses and
//! `EXT_ARG` are there; optional features (`MSG_RING`, the setup flags,
//! `RECVSEND_POLL_FIRST`, multishot receive) are recorded in [`Features`].

use std::{
    io,
    sync::atomic::{AtomicBool, Ordering::Relaxed},
};

use io_uring::{opcode, IoUring, Probe};

/// Receives skip the first, usually futile, attempt and arm their poll at
/// once (`IORING_RECVSEND_POLL_FIRST`): in request/response traffic the
/// next request is rarely there when the read is submitted.
static RECV_POLL_FIRST: AtomicBool = AtomicBool::new(false);

/// The `ioprio` flags for a receive.
pub(crate) fn recv_ioprio() -> u16 {
    if RECV_POLL_FIRST.load(Relaxed) {
        1 // IORING_RECVSEND_POLL_FIRST
    } else {
        0
    }
}

/// What the kernel offers, found out once at start-up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Features {
    pub(super) msg_ring: bool,
    pub(super) flags: SetupFlags,
    /// Multishot receive with a provided buffer ring works here (see
    /// `buf_ring::probe_recv_multishot`).
    pub(super) recv_multishot: bool,
}

impl Features {
    /// The same, with rings any thread may submit to: `COOP_TASKRUN`
    /// where `SINGLE_ISSUER` + `DEFER_TASKRUN` were found (the kernel
    /// that has those has it too, 5.19 < 6.1).
    pub(crate) fn without_single_issuer(self) -> Features {
        Features {
            flags: match self.flags {
                SetupFlags::SingleIssuerDeferTaskrun => SetupFlags::CoopTaskrun,
                other => other,
            },
            ..self
        }
    }
}

/// The ring setup flags the kernel accepts, best first: the probe takes
/// the first a test ring builds with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SetupFlags {
    SingleIssuerDeferTaskrun,
    CoopTaskrun,
    Plain,
}

/// Probes io_uring: it must exist, not be refused (seccomp, sysctl), and
/// support every opcode the driver uses.
pub(crate) fn probe() -> io::Result<Features> {
    let ring: IoUring = IoUring::builder().build(8)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    let needed = [
        (opcode::Recv::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::Accept::CODE, "ACCEPT"),
        (opcode::Connect::CODE, "CONNECT"),
        (opcode::RecvMsg::CODE, "RECVMSG"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::Read::CODE, "READ"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::LinkTimeout::CODE, "LINK_TIMEOUT"),
    ];
    for (code, name) in needed {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring lacks IORING_OP_{name}"),
            ));
        }
    }
    if !ring.params().is_feature_ext_arg() {
        // Waiting with a timeout (the next timer) needs EXT_ARG (5.11).
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring lacks IORING_FEAT_EXT_ARG",
        ));
    }
    let msg_ring = probe.is_supported(opcode::MsgRingData::CODE)
        && std::env::var_os("WEFT_IO_WAKE").is_none_or(|v| v != "eventfd");
    // IORING_RECVSEND_POLL_FIRST (5.19) has no feature bit of its own;
    // RECVSEND_BUNDLE (6.10) implies it.
    RECV_POLL_FIRST.store(ring.params().is_feature_recvsend_bundle(), Relaxed);
    drop(ring);
    // `WEFT_IO_RING_FLAGS` (`defer`, `coop`, `plain`) caps the flags tried,
    // for measurements: the probe still falls back below it.
    let from = match std::env::var("WEFT_IO_RING_FLAGS").as_deref() {
        Ok("coop") => 1,
        Ok("plain") => 2,
        _ => 0,
    };
    let flags = [
        SetupFlags::SingleIssuerDeferTaskrun,
        SetupFlags::CoopTaskrun,
        SetupFlags::Plain,
    ]
    .into_iter()
    .skip(from)
    .find(|f| build_ring(*f, 8).is_ok())
    .unwrap_or(SetupFlags::Plain);
    let recv_multishot = crate::io::buf_ring::probe_recv_multishot();
    Ok(Features {
        msg_ring,
        flags,
        recv_multishot,
    })
}

pub(super) fn build_ring(flags: SetupFlags, entries: u32) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    // Created here, enabled on the worker thread: with SINGLE_ISSUER the
    // thread that enables the ring becomes its only submitter.
    builder.setup_r_disabled();
    match flags {
        SetupFlags::SingleIssuerDeferTaskrun => {
            // TASKRUN_FLAG (5.19) predates DEFER_TASKRUN (6.1): it tells
            // a non-blocking poll whether there is task work to run.
            builder
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag();
        }
        SetupFlags::CoopTaskrun => {
            // Both 5.19: the flag tells a non-blocking poll whether the
            // kernel holds completions for an enter to post.
            builder.setup_coop_taskrun().setup_taskrun_flag();
        }
        SetupFlags::Plain => {}
    }
    // The kernel caps the completion queue at 65536 entries.
    builder
        .setup_cqsize(entries.saturating_mul(4).min(65536))
        .build(entries)
}
