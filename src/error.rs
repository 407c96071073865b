//! Invocation-level errors. The record- and configuration-level errors live in the
//! core crate and are re-exported here; see [`cdc_relay_core::error`].

pub use cdc_relay_core::error::{ConfigError, RecordError, Stage};

/// An invocation-level failure: the handler answers it with an error, so Lambda
/// retries the whole batch.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The event could not be understood at all (not an MSK event).
    #[error("invalid MSK event: {0}")]
    Event(String),
    /// No downstream brokers are known: neither `RELAY_BROKERS` nor the event's
    /// `bootstrapServers`.
    #[error("no downstream brokers: set RELAY_BROKERS or send an event with bootstrapServers")]
    NoBrokers,
    /// The Kafka client could not be created or configured.
    #[error("kafka producer: {0}")]
    Producer(String),
    /// The source consumer (`serve`, `esm`) could not be created or failed a call.
    #[error("kafka consumer: {0}")]
    Consumer(String),
    /// A transaction (`serve` with exactly once) could not begin or commit.
    #[error("transaction: {0}")]
    Transaction(String),
    /// The function (`esm`) could not be invoked or failed.
    #[error("invoke: {0}")]
    Invoke(String),
    /// Credentials could not be fetched (e.g. Secrets Manager unreachable). Never
    /// carries a secret value.
    #[error("credentials: {0}")]
    Credentials(String),
    /// Some records were not done and partial batch responses are off.
    #[error(
        "{failed} of {total} records not done (first: {first}); the whole batch will be retried"
    )]
    BatchFailed {
        /// Records that were not done.
        failed: usize,
        /// Records in the batch.
        total: usize,
        /// The first failure, for the log.
        first: String,
    },
}

impl Error {
    /// Whether invoking again with the same input could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Config(_) | Error::Event(_) | Error::NoBrokers => false,
            Error::Producer(_)
            | Error::Consumer(_)
            | Error::Transaction(_)
            | Error::Invoke(_)
            | Error::Credentials(_)
            | Error::BatchFailed { .. } => true,
        }
    }
}
