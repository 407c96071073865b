//! cdc-relay: an AWS Lambda function that turns AWS DMS change records, delivered by an
//! Amazon MSK event source mapping, into routed, schema-decoupled domain events on
//! downstream Kafka topics, and tells Lambda exactly which records are done.
//!
//! # Layout
//!
//! A record travels one way through these modules:
//!
//! - [`config`]: environment -> validated [`config::Settings`] (fail at init, not per record).
//! - [`source`]: MSK `KafkaEvent` -> ordered [`source::SourceRecord`]s; base64 and headers.
//! - [`dms`]: DMS JSON -> [`dms::ChangeEvent`] (data, before-image, metadata, control).
//! - [`transform`]: the routes file; change -> [`transform::OutMessage`]s (pure).
//! - [`auth`]: `RELAY_AUTH` (none, tls, scram, iam) -> the producer's security settings.
//! - [`sink`]: the rdkafka producer; enqueue, await acknowledgements, classify errors.
//! - [`deadletter`]: poison records -> dead-letter messages with the reason and origin.
//! - [`pipeline`]: one batch end to end, concurrent and order-preserving; no Lambda types.
//! - [`handler`]: Lambda glue; `LambdaEvent` -> pipeline -> partial batch response.
//! - [`generate`]: synthetic MSK events of DMS records (benchmarks, load tests).
//! - [`local`]: running the handler outside Lambda (embedded mock cluster, read-back).
//! - [`metrics`]: one CloudWatch Embedded Metric Format record per invocation.
//! - [`error`]: typed errors with a retryable/permanent distinction.

pub mod auth;
pub mod config;
pub mod deadletter;
pub mod dms;
pub mod error;
pub mod generate;
pub mod handler;
pub mod local;
pub mod metrics;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod transform;

pub use error::{ConfigError, Error, RecordError, Stage};
