//! The one allocation behind every task: header, core (scheduler + future or
//! output) and trailer (join waker), laid out so a `*mut Header` is also a
//! pointer to the whole cell.

use std::{future::Future, task::Waker};

use super::{list::Links, raw::Vtable, state::State, Id, JoinError};
use crate::sync::UnsafeCell;

/// The part of a task every holder can use without knowing its future type.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) state: State,
    pub(crate) vtable: &'static Vtable,
    pub(crate) id: Id,
    /// Links in the runtime's task registry; guarded by the registry shard lock.
    pub(crate) links: UnsafeCell<Links>,
}

/// What the task's slot holds over its life.
pub(crate) enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

pub(crate) struct Core<F: Future, S> {
    pub(crate) scheduler: S,
    /// Owned by whoever holds RUNNING; after COMPLETE by the join handle if
    /// it is interested, else by the completer.
    pub(crate) stage: UnsafeCell<Stage<F>>,
}

pub(crate) struct Trailer {
    /// See `JOIN_WAKER` in `state.rs` for who may touch this when.
    pub(crate) join_waker: UnsafeCell<Option<Waker>>,
}

#[repr(C)]
pub(crate) struct Cell<F: Future, S> {
    pub(crate) header: Header,
    pub(crate) core: Core<F, S>,
    pub(crate) trailer: Trailer,
}

impl<F: Future, S> Cell<F, S> {
    pub(crate) fn new(future: F, scheduler: S, id: Id, vtable: &'static Vtable) -> Box<Self> {
        Box::new(Cell {
            header: Header {
                state: State::new(),
                vtable,
                id,
                links: UnsafeCell::new(Links::default()),
            },
            core: Core {
                scheduler,
                stage: UnsafeCell::new(Stage::Running(future)),
            },
            trailer: Trailer {
                join_waker: UnsafeCell::new(None),
            },
        })
    }
}

impl<F: Future, S> Core<F, S> {
    /// # Safety
    /// The caller owns the stage (see the field doc).
    pub(crate) unsafe fn set_stage(&self, stage: Stage<F>) {
        // SAFETY: exclusive access is the caller's precondition.
        self.stage.with_mut(|ptr| unsafe { *ptr = stage });
    }

    /// # Safety
    /// The caller owns the stage and it is `Finished`.
    pub(crate) unsafe fn take_output(&self) -> Result<F::Output, JoinError> {
        // SAFETY: exclusive access is the caller's precondition.
        self.stage.with_mut(
            |ptr| match std::mem::replace(unsafe { &mut *ptr }, Stage::Consumed) {
                Stage::Finished(output) => output,
                _ => panic!("JoinHandle polled after completion"),
            },
        )
    }
}
