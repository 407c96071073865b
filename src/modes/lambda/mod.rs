//! The Lambda mode: the payload's bytes ([`payload`]) -> [`MskEvent`] -> [`Relay`] ->
//! [`BatchResponse`], with one EMF metrics record per invocation ([`emf`]).
//!
//! The answer: all records done -> an empty `batchItemFailures`. Otherwise, with
//! `RELAY_PARTIAL_BATCH=true`, one item per source partition naming its lowest offset not
//! done; without it, an error, so Lambda retries the whole batch (a partial response is
//! ignored by a mapping without `ReportBatchItemFailures`, which would drop records).

pub mod emf;
pub mod payload;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::error::Error;
use crate::pipeline::BatchOutcome;
use crate::relay::Relay;
use crate::secrets::Credentials;
use crate::source::MskEvent;
use crate::transform::Routes;
use emf::{emf, emf_tables, TableLabels, Timings};

/// The partial batch response for Kafka event sources.
///
/// The shape Powertools and the upstream Lambda runtime use: `partition` is the
/// `"<topic>-<partition>"` key of the event, `offset` a number. Kept in this one type so
/// it can follow AWS if the spelling ever changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    /// Per partition with a failure, the first offset Lambda must deliver again.
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// One entry of [`BatchResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    /// The record to resume from.
    pub item_identifier: ItemIdentifier,
}

/// A record of a Kafka batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemIdentifier {
    /// `"<topic>-<partition>"`, as the event's `records` map names it.
    pub partition: String,
    /// The record's offset.
    pub offset: i64,
}

/// One invocation's answer and, when the batch ran, what happened to it.
#[derive(Debug)]
pub struct Invocation {
    /// What Lambda receives.
    pub response: Result<BatchResponse, Error>,
    /// The batch's outcome; `None` when it failed before running.
    pub outcome: Option<BatchOutcome>,
}

/// The function: the relay, and what Lambda's invocations add to it (the cold-start
/// flag, bounded table names for per-table metrics).
#[derive(Debug)]
pub struct Function {
    relay: Relay,
    /// Bounded table names for per-table metrics.
    table_labels: TableLabels,
    /// Set by the first invocation: every later one is warm.
    invoked: AtomicBool,
}

impl Function {
    /// The function over a relay.
    pub(crate) fn new(relay: Relay) -> Function {
        let table_labels = TableLabels::new(relay.settings().metrics.max_tables);
        Function {
            relay,
            table_labels,
            invoked: AtomicBool::new(false),
        }
    }

    /// The function over a relay built from already validated routes
    /// ([`Relay::with_routes`]).
    pub fn with_routes(settings: Settings, routes: Routes) -> Function {
        Function::new(Relay::with_routes(settings, routes))
    }

    /// Init-phase work ([`Relay::init`]).
    pub async fn init(settings: Settings) -> Result<Function, Error> {
        Ok(Function::new(Relay::init(settings).await?))
    }

    /// The same function with these credentials ([`Relay::with_credentials`]).
    pub fn with_credentials(self, credentials: Credentials) -> Function {
        Function::new(self.relay.with_credentials(credentials))
    }

    /// The relay every invocation runs through.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Lambda entry point under the runtime with [`payload::RawPayloadLayer`]: the
    /// invocation's payload is taken from `payloads` and parsed here. A payload that is
    /// not an MSK event is an error of the invocation ([`Error::Event`]).
    pub async fn handle_payload(
        &self,
        event: LambdaEvent<()>,
        payloads: &payload::Payloads,
    ) -> Result<BatchResponse, Error> {
        let ((), context) = event.into_parts();
        let body = payloads
            .take(&context.request_id)
            .ok_or_else(|| Error::Event("no payload kept for this invocation".to_owned()))?;
        let event = MskEvent::parse(body).map_err(|e| Error::Event(e.to_string()))?;
        self.handle(LambdaEvent::new(event, context)).await
    }

    /// Lambda entry point. Every log line of the invocation carries its request id and
    /// whether it is the execution environment's first (cold) invocation.
    pub async fn handle(&self, event: LambdaEvent<MskEvent>) -> Result<BatchResponse, Error> {
        self.invoke(event).await.response
    }

    /// [`Function::handle`], also returning the batch's outcome: what the local `invoke`
    /// command calls, so that it runs exactly the Lambda path (span, cold-start flag,
    /// metrics) and can still read back what was produced.
    pub async fn invoke(&self, event: LambdaEvent<MskEvent>) -> Invocation {
        use tracing::Instrument;
        let cold_start = !self.invoked.swap(true, Ordering::Relaxed);
        let (MskEvent { origin, records }, context) = event.into_parts();
        let span = tracing::info_span!("invocation", request_id = %context.request_id, cold_start);
        let deadline = arrival_deadline(context.deadline);
        let xray = context
            .xray_trace_id
            .clone()
            .or_else(|| std::env::var("_X_AMZN_TRACE_ID").ok());
        async move {
            let started = Instant::now();
            match self.relay.run(origin, records, deadline, xray).await {
                Ok(outcome) => {
                    self.emit_metrics(&outcome, started.elapsed());
                    Invocation {
                        response: self.respond(&outcome),
                        outcome: Some(outcome),
                    }
                }
                Err(error) => Invocation {
                    response: Err(error),
                    outcome: None,
                },
            }
        }
        .instrument(span)
        .await
    }

