//! Lambda glue: `LambdaEvent<MskEvent>` (a `KafkaEvent`) -> [`Pipeline`] -> [`BatchResponse`].
//!
//! [`Relay`] is built once per execution environment (Lambda's init phase) and shared
//! by every invocation. It owns the one producer: created at init when `RELAY_BROKERS`
//! is set (and connected there, so the first batch does not pay for it), else on the
//! first invocation from the event's `bootstrapServers`; never per invocation.
//!
//! The answer: all records done -> an empty `batchItemFailures`. Otherwise, with
//! `RELAY_PARTIAL_BATCH=true`, one item per source partition naming its lowest offset not
//! done; without it, an error, so Lambda retries the whole batch (a partial response is
//! ignored by a mapping without `ReportBatchItemFailures`, which would drop records).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::kafka::KafkaEvent;
use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};

use crate::auth::{
    fetch_scram_secret, resolve_hash_key, resolve_mode, AuthMode, Credentials, ProducerAuth,
    SECRET_FETCH_TIMEOUT,
};
use crate::config::Settings;
use crate::dms::Decoder;
use crate::error::Error;
use crate::metrics::{emf, emf_tables, TableLabels, Timings};
use crate::pipeline::{BatchContext, BatchOutcome, Pipeline, PipelineOptions, Renew};
use crate::sink::Sink;
use crate::source::{self, MskEvent};
use crate::transform::{Routes, Transformer};

/// The repository's `routes.toml`, compiled in: what a deployed function uses when no
/// file is shipped beside it and `RELAY_ROUTES` is unset (`sam build` ships only the binary).
pub const BUILT_IN_ROUTES: &str = include_str!("../routes.toml");

/// How long init may take in all: Lambda allows 10 s for the init phase, and a function
/// that overruns it is restarted (and billed) with the first invocation.
const INIT_BUDGET: Duration = Duration::from_secs(8);

/// How often, at most, a refused SCRAM login fetches the secret again.
const SECRET_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// The longest init waits for the brokers when warming the producer up.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The function: configuration, pipeline and producer, shared by all invocations.
#[derive(Debug)]
pub struct Relay {
    settings: Settings,
    pipeline: Pipeline,
    /// The producer; replaced after a fatal error (a producer in a fatal state fails
    /// every message until it is recreated).
    sink: Mutex<Option<Arc<Sink>>>,
    /// Credentials resolved at init (SCRAM secret, AWS configuration); the SCRAM secret
    /// is fetched again when the brokers refuse the login (a rotated secret).
    credentials: RwLock<Credentials>,
    /// When the SCRAM secret was last fetched again after a refused login.
    last_secret_fetch: Mutex<Option<Instant>>,
    /// Bounded table names for per-table metrics.
    table_labels: TableLabels,
    /// Set by the first invocation: every later one is warm.
    invoked: AtomicBool,
}

impl Relay {
    /// The routes file the settings name (else the built-in one), validated, without
    /// a hash key.
    pub fn read_routes(settings: &Settings) -> Result<Routes, Error> {
        Ok(match settings.locate_routes() {
            Some(path) => {
                let routes = Routes::load_with_dlq(&path, settings.dlq_topic.clone())?;
                tracing::info!(routes = %path.display(), count = routes.routes.len(), "routes loaded");
                routes
            }
            None => {
                tracing::info!(
                    "no routes file found: using the routes.toml compiled into the binary"
                );
                Routes::parse_with_dlq(
                    BUILT_IN_ROUTES,
                    "<built-in routes.toml>",
                    settings.dlq_topic.clone(),
                )?
            }
        })
    }

    /// [`Relay::read_routes`], with the hash key when a route hashes (resolved only
    /// then: a function whose routes never hash needs no key and makes no call for one).
    pub async fn load_routes(settings: &Settings) -> Result<Routes, Error> {
        let mut routes = Relay::read_routes(settings)?;
        if routes.hashing_routes().is_empty() {
            return Ok(routes);
        }
        let key = resolve_hash_key(settings).await?;
        if key.is_some() && settings.hash_key.is_none() && settings.hash_key_secret_arn.is_none() {
            tracing::warn!(
                "no hash key is set: `hash` uses the published local key, so its pseudonyms hide nothing (set RELAY_HASH_KEY or RELAY_HASH_KEY_SECRET_ARN)"
            );
        }
        routes.set_hash_key(key)?;
        Ok(routes)
    }

