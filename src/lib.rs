//! cdc-relay: an AWS Lambda function that turns AWS DMS change records, delivered by an
//! Amazon MSK event source mapping, into routed, schema-decoupled domain events on
//! downstream Kafka topics, and tells Lambda exactly which records are done.
//!
//! # Layout
//!
//! The pure stages live in the core crate ([`cdc_relay_core`], re-exported here as
//! [`source`], [`dms`], [`transform`], [`deadletter`] and [`generate`]): they know nothing
//! of Lambda, Kafka clients or tokio. This crate wires them to the outside world:
//!
//! - [`config`]: environment -> validated [`config::Settings`] (fail at init, not per record).
//! - [`auth`]: `RELAY_AUTH` (none, tls, scram, iam) -> the producer's security settings.
//! - [`sink`]: the rdkafka producer; enqueue, await acknowledgements, classify errors.
//! - [`pipeline`]: one batch end to end, concurrent and order-preserving; no Lambda types.
//! - [`handler`]: Lambda glue; `LambdaEvent` -> pipeline -> partial batch response.
//! - [`local`]: running the handler outside Lambda (embedded mock cluster, read-back).
//! - [`metrics`]: one CloudWatch Embedded Metric Format record per invocation.
//! - [`consumer`]: the source consumer group `serve` and `esm` share: batches in,
//!   offsets committed only for records done.
//! - [`serve`]: the long-running shell: a consumer group feeding the same pipeline,
//!   committing offsets (or transactions) only for records that are done.
//! - [`esm`]: Lambda's Kafka event source mapping, locally: the same consumer
//!   invoking a function endpoint with MSK events, honouring its answers.
//! - [`ops`]: `serve`'s `/healthz` and Prometheus `/metrics`.
//! - [`error`]: invocation-level errors; the core's record and configuration errors.

pub mod auth;
pub mod config;
pub mod consumer;
pub mod error;
pub mod esm;
pub mod handler;
pub mod local;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod serve;
pub mod sink;

pub use cdc_relay_core::{deadletter, dms, generate, source, transform};

pub use error::{ConfigError, Error, RecordError, Stage};
