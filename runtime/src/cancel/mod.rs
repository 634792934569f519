//! Cancellation and deadlines.
//!
//! This folder will hold the cancellation tree: one node per task, deadlines
//! stored as values, cancellation flowing down with a first-wins cause, and
//! scopes inside a task (see DESIGN.md, "Cancellation and deadlines").
//!
//! For now it holds only [`wire`], the over-the-wire deadline codec: the
//! remaining budget leaves a process as a relative `grpc-timeout` value and
//! comes back in as a local deadline, never as an absolute time.

pub mod wire;
