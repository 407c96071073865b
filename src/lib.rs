//! cdc-relay: an AWS Lambda function that turns AWS DMS change records, delivered by an
//! Amazon MSK event source mapping, into routed, schema-decoupled domain events on
//! downstream Kafka topics, and tells Lambda exactly which records are done.
//!
//! # Layout
//!
//! The pure stages live in the core crate ([`cdc_relay_core`], re-exported here as
//! [`source`], [`dms`], [`transform`], [`deadletter`] and [`generate`]): they know nothing
//! of Lambda, Kafka clients or tokio. This crate wires them to the outside world; its
//! modules depend only downwards: `modes -> relay -> pipeline -> kafka -> ops, secrets,
//! config -> error`.
//!
//! - [`config`]: environment -> validated [`config::Settings`] (fail at init, not per record).
//! - [`secrets`]: Secrets Manager and the AWS configuration: SCRAM credentials, the hash key.
//! - [`kafka`]: everything that speaks to a broker: client authentication and context,
//!   the producer, transactions, the source consumer group.
//! - [`pipeline`]: one batch end to end, concurrent and order-preserving, with its pure
//!   ledger of each record's state; no mode's types.
//! - [`relay`]: the composition root every mode builds: settings, routes, producer.
//! - [`ops`]: Prometheus metrics and readiness, `/healthz` and `/metrics`.
//! - [`modes`]: the ways to run a relay: Lambda, `serve`, `esm`, local tools.
//! - [`error`]: invocation-level errors; the core's record and configuration errors.

pub mod config;
pub mod error;
pub mod kafka;
pub mod modes;
pub mod ops;
pub mod pipeline;
pub mod relay;
pub mod secrets;

pub use cdc_relay_core::{deadletter, dms, generate, source, transform};

pub use error::{ConfigError, Error, RecordError, Stage};