    /// Builds the relay over already validated routes.
    pub fn with_routes(settings: Settings, routes: Routes) -> Relay {
        let pipeline = Pipeline::new(
            Decoder::new(settings.before_image_field.clone()),
            Transformer::new(routes),
            PipelineOptions {
                concurrency: settings.concurrency,
                chunk_size: settings.chunk_size,
                per_table: settings.metrics && settings.metrics_per_table,
                log_values: settings.log_values,
            },
        );
        let table_labels = TableLabels::new(settings.metrics_max_tables);
        Relay {
            settings,
            pipeline,
            sink: Mutex::new(None),
            credentials: RwLock::new(Credentials::default()),
            table_labels,
            last_secret_fetch: Mutex::new(None),
            invoked: AtomicBool::new(false),
        }
    }

    /// Init-phase work: resolve credentials (the SCRAM secret and the hash key are
    /// fetched here, once),
    /// and when `RELAY_BROKERS` is set, create the producer and connect it. A broker
    /// that is not reachable yet is logged, not fatal: librdkafka keeps trying.
    ///
    /// Every network call here has a timeout, and together they end within
    /// [`INIT_BUDGET`], inside Lambda's 10 s init phase.
    pub async fn init(settings: Settings) -> Result<Relay, Error> {
        let started = Instant::now();
        // Side by side: each has its own timeouts, so init waits only for the slower.
        let (credentials, routes) = tokio::join!(
            Credentials::resolve(&settings.auth),
            Relay::load_routes(&settings)
        );
        let (credentials, routes) = (credentials?, routes?);
        let relay = Relay::with_routes(settings, routes).with_credentials(credentials);
        if let Some(brokers) = relay.settings.brokers.clone() {
            let sink = relay.sink_for(&brokers, None)?;
            let left = INIT_BUDGET.saturating_sub(started.elapsed());
            if let Err(e) = sink.warm_up(left.min(WARM_UP_TIMEOUT)).await {
                tracing::warn!(error = %e, "producer warm-up failed; will retry on first batch");
            }
        }
        Ok(relay)
    }

    /// The same relay with these credentials (what [`Relay::init`] resolves).
    pub fn with_credentials(mut self, credentials: Credentials) -> Relay {
        self.credentials = RwLock::new(credentials);
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The pipeline in use.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The producer, created on first use, authenticating as `RELAY_AUTH` says (or, when
    /// unset, as [`resolve_mode`] decides from the brokers and the event's source ARN).
    fn sink_for(&self, brokers: &str, event_source_arn: Option<&str>) -> Result<Arc<Sink>, Error> {
        let mut slot = self
            .sink
            .lock()
            .map_err(|_| Error::Producer("producer slot poisoned by a panic".to_owned()))?;
        if let Some(sink) = slot.as_ref() {
            return Ok(sink.clone());
        }
        let auth = self.client_auth(brokers, event_source_arn)?;
        tracing::info!(
            brokers,
            auth = auth.mode().as_str(),
            "creating the producer"
        );
        let sink = Arc::new(Sink::connect_with(
            brokers,
            auth,
            &self.settings.producer_overrides,
        )?);
        *slot = Some(sink.clone());
        Ok(sink)
    }

    /// The security settings of a Kafka client of `brokers`: the producer's, and in
    /// `serve` the source consumer's too (one `RELAY_AUTH` for both).
    pub fn client_auth(
        &self,
        brokers: &str,
        event_source_arn: Option<&str>,
    ) -> Result<ProducerAuth, Error> {
        let from_event = self.settings.brokers.is_none();
        let mode = resolve_mode(&self.settings.auth, brokers, from_event, event_source_arn);
        let credentials = self
            .credentials
            .read()
            .map_err(|_| Error::Producer("credentials lock poisoned by a panic".to_owned()))?;
        Ok(ProducerAuth::for_mode(
            mode,
            &self.settings.auth,
            &credentials,
        )?)
    }

    /// The producer for `brokers`, created on first use (the one [`Relay::process`] uses).
    pub fn producer(&self, brokers: &str) -> Result<Arc<Sink>, Error> {
        self.sink_for(brokers, None)
    }

    /// What gives a batch on `brokers` a new producer when its own turns fatal.
    pub fn renewal<'a>(&'a self, brokers: &'a str) -> impl Renew + 'a {
        Renewal {
            relay: self,
            brokers,
            event_source_arn: None,
        }
    }

    /// Drops `sink` as the producer (after a fatal error): the next batch creates a new
    /// one. librdkafka's teardown may block, so it runs off the async workers.
    pub fn retire(&self, sink: Arc<Sink>) {
        if let Ok(mut slot) = self.sink.lock() {
            if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &sink)) {
                *slot = None;
            }
        }
        tokio::task::spawn_blocking(move || drop(sink));
    }