    /// Runs one event through the relay, without the invocation's span, metrics or answer.
    /// `deadline` is the invocation deadline; the relay stops waiting
    /// `RELAY_DEADLINE_MARGIN_MS` before it.
    pub async fn process(
        &self,
        event: MskEvent,
        deadline: Option<SystemTime>,
    ) -> Result<BatchOutcome, Error> {
        self.relay
            .run(event.origin, event.records, deadline, None)
            .await
    }

    /// Writes the invocation's EMF record to stdout (in Lambda, or with RELAY_METRICS=true).
    fn emit_metrics(&self, outcome: &BatchOutcome, elapsed: Duration) {
        if !self.relay.settings().metrics.enabled {
            return;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let timings = Timings {
            batch_ms: elapsed.as_secs_f64() * 1e3,
            max_record_age_ms: outcome
                .oldest_timestamp_ms
                .map(|t| now_ms.saturating_sub(t).max(0) as f64),
        };
        let dimensions = [(
            "FunctionName",
            self.relay.settings().metrics.function_name.as_str(),
        )];
        let doc = emf(
            &self.relay.settings().metrics.namespace,
            now_ms,
            &dimensions,
            outcome,
            &timings,
        );
        // One write for all documents, so lines of concurrent writers never interleave.
        let mut text = doc.to_string();
        if self.relay.settings().metrics.per_table {
            let routes = self.relay.pipeline().transformer().routes();
            let tables = self
                .table_labels
                .fold(&outcome.tables, |table| routes.is_routed(table));
            for doc in emf_tables(
                &self.relay.settings().metrics.namespace,
                now_ms,
                &dimensions,
                &tables,
            ) {
                text.push('\n');
                text.push_str(&doc.to_string());
            }
        }
        println!("{text}");
    }

    /// The answer to Lambda for an outcome.
    pub(crate) fn respond(&self, outcome: &BatchOutcome) -> Result<BatchResponse, Error> {
        let Some(first) = outcome.failures.iter().next() else {
            return Ok(BatchResponse::default());
        };
        if !self.relay.settings().pipeline.partial_batch {
            let why = first
                .error
                .as_ref()
                .map_or_else(|| "not done".to_owned(), ToString::to_string);
            return Err(Error::BatchFailed {
                failed: outcome.not_done,
                total: outcome.records,
                first: format!("{} offset {}: {why}", first.batch_partition, first.offset),
            });
        }
        Ok(BatchResponse {
            batch_item_failures: outcome
                .failures
                .iter()
                .map(|f| BatchItemFailure {
                    item_identifier: ItemIdentifier {
                        partition: f.batch_partition.to_string(),
                        offset: f.offset,
                    },
                })
                .collect(),
        })
    }
}

/// When this invocation must have answered. Lambda always sends a deadline in the
/// future; one that is missing or already past on arrival (seen from local emulators)
/// is replaced by [`FALLBACK_TIMEOUT`] from now, with a warning, rather than failing
/// every record at once.
fn arrival_deadline(deadline_epoch_ms: u64) -> Option<SystemTime> {
    let now = SystemTime::now();
    let sent = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_epoch_ms);
    if sent > now {
        return Some(sent);
    }
    tracing::warn!(
        deadline_epoch_ms,
        "invocation deadline missing or already past on arrival; using {} s",
        FALLBACK_TIMEOUT.as_secs()
    );
    Some(now + FALLBACK_TIMEOUT)
}

/// The budget used when the runtime sends no usable deadline (the template's timeout).
pub(crate) const FALLBACK_TIMEOUT: Duration = Duration::from_secs(60);

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(error: Error) -> Self {
        let kind = match &error {
            Error::Config(_) => "ConfigError",
            Error::Event(_) => "InvalidEvent",
            Error::NoBrokers => "NoBrokers",
            Error::Producer(_) => "ProducerError",
            Error::Consumer(_) => "ConsumerError",
            Error::Transaction(_) => "TransactionError",
            Error::Invoke(_) => "InvokeError",
            Error::Credentials(_) => "CredentialsError",
            Error::BatchFailed { .. } => "BatchFailed",
        };
        lambda_runtime::Diagnostic {
            error_type: format!("cdc-relay.{kind}"),
            error_message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A future deadline is kept; a missing or past one (cargo lambda watch sends a
    /// relative 600000) becomes the fallback from now.
    #[test]
    fn arrival_deadline_rules() {
        let future = SystemTime::now() + Duration::from_secs(30);
        let future_ms = future
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let kept = arrival_deadline(future_ms).expect("deadline");
        assert_eq!(kept, UNIX_EPOCH + Duration::from_millis(future_ms));
        for bogus in [0, 600_000] {
            let replaced = arrival_deadline(bogus).expect("deadline");
            let remaining = replaced
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            assert!(
                remaining > Duration::from_secs(59) && remaining <= FALLBACK_TIMEOUT,
                "{remaining:?}"
            );
        }
    }
}
