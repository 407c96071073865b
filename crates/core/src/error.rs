//! Typed errors with a retryable/permanent distinction.
//!
//! Two families here, by when they happen (the relay crate adds a third, for a whole
//! invocation):
//! - [`ConfigError`]: at init, from the environment or the routes file. The function
//!   refuses to start rather than mis-route a single record.
//! - [`RecordError`]: one input record could not be handled. It carries the pipeline
//!   [`Stage`] that failed and whether a retry could help, so the pipeline can decide
//!   between reporting the record to Lambda and treating it as poison.
//!
//! Callers ask [`RecordError::is_retryable`]; nothing matches on message strings.

use std::fmt;

/// The pipeline stage a record failed in; also the value of the `relay-error-stage` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Base64 decoding of key, value or headers of the MSK record.
    Source,
    /// Parsing the value as a DMS record.
    Dms,
    /// Applying the routes file.
    Transform,
    /// Producing to Kafka and awaiting the acknowledgement.
    Sink,
}

impl Stage {
    /// Stable lower-case name, used in logs and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Dms => "dms",
            Stage::Transform => "transform",
            Stage::Sink => "sink",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one input record was not handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct RecordError {
    /// The stage that failed.
    pub stage: Stage,
    /// Whether the same record could succeed on a later attempt (broker faults do,
    /// malformed input does not).
    pub retryable: bool,
    /// What went wrong, for people. Never contains row values.
    pub message: String,
    /// `schema.table` of the record, once the DMS stage has read it.
    pub table: Option<String>,
}

impl RecordError {
    /// A failure that will repeat on every retry of the same record.
    pub fn permanent(stage: Stage, message: impl Into<String>) -> Self {
        RecordError {
            stage,
            retryable: false,
            message: message.into(),
            table: None,
        }
    }

    /// A failure that a later attempt may not see (broker down, timeout, deadline).
    pub fn retryable(stage: Stage, message: impl Into<String>) -> Self {
        RecordError {
            stage,
            retryable: true,
            message: message.into(),
            table: None,
        }
    }

    /// Whether retrying the record could help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The same error, attributed to `schema.table`.
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }
}

/// A configuration problem found at init.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An environment variable holds a value the relay cannot use.
    #[error("environment variable {name}={value:?}: {problem}")]
    Env {
        /// Variable name.
        name: String,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The routes file could not be read.
    #[error("routes file {path}: {source}")]
    RoutesIo {
        /// Path that was tried.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The routes file is not valid. `problem` names the line and, for a route, its table.
    #[error("routes file {path}: {problem}")]
    Routes {
        /// Path of the file (or `<embedded>`).
        path: String,
        /// Line and problem.
        problem: String,
    },
    /// Authentication is misconfigured (`RELAY_AUTH` and its variables). Never
    /// carries a secret value.
    #[error("authentication: {0}")]
    Auth(String),
}