    /// The producer if it exists (for flushing at shutdown).
    pub fn sink(&self) -> Option<Arc<Sink>> {
        self.sink.lock().ok().and_then(|s| s.clone())
    }

    /// Lambda entry point. Every log line of the invocation carries its request id and
    /// whether it is the execution environment's first (cold) invocation.
    pub async fn handle(&self, event: LambdaEvent<MskEvent>) -> Result<BatchResponse, Error> {
        self.invoke(event).await.response
    }

    /// [`Relay::handle`], also returning the batch's outcome: what the local `invoke`
    /// command calls, so that it runs exactly the Lambda path (span, cold-start flag,
    /// metrics) and can still read back what was produced.
    pub async fn invoke(&self, event: LambdaEvent<MskEvent>) -> Invocation {
        use tracing::Instrument;
        let cold_start = !self.invoked.swap(true, Ordering::Relaxed);
        let (MskEvent(payload), context) = event.into_parts();
        let span = tracing::info_span!("invocation", request_id = %context.request_id, cold_start);
        let deadline = arrival_deadline(context.deadline);
        let xray = context
            .xray_trace_id
            .clone()
            .or_else(|| std::env::var("_X_AMZN_TRACE_ID").ok());
        async move {
            let started = Instant::now();
            match self.process_traced(payload, deadline, xray).await {
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

    /// Runs one event through the pipeline. `deadline` is the invocation deadline; the
    /// relay stops waiting `RELAY_DEADLINE_MARGIN_MS` before it.
    pub async fn process(
        &self,
        event: KafkaEvent,
        deadline: Option<SystemTime>,
    ) -> Result<BatchOutcome, Error> {
        self.process_traced(event, deadline, None).await
    }

    async fn process_traced(
        &self,
        event: KafkaEvent,
        deadline: Option<SystemTime>,
        xray_trace_id: Option<String>,
    ) -> Result<BatchOutcome, Error> {
        let started = Instant::now();
        let remaining_ms = deadline.map(|d| {
            d.duration_since(SystemTime::now())
                .map_or(0, |r| r.as_millis() as u64)
        });
        let (origin, records) = source::records(event);
        let brokers = match (&self.settings.brokers, &origin.bootstrap_servers) {
            (Some(b), _) => b.clone(),
            (None, Some(b)) if !b.trim().is_empty() => b.clone(),
            _ => {
                if records.is_empty() {
                    return Ok(BatchOutcome::default());
                }
                return Err(Error::NoBrokers);
            }
        };
        let margin = self.settings.deadline_margin;
        if let Some(sink) = self.sink() {
            if sink.login_refused() {
                let budget = deadline.map(|d| budget_instant(d, margin));
                self.refetch_scram_secret(&sink, budget).await;
            }
        }
        let sink = self.sink_for(&brokers, origin.event_source_arn.as_deref())?;
        let context = BatchContext {
            origin,
            budget: deadline.map(|d| budget_instant(d, margin)),
            settle_by: deadline.map(|d| budget_instant(d, margin / 2)),
            xray_trace_id,
        };
        let renewal = Renewal {
            relay: self,
            brokers: &brokers,
            event_source_arn: context.origin.event_source_arn.as_deref(),
        };
        let outcome = self.pipeline.run(sink, &renewal, &context, records).await;
        if let Some(sink) = self.sink() {
            if let Some(fatal) = sink.fatal_error() {
                tracing::warn!(
                    error = %fatal,
                    "the producer is in a fatal state: records not acknowledged are reported, \
                     and the next batch gets a new producer"
                );
                self.retire(sink);
            }
        }
        tracing::info!(
            records = outcome.records,
            produced = outcome.produced,
            messages = outcome.messages,
            dead_lettered = outcome.dead_lettered,
            skipped = outcome.skipped_total(),
            not_done = outcome.not_done,
            elapsed_ms = started.elapsed().as_millis() as u64,
            deadline_in_ms = remaining_ms,
            "batch finished"
        );
        Ok(outcome)
    }

    /// Before a batch, when the brokers refused the producer's login: with
    /// `RELAY_AUTH=scram` and a secret in Secrets Manager, fetches the secret again (it
    /// may have been rotated), at most once per [`SECRET_REFETCH_INTERVAL`] and within a
    /// quarter of the batch's budget; when it changed, the producer is retired so this
    /// batch logs in with the new one.
    async fn refetch_scram_secret(&self, sink: &Arc<Sink>, budget: Option<Instant>) {
        let (Some(arn), AuthMode::Scram) = (
            self.settings.auth.scram_secret_arn.as_deref(),
            self.settings.auth.mode,
        ) else {
            return;
        };
        let Some(aws) = self.credentials.read().ok().and_then(|c| c.aws.clone()) else {
            return;
        };
        if let Ok(mut last) = self.last_secret_fetch.lock() {
            if last.is_some_and(|at| at.elapsed() < SECRET_REFETCH_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let left = budget.map_or(SECRET_FETCH_TIMEOUT, |b| {
            b.saturating_duration_since(Instant::now()) / 4
        });
        let fetched = tokio::time::timeout(left, fetch_scram_secret(&aws, arn)).await;
        let fresh = match fetched {
            Ok(Ok(fresh)) => fresh,
            Ok(Err(error)) => {
                tracing::warn!(%error, "login refused; fetching the SCRAM secret again failed");
                return;
            }
            Err(_) => {
                tracing::warn!("login refused; no time left in this invocation to fetch the SCRAM secret again");
                return;
            }
        };
        let Ok(mut credentials) = self.credentials.write() else {
            return;
        };
        if credentials.scram.as_ref() == Some(&fresh) {
            tracing::warn!("login refused with the current SCRAM secret; it has not changed");
            return;
        }
        tracing::info!("login refused: the SCRAM secret changed; the next batch uses the new one");
        credentials.scram = Some(fresh);
        drop(credentials);
        self.retire(sink.clone());
    }

    /// Writes the invocation's EMF record to stdout (in Lambda, or with RELAY_METRICS=true).
    fn emit_metrics(&self, outcome: &BatchOutcome, elapsed: Duration) {
        if !self.settings.metrics {
            return;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let timings = Timings {
            batch_ms: elapsed.as_secs_f64() * 1e3,
            max_record_age_ms: outcome
                .oldest_timestamp_ms
                .map(|t| (now_ms - t).max(0) as f64),
        };
        let dimensions = [("FunctionName", self.settings.function_name.as_str())];
        let doc = emf(
            &self.settings.metrics_namespace,
            now_ms,
            &dimensions,
            outcome,
            &timings,
        );
        // One write for all documents, so lines of concurrent writers never interleave.
        let mut text = doc.to_string();
        if self.settings.metrics_per_table {
            let routes = self.pipeline.transformer().routes();
            let tables = self
                .table_labels
                .fold(&outcome.tables, |table| routes.is_routed(table));
            for doc in emf_tables(
                &self.settings.metrics_namespace,
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
    pub fn respond(&self, outcome: &BatchOutcome) -> Result<BatchResponse, Error> {
        if outcome.failures.is_empty() {
            return Ok(BatchResponse::default());
        }
        if !self.settings.partial_batch {
            let first = &outcome.failures[0];
            return Err(Error::BatchFailed {
                failed: outcome.not_done,
                total: outcome.records,
                first: format!(
                    "{} offset {}: {}",
                    first.batch_partition, first.offset, first.error
                ),
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

/// Gives the pipeline's recovery round a new producer: the fatal one is retired and the
/// next is made as the first was.
struct Renewal<'a> {
    relay: &'a Relay,
    brokers: &'a str,
    event_source_arn: Option<&'a str>,
}

impl Renew for Renewal<'_> {
    fn renew(&self, failed: &Arc<Sink>) -> Result<Arc<Sink>, Error> {
        if let Some(fatal) = failed.fatal_error() {
            tracing::warn!(error = %fatal, "the producer is in a fatal state: replacing it");
        }
        self.relay.retire(failed.clone());
        self.relay.sink_for(self.brokers, self.event_source_arn)
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
pub const FALLBACK_TIMEOUT: Duration = Duration::from_secs(60);

/// The instant `margin` before a wall-clock deadline (now, if that has passed).
fn budget_instant(deadline: SystemTime, margin: Duration) -> Instant {
    let remaining = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(margin);
    Instant::now() + remaining
}

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
        assert!(
            kept.duration_since(SystemTime::now()).unwrap_or_default() <= Duration::from_secs(30)
        );
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
