//! The ways to run a relay. Each builds a [`crate::relay::Relay`] (or, `esm`, invokes
//! one behind a function endpoint); no mode imports another.
//!
//! - [`lambda`]: `LambdaEvent` -> relay -> partial batch response; EMF metrics.
//! - [`serve`]: a consumer group feeding the relay, committing offsets (or
//!   transactions) only for records done.
//! - [`esm`] (feature `esm`): Lambda's Kafka event source mapping, locally, invoking a
//!   function endpoint with MSK events and honouring its answers.
//! - [`local`]: outside Lambda: the embedded mock cluster, read-back, dry runs.

#[cfg(feature = "esm")]
pub mod esm;
pub mod lambda;
pub mod local;
pub mod serve;
