//! Host-side code generator for the cluster-mass CNN.
//!
//! Today it owns the framework-neutral architecture description ([`arch`]) and
//! the arithmetic every later stage needs: output shapes, multiply-accumulate
//! counts, parameter counts and receptive fields per layer. Export to runtime
//! code and weight blobs builds on this description.

pub mod arch;
pub mod blob;
