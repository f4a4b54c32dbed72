//! The worker runtime every FlashFit stage runs on. A stage is a small async function over a
//! batch ([`Stage::process`]); this crate owns everything around it: consuming from Kafka with a
//! consumer group, batching (size or linger), bounded concurrency, retrying transient failures
//! with backoff, dead-lettering bad input with the reason in headers, publishing `failed`
//! statuses, committing offsets only after every downstream record is acknowledged, the
//! dead-letter-rate circuit breaker, metrics, `/health`, and graceful shutdown.
//!
//! Main types: [`Stage`], [`Message`], [`Outcome`], [`Emit`], [`Processor`] (Kafka-free batch
//! logic, shared by the worker and the [`harness`]), [`worker::run_worker`], [`Metrics`],
//! [`admin::serve`].

pub mod admin;
mod error;
pub mod faults;
pub mod harness;
pub mod kafka;
pub mod metrics;
mod process;
mod stage;
pub mod worker;

pub use error::{Error, Result};
pub use metrics::{Health, Metrics, StageMetrics, sink_declare, sink_written};
pub use process::{Backoff, BatchResult, DlqGuard, Processor, Record};
pub use stage::{Emit, Message, Outcome, Stage, failed_upload_status, run_blocking};

/// Version stamped on dead-letter records.
pub const WORKER_VERSION: &str = env!("CARGO_PKG_VERSION");
