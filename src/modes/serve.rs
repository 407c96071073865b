//! `cdc-relay serve`: the same pipeline, fed by a Kafka consumer group instead of
//! Lambda's event source mapping.
//!
//! The loop: read a batch from the [`Source`] (up to `RELAY_BATCH_SIZE` records,
//! `RELAY_BATCH_MAX_BYTES` bytes, or `RELAY_BATCH_WINDOW_MS` after its first record),
//! run it through the unchanged [`Pipeline`](crate::pipeline::Pipeline), then commit.
//! Rebalances land only between batches (see [`crate::kafka::group`]).
//!
//! **At least once** (default): per partition, the committed offset is the first record
//! not done, exactly what Lambda's partial batch response tells the event source
//! mapping. It falls due `RELAY_COMMIT_INTERVAL_MS` after the records are done and is
//! committed then (beside the next batch when one runs; a failed commit is tried again
//! at the next batch or read), so one commit covers the batches of that time; a batch
//! is what has arrived (no window by default). A partition with a record not done is sought back to it and paused for a
//! backoff (doubling per failure in a row), then read again; the other partitions go on.
//!
//! **Exactly once** (`RELAY_EXACTLY_ONCE=true`): the producer is transactional; a batch's
//! messages (dead letters included) and its source offsets commit in one transaction
//! (`send_offsets_to_transaction` with the consumer group's metadata, so a member that
//! lost its partitions is fenced). Any record not done aborts the whole transaction (a
//! record's messages that were acknowledged would otherwise be committed and then sent
//! again), and every partition of the batch is read again from its first record after a
//! backoff. Readers with `isolation.level=read_committed` see each change once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Overrides, ServeSettings, Settings};
use crate::error::{ConfigError, Error, RecordError};
use crate::kafka::group::{
    backoff, check_poll_interval, spans, Read, Source, SourceOptions, Span, STATISTICS_INTERVAL,
};
use crate::kafka::producer::Sink;
use crate::kafka::transaction::{
    check_transaction_timeout, Transactions, TxnEnd, AFTER_BATCH_UNPOLLED, COMMIT_BUDGET,
};
use crate::ops::{Metrics, LIVENESS_TIMEOUT};
use crate::pipeline::{BatchContext, BatchOutcome, Rejection, Renew};
use crate::relay::Relay;
use crate::source::{EventOrigin, NotDone, SourceRecord};

/// How long the producer may take to reach a broker before the first batch.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// What shutting down takes past `RELAY_SHUTDOWN_TIMEOUT_MS` at most: aborting the
/// transaction of an abandoned batch, leaving the group and flushing. A container's stop
/// timeout must leave room for both (ECS: 30 s against 20 s and this).
pub const SHUTDOWN_EPILOGUE: Duration = Duration::from_secs(4);
/// Of [`SHUTDOWN_EPILOGUE`], the most aborting the abandoned batch's transaction takes.
const ABORT_AT_SHUTDOWN: Duration = Duration::from_secs(2);
/// Of [`SHUTDOWN_EPILOGUE`], what is kept for flushing after leaving the group.
const FLUSH_AT_SHUTDOWN: Duration = Duration::from_secs(1);
/// What the liveness bound leaves on top of the longest a batch may take: making a
/// producer, committing the offsets, pausing and seeking.
const LIVENESS_MARGIN: Duration = Duration::from_secs(2);
/// The longest wait for the old consumer's commit when it is made again.
const COMMIT_BEFORE_REMAKE: Duration = Duration::from_secs(2);
/// The longest wait, at start, for each cluster to say its id (exactly once).
const CLUSTER_ID_TIMEOUT: Duration = Duration::from_secs(5);

/// The serving loop: a consumer group over the DMS topics feeding the relay's pipeline.
pub struct Server {
    relay: Arc<Relay>,
    settings: ServeSettings,
    source: Source,
    /// The downstream cluster.
    brokers: String,
    origin: EventOrigin,
    metrics: Arc<Metrics>,
    /// Exactly once: the transactional producer's protocol.
    transactions: Transactions,
    /// Whether the last batch got records through (readiness).
    through: bool,
    /// Exactly once: per source partition, a record a message of which the broker
    /// rejected in an aborted transaction (offset, rejection). It is produced next alone,
    /// in a transaction of its own, after the records before it.
    suspects: HashMap<Arc<str>, (i64, RecordError)>,
    /// Exactly once: records the broker rejected when produced alone. The next
    /// transaction that reads them gives them the poison policy (a dead letter, committed
    /// with their offset) instead of producing them.
    condemned: HashMap<(Arc<str>, i64), RecordError>,
    /// Exactly once: the producer was fenced by another with its `transactional.id`
    /// (the fatal error). Serving stops: going on would fence the other in turn.
    fenced: Option<String>,
    /// The SCRAM secret changed and the consumer is still to be made again with it.
    remake_source: bool,
}

/// What a batch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Committed {
    /// Every record done (at least once: committed within the commit interval; exactly
    /// once: committed in the transaction).
    All,
    /// Some partitions read again (at least once: the done part committed; exactly
    /// once: nothing committed).
    Partly,
}

impl Server {
    /// Subscribes to the source topics. `relay` must have been built from settings whose
    /// producer overrides include [`Server::producer_overrides`] (the `transactional.id`
    /// when exactly once).
    pub fn new(relay: Arc<Relay>, settings: ServeSettings) -> Result<Server, Error> {
        let source_brokers = settings
            .source_brokers
            .clone()
            .ok_or_else(|| Error::Consumer("no source brokers".to_owned()))?;
        let brokers = relay
            .settings()
            .brokers
            .clone()
            .unwrap_or_else(|| source_brokers.clone());
        if let Some(topic) = settings
            .source_topics
            .iter()
            .find(|topic| relay.pipeline().routes().may_write(topic))
        {
            return Err(Error::Consumer(format!(
                "the routes may write the source topic {topic:?} (RELAY_SOURCE_TOPICS): the relay \
                 would read its own output; give the routes topics of their own"
            )));
        }
        if settings.exactly_once {
            check_transaction_timeout(
                settings.batch_timeout,
                &relay.settings().producer_overrides,
            )?;
        }
        // After the batch: under exactly once the commit and what follows one that
        // failed or whose outcome is unknown ([`AFTER_BATCH_UNPOLLED`]; a new producer's
        // init before a batch counts in the batch's own timeout); at least once a
        // synchronous offset commit, which the loop waits for that long at most. None of
        // them polls the consumer.
        let commit = if settings.exactly_once {
            AFTER_BATCH_UNPOLLED
        } else {
            crate::kafka::group::CONSUMER_CALL_TIMEOUT
        };
        check_poll_interval(
            settings.batch_timeout + commit,
            &settings.consumer_overrides,
        )?;
        let liveness = liveness_timeout(&settings)?;
        let auth = relay.client_auth(&source_brokers, settings.source_cluster_arn.as_deref())?;
        let metrics = Arc::new(Metrics::new());
        metrics.set_liveness_timeout(liveness);
        let source = Source::new(
            SourceOptions {
                brokers: source_brokers.clone(),
                topics: settings.source_topics.clone(),
                group_id: settings.group_id.clone(),
                batch_size: settings.batch_size,
                batch_window: settings.batch_window,
                commit_interval: settings.commit_interval,
                batch_max_bytes: settings.batch_max_bytes,
                record_size: SourceRecord::size,
                overrides: settings.consumer_overrides.clone(),
            },
            &auth,
            metrics.clone(),
        )?;
        let origin = EventOrigin {
            event_source: Some(
                if settings.source_cluster_arn.is_some() {
                    "aws:kafka"
                } else {
                    "SelfManagedKafka"
                }
                .to_owned(),
            ),
            event_source_arn: settings.source_cluster_arn.clone(),
            bootstrap_servers: Some(source_brokers),
        };
        tracing::info!(
            topics = ?settings.source_topics,
            group = %settings.group_id,
            exactly_once = settings.exactly_once,
            "serving"
        );
        Ok(Server {
            relay,
            settings,
            source,
            brokers,
            origin,
            metrics,
            transactions: Transactions::default(),
            through: false,
            suspects: HashMap::new(),
            condemned: HashMap::new(),
            fenced: None,
            remake_source: false,
        })
    }

    /// serve's settings and the relay's from `(name, value)` pairs (the process
    /// environment, in the binary), the relay's producer overrides including
    /// [`Server::producer_overrides`], as [`Server::new`] needs them.
    pub fn settings_from(
        vars: Vec<(String, String)>,
    ) -> Result<(ServeSettings, Settings), ConfigError> {
        let serve = ServeSettings::from_vars(vars.iter().cloned())?;
        let settings = Settings::from_vars_with(
            vars,
            Overrides {
                managed_producer: Server::producer_overrides(&serve),
                ..Overrides::default()
            },
        )?;
        Ok((serve, settings))
    }

    /// The producer properties serving adds to `RELAY_PRODUCER_*`: exactly once, a
    /// `transactional.id`.
    pub fn producer_overrides(settings: &ServeSettings) -> Vec<(String, String)> {
        if !settings.exactly_once {
            return Vec::new();
        }
        let id = settings
            .transactional_id
            .clone()
            .unwrap_or_else(|| format!("{}-{:016x}", settings.group_id, fastrand::u64(..)));
        vec![("transactional.id".to_owned(), id)]
    }

    /// Exactly once: refuses a downstream cluster other than the source's. The source
    /// offsets commit in the transaction through the producer's cluster, whose
    /// coordinator does not know the source group: every transaction would abort.
    /// Asked once at start (a few seconds at most); a cluster that does not
    /// answer yet is not refused here (settings refuse two bootstrap lists with no broker
    /// in common).
    async fn one_cluster(&self, sink: &Arc<Sink>) -> Result<(), Error> {
        let sink = sink.clone();
        let downstream = tokio::task::spawn_blocking(move || sink.cluster_id(CLUSTER_ID_TIMEOUT));
        let (source, downstream) =
            tokio::join!(self.source.cluster_id(CLUSTER_ID_TIMEOUT), downstream);
        let downstream = downstream.ok().flatten();
        match (source, downstream) {
            (Some(source), Some(downstream)) if source != downstream => {
                Err(Error::Transaction(format!(
                    "exactly once needs one cluster: the source topics are on cluster {source}, \
                     the downstream brokers ({}) are cluster {downstream}; Kafka transactions \
                     cannot span clusters. Relay within one cluster, or turn exactly once off",
                    self.brokers
                )))
            }
            _ => Ok(()),
        }
    }

    /// What `/healthz` and `/metrics` show.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` completes, then gives the batch in flight up to
    /// `RELAY_SHUTDOWN_TIMEOUT_MS` to finish and commit. A batch still running then is
    /// abandoned uncommitted: its records are read again by the partitions' next owner,
    /// and under exactly once its transaction is aborted here, so that read_committed
    /// readers are not held back until the broker's transaction timeout. Aborting,
    /// leaving the group and flushing take at most [`SHUTDOWN_EPILOGUE`] more: `run`
    /// returns within the shutdown timeout and that, whatever the brokers do (a call into
    /// librdkafka still blocked then is left behind, and the process ends without it).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        tokio::pin!(shutdown);
        let mut stopped_at = None;
        tokio::select! {
            started = self.start() => started?,
            () = &mut shutdown => stopped_at = Some(tokio::time::Instant::now()),
        }
        let mut abandoned = false;
        while stopped_at.is_none() {
            // A renewal stops where it is at a shutdown: the secret fetched is applied
            // in one step once it has answered, and the old consumer's commit, if one is
            // under way, finishes on its own thread (leaving the group waits for it).
            tokio::select! {
                () = self.renew_credentials() => {}
                () = &mut shutdown => {
                    stopped_at = Some(tokio::time::Instant::now());
                    break;
                }
            }
            let batch = tokio::select! {
                batch = self.source.read_batch() => batch,
                () = &mut shutdown => {
                    stopped_at = Some(tokio::time::Instant::now());
                    break;
                }
            };
            if self.source.caught_up() {
                // Nothing left to read is progress too (liveness).
                self.metrics.progress();
            }
            if batch.is_empty() {
                continue;
            }
            let shutdown_timeout = self.settings.shutdown_timeout;
            self.metrics.in_flight(true);
            // The batches before this one are committed when due, not after it.
            let committing = self.source.commit_when_due();
            let result = {
                let processing = self.process(batch);
                tokio::pin!(processing);
                tokio::pin!(committing);
                let mut committed = false;
                loop {
                    tokio::select! {
                        result = &mut processing => break Some(result),
                        () = &mut committing, if !committed => committed = true,
                        () = &mut shutdown => {
                            tracing::info!(
                                timeout_ms = shutdown_timeout.as_millis() as u64,
                                "shutting down: finishing the batch in flight"
                            );
                            let now = tokio::time::Instant::now();
                            stopped_at = Some(now);
                            break tokio::time::timeout_at(now + shutdown_timeout, &mut processing)
                                .await
                                .ok();
                        }
                    }
                }
            };
            self.metrics.in_flight(false);
            match result {
                Some(Err(error)) => {
                    tracing::warn!(%error, "batch not committed; read again after a backoff")
                }
                None => {
                    abandoned = true;
                    tracing::warn!(
                        "the batch in flight did not finish before the shutdown timeout; \
                         it is not committed"
                    )
                }
                Some(Ok(_)) => {}
            }
            if self.fenced.is_some() {
                stopped_at.get_or_insert_with(tokio::time::Instant::now);
            }
        }
        let end = stopped_at.unwrap_or_else(tokio::time::Instant::now)
            + self.settings.shutdown_timeout
            + SHUTDOWN_EPILOGUE;
        let left = || end.saturating_duration_since(tokio::time::Instant::now());
        tracing::info!("shutting down");
        if abandoned && self.settings.exactly_once {
            if let Some(sink) = self.relay.sink() {
                match tokio::time::timeout(ABORT_AT_SHUTDOWN.min(left()), self.transactions.abort(&sink)).await {
                    Ok(Ok(())) => tracing::info!("the transaction of the batch in flight is aborted"),
                    Ok(Err(error)) => tracing::warn!(%error, "the transaction of the batch in flight could not be aborted: the broker aborts it after its transaction timeout"),
                    Err(_) => tracing::warn!("aborting the transaction of the batch in flight did not end in time: the broker aborts it after its transaction timeout"),
                }
            }
        }
        let relay = self.relay.clone();
        let fenced = self.fenced.take().map(|fatal| self.fenced_error(&fatal));
        self.source
            .leave(left().saturating_sub(FLUSH_AT_SHUTDOWN))
            .await;
        if let Some(error) = fenced {
            return Err(error);
        }
        if let Some(sink) = relay.sink() {
            let within = left();
            let flushing = tokio::task::spawn_blocking(move || sink.flush(within));
            if tokio::time::timeout(within, flushing).await.is_err() {
                tracing::warn!("the producer did not flush in time");
            }
        }
        Ok(())
    }

    /// Before the first batch. Ready needs a producer that reaches a broker: asked at
    /// once. Exactly once initialises its transactions at once too, not at the first
    /// batch: a restarted instance may get no partitions, or only partitions whose
    /// committed offsets its predecessor's open transaction holds back.
    async fn start(&mut self) -> Result<(), Error> {
        for (variable, why) in &self.settings.ignored {
            tracing::warn!(variable, "ignored: {why}");
        }
        match self.relay.producer(&self.brokers) {
            Ok(sink) => {
                match sink.warm_up(WARM_UP_TIMEOUT).await {
                    Ok(()) => self.through = true,
                    Err(error) => {
                        tracing::warn!(%error, "the producer has not reached a broker yet")
                    }
                }
                if self.settings.exactly_once {
                    self.one_cluster(&sink).await?;
                    if let Err(error) = self.transactions.initialise(&sink).await {
                        // A fatal answer no wait cures (a transaction timeout above the
                        // brokers' transaction.max.timeout.ms, a cluster without
                        // transactions) would fail every batch's new producer the same
                        // way: said once, at start, rather than as a loop that never
                        // relays. A refused authorisation may be a grant still on its
                        // way: the loop keeps trying, unready.
                        if let Some(fatal) = sink.refused_for_good() {
                            return Err(Error::Transaction(format!(
                                "exactly once cannot start: the brokers refused to initialise \
                                 transactions ({fatal}). Check RELAY_PRODUCER_TRANSACTION_TIMEOUT_MS \
                                 against the brokers' transaction.max.timeout.ms, and that the \
                                 cluster supports transactions"
                            )));
                        }
                        tracing::warn!(%error, "transactions not initialised yet: retried at the first batch");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "no producer yet"),
        }
        self.metrics
            .producer_ready
            .store(self.through, Ordering::Relaxed);
        Ok(())
    }

    /// SCRAM with the secret in Secrets Manager: when the brokers refuse the consumer's
    /// or the producer's login, the secret is fetched again (it may have been rotated; at
    /// most every 30 s, as Lambda does before a batch). When it changed, the producer is
    /// replaced and the consumer made again with it (it rejoins the group; records done
    /// are committed first if the old consumer still can, else read again).
    async fn renew_credentials(&mut self) {
        if !self.remake_source {
            if !self.relay.scram_refetch_due() {
                return;
            }
            // Both asked: each refusal is acted on once.
            let source_refused = self.source.take_login_refused();
            let sink_refused = self
                .relay
                .sink()
                .is_some_and(|sink| sink.take_login_refused());
            let refused = source_refused || sink_refused;
            if !refused || !self.relay.refetch_scram_secret(None).await {
                return;
            }
            self.transactions.forget();
            self.remake_source = true;
        }
        // What is done but waits for its commit interval is committed first, before the
        // new member joins, when the old consumer still can (a refusal may have been the
        // producer's alone), so the new one does not read it again.
        let _ = tokio::time::timeout(COMMIT_BEFORE_REMAKE, self.source.commit()).await;
        let brokers = self.origin.bootstrap_servers.clone().unwrap_or_default();
        let source = self
            .relay
            .client_auth(&brokers, self.settings.source_cluster_arn.as_deref())
            .and_then(|auth| {
                Source::new(self.source.options().clone(), &auth, self.metrics.clone())
            });
        match source {
            Ok(source) => {
                tracing::info!("the consumer logs in again, with the new SCRAM secret");
                self.remake_source = false;
                // The new consumer's statistics show its own partitions' lag.
                self.metrics.lag.clear();
                let old = std::mem::replace(&mut self.source, source);
                // Closing a consumer may wait for the brokers.
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(error) => {
                tracing::warn!(%error, "the consumer cannot be made again with the new SCRAM secret: trying again")
            }
        }
    }

    /// Exactly once with `RELAY_TRANSACTIONAL_ID` set: whether `sink` was fenced, which
    /// then means another process initialised transactions with the id. (With the
    /// generated id no other process has it: a fencing there comes from the coordinator
    /// aborting a transaction past its timeout, and a new producer goes on.)
    fn stops_when_fenced(&self, sink: &Sink) -> bool {
        self.settings.exactly_once && self.settings.transactional_id.is_some() && sink.fenced()
    }

    /// Why serving stopped after a fencing.
    fn fenced_error(&self, fatal: &str) -> Error {
        let id = self
            .relay
            .settings()
            .producer_overrides
            .iter()
            .rev()
            .find(|(name, _)| name == "transactional.id")
            .map_or("", |(_, id)| id.as_str());
        Error::Transaction(format!(
            "the producer was fenced ({fatal}): another process initialised transactions with \
             transactional.id {id:?} (RELAY_TRANSACTIONAL_ID). Either this process was replaced \
             and stops so that its successor alone relays, or RELAY_TRANSACTIONAL_ID is shared \
             by several processes, which would fence each other for ever: give each its own, or \
             leave it unset"
        ))
    }

    /// Runs a batch through the pipeline and commits it; stops waiting for the broker
    /// after `RELAY_BATCH_TIMEOUT_MS`.
    async fn process(&mut self, batch: Vec<Read>) -> Result<Committed, Error> {
        let started = Instant::now();
        if self.settings.exactly_once && !self.suspects.is_empty() {
            return self.process_isolated(batch, started).await;
        }
        let spans = spans(&batch);
        self.process_spans(batch, &spans, &spans, &NotDone::new(), started)
            .await
    }

    /// Exactly once with a suspect in the batch: the records before each suspect go
    /// first (the suspects' partitions stop there); a suspect at the head of its
    /// partition goes alone. The rest is read again.
    async fn process_isolated(
        &mut self,
        batch: Vec<Read>,
        started: Instant,
    ) -> Result<Committed, Error> {
        let all = spans(&batch);
        // A suspect the partition has already passed (committed meanwhile) is stale.
        self.suspects.retain(|partition, (offset, _)| {
            all.iter()
                .find(|s| s.batch_partition == *partition)
                .is_none_or(|s| *offset >= s.first)
        });
        let head = all.iter().find_map(|span| {
            self.suspects
                .get(&span.batch_partition)
                .filter(|(offset, _)| *offset == span.first)
                .map(|(offset, _)| (span.batch_partition.clone(), *offset))
        });
        let mut deferred = NotDone::new();
        let kept: Vec<Read> = match head {
            Some((partition, offset)) => {
                tracing::warn!(partition = %partition, offset, "exactly once: producing a record the broker rejected alone, in a transaction of its own");
                for span in &all {
                    let from = if span.batch_partition == partition {
                        offset + 1
                    } else {
                        span.first
                    };
                    if from <= span.last {
                        deferred.mark(span.batch_partition.clone(), from, None);
                    }
                }
                batch
                    .into_iter()
                    .filter(|r| r.record.batch_partition == partition && r.record.offset == offset)
                    .collect()
            }
            None => batch
                .into_iter()
                .filter(|r| match self.suspects.get(&r.record.batch_partition) {
                    Some((suspect, _)) if r.record.offset >= *suspect => {
                        deferred.mark(r.record.batch_partition.clone(), *suspect, None);
                        false
                    }
                    _ => true,
                })
                .collect(),
        };
        if kept.is_empty() {
            self.source.read_later(&all, &deferred);
            return Ok(Committed::Partly);
        }
        let spans = spans(&kept);
        self.process_spans(kept, &spans, &all, &deferred, started)
            .await
    }

    /// Runs the records of `batch` (spanning `spans`) and commits them. `all` spans what
    /// was read, `deferred` where partitions resume that this batch leaves for later.
    async fn process_spans(
        &mut self,
        batch: Vec<Read>,
        spans: &[Span],
        all: &[Span],
        deferred: &NotDone,
        started: Instant,
    ) -> Result<Committed, Error> {
        let records: Vec<SourceRecord> = batch.into_iter().map(|r| r.record).collect();
        let budget = started + self.settings.batch_timeout;
        let context = BatchContext {
            origin: self.origin.clone(),
            budget: Some(budget),
            settle_by: None,
            xray_trace_id: None,
            max_record_bytes: Some(self.settings.max_record_bytes),
            condemned: Arc::new(self.condemned.clone()),
        };
        let sink = match self.relay.producer(&self.brokers) {
            Ok(sink) => sink,
            Err(error) => {
                self.read_again(all, &first_offsets(all));
                return Err(error);
            }
        };
        let result = if self.settings.exactly_once {
            self.process_transaction(&sink, &context, spans, (all, deferred), records)
                .await
        } else {
            let relay = self.relay.clone();
            let brokers = self.brokers.clone();
            let outcome = relay
                .pipeline()
                .run(sink.clone(), &relay.renewal(&brokers), &context, records)
                .await;
            count(&self.metrics, &outcome);
            // Anything done shows the producer gets through.
            if outcome.not_done < outcome.records {
                self.through = true;
            } else if !outcome.failures.is_empty() {
                self.through = false;
            }
            Ok(self.commit_done(spans, &outcome).await)
        };
        // Only the batch's producer counts while it is the relay's (or was just retired,
        // after a failed abort that found it fenced by another process): one already
        // replaced (after an unknown commit or a failed abort, or renewed mid-batch) may
        // turn fatal in the background, fenced by its own successor.
        let current = self
            .relay
            .sink()
            .is_none_or(|current| Arc::ptr_eq(&current, &sink));
        if let Some(fatal) = sink.fatal_error().filter(|_| current) {
            if self.stops_when_fenced(&sink) {
                self.fenced = Some(fatal.clone());
            }
            tracing::warn!(error = %fatal, "the producer is in a fatal state: the next batch gets a new one");
            self.relay.retire(sink);
            self.transactions.forget();
            self.metrics.producer_ready.store(false, Ordering::Relaxed);
        } else {
            // Ready once a batch got through; not while nothing does.
            if matches!(result, Ok(Committed::All)) {
                self.through = true;
            }
            self.metrics
                .producer_ready
                .store(self.through, Ordering::Relaxed);
        }
        self.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// At least once: notes, per partition, the records up to the first not done as
    /// done (committed once the oldest has waited `RELAY_COMMIT_INTERVAL_MS`), and
    /// reads the rest again after a backoff.
    async fn commit_done(&mut self, spans: &[Span], outcome: &BatchOutcome) -> Committed {
        let failed = &outcome.failures;
        self.source.done_except(spans, failed);
        // Records done and committed are progress (liveness): the source reports it.
        self.source.commit_due().await;
        self.read_again(spans, failed);
        if failed.is_empty() {
            Committed::All
        } else {
            Committed::Partly
        }
    }

    fn read_again(&mut self, spans: &[Span], from: &NotDone) {
        self.source.read_again(
            spans,
            from,
            self.settings.retry_backoff,
            self.settings.retry_backoff_max,
        );
    }

    /// Exactly once: the batch's messages and offsets in one transaction, or none.
    async fn process_transaction(
        &mut self,
        sink: &Arc<Sink>,
        context: &BatchContext,
        spans: &[Span],
        (all, deferred): (&[Span], &NotDone),
        records: Vec<SourceRecord>,
    ) -> Result<Committed, Error> {
        let everything_again = first_offsets(all);
        if let Err(error) = self.transactions.begin(sink).await {
            self.read_again(all, &everything_again);
            return Err(error);
        }
        // No new producer in the middle of a transaction: a fatal producer fails the
        // batch, and the next one starts with a new producer.
        let outcome = self
            .relay
            .pipeline()
            .run(sink.clone(), &NoRenewal, context, records)
            .await;
        let done = outcome.failures.is_empty() && outcome.not_done == 0;
        let end = if done {
            self.transactions.commit(sink, &self.source, spans).await
        } else {
            TxnEnd::Aborted(Error::Transaction(format!(
                "{} records not done: the transaction is aborted",
                outcome.not_done
            )))
        };
        match end {
            TxnEnd::Committed => {
                count(&self.metrics, &outcome);
                self.metrics.progress();
                // What this transaction committed is settled: its suspects went through
                // alone (a sibling's fault), its condemned records are dead letters.
                self.suspects.retain(|partition, (offset, _)| {
                    spans
                        .iter()
                        .find(|s| s.batch_partition == *partition)
                        .is_none_or(|s| *offset > s.last)
                });
                self.condemned.retain(|(partition, offset), _| {
                    spans
                        .iter()
                        .find(|s| s.batch_partition == *partition)
                        .is_none_or(|s| *offset > s.last)
                });
                self.source.read_later(all, deferred);
                if deferred.is_empty() {
                    Ok(Committed::All)
                } else {
                    Ok(Committed::Partly)
                }
            }
            TxnEnd::Aborted(error) => {
                self.through = false;
                self.abort(sink).await;
                self.count_aborted(&outcome);
                self.suspect(&outcome.rejected);
                self.read_again(all, &everything_again);
                Err(error)
            }
            TxnEnd::Unknown(error) if self.stops_when_fenced(sink) => {
                // Another process took the transactional id: it settles the
                // transaction; this one stops (see `fenced`).
                self.count_aborted(&outcome);
                Err(error)
            }
            TxnEnd::Unknown(error) => {
                // Committed or not, only the coordinator knows: the next producer's
                // init_transactions settles it, and the group's committed offsets
                // (read as stable) say where to go on.
                tracing::warn!(%error, "the transaction's outcome is unknown: replacing the producer; reading again from the committed offsets");
                self.relay.retire(sink.clone());
                self.transactions.forget();
                self.count_aborted(&outcome);
                let from = self.settle(all).await;
                self.read_again(all, &from);
                Err(error)
            }
        }
    }

    /// Exactly once, after a commit whose outcome is unknown: where each partition of
    /// the batch goes on. A new producer with the same `transactional.id` runs
    /// `init_transactions`, which makes the coordinator finish the pending transaction
    /// (commit it if it was committing, else abort it); then the group's committed
    /// offsets, read as stable, say what landed. Both are tried again after a backoff
    /// until they answer: falling back to the batch's first offsets would produce a
    /// commit that landed a second time. (At shutdown, the timeout stops this; nothing
    /// more is committed, and the partitions' next owner reads the committed offsets.)
    async fn settle(&mut self, all: &[Span]) -> NotDone {
        self.through = false;
        self.metrics.producer_ready.store(false, Ordering::Relaxed);
        let mut failures = 0u32;
        loop {
            let settled = self.initialise_producer().await;
            let committed = settled.and_then(|()| {
                self.source
                    .committed(all)
                    .map_err(|e| Error::Consumer(format!("committed offsets: {e}")))
            });
            match committed {
                Ok(from) => {
                    tracing::info!(?from, "the unknown transaction is settled: reading again from the committed offsets");
                    return from;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, failures, "the unknown transaction is not settled yet: trying again after a backoff");
                    let wait = backoff(
                        self.settings.retry_backoff,
                        self.settings.retry_backoff_max,
                        failures,
                    );
                    // Serving the group's events meanwhile: a long settle does not get
                    // the member evicted.
                    self.source.wait(wait).await;
                }
            }
        }
    }

    /// Exactly once, after an abort: records the broker rejected become suspects (per
    /// partition, the first rejected for its own bytes, else the first rejected), to be
    /// produced alone; a suspect rejected again, alone, is condemned: the next
    /// transaction dead-letters it with its offset, so the partition moves on instead of
    /// aborting forever.
    fn suspect(&mut self, rejected: &[Rejection]) {
        let mut partitions: Vec<&Arc<str>> = Vec::new();
        for r in rejected {
            if !partitions.contains(&&r.partition) {
                partitions.push(&r.partition);
            }
        }
        for partition in partitions {
            let of_partition: Vec<&Rejection> = rejected
                .iter()
                .filter(|r| r.partition == *partition)
                .collect();
            let current = self.suspects.get(partition).map(|(offset, _)| *offset);
            match verdict(current, &of_partition) {
                Verdict::Condemn(r) => {
                    tracing::warn!(%partition, offset = r.offset, error = %r.error, "exactly once: the broker rejected the record alone: it is poison");
                    self.suspects.remove(partition);
                    self.condemned
                        .insert((partition.clone(), r.offset), r.error.clone());
                }
                Verdict::Suspect(r) => {
                    tracing::warn!(%partition, offset = r.offset, error = %r.error, sibling = r.sibling, "exactly once: the broker rejected a record: the transaction is aborted; the record goes alone next");
                    self.suspects
                        .insert(partition.clone(), (r.offset, r.error.clone()));
                }
                Verdict::Keep => {}
            }
        }
    }

    /// Aborts the transaction. A producer that cannot abort cannot go on: it is
    /// retired. With the generated `transactional.id` it is replaced at once, and the
    /// new one's init_transactions (the same id) aborts what it left open. Not at the
    /// next batch: there may be none (the partitions revoked, a shutdown), no successor
    /// will ever use the id, and the open transaction would hold back read_committed
    /// readers, and the committed offsets of its partitions, until the transaction
    /// timeout. Should the new producer not initialise either, the next batch tries
    /// again.
    async fn abort(&mut self, sink: &Arc<Sink>) {
        let Err(error) = self.transactions.abort(sink).await else {
            return;
        };
        self.relay.retire(sink.clone());
        if self.settings.transactional_id.is_some() {
            // A stable id (RELAY_TRANSACTIONAL_ID) may have been taken by another
            // process, a successor, with the open transaction: a new producer here would
            // fence it in turn. The next batch's producer, or the successor, aborts what
            // is open; a fencing seen at the batch's end stops serving.
            tracing::warn!(%error, "abort_transaction failed: the next batch's producer aborts the transaction left open");
            return;
        }
        tracing::warn!(%error, "abort_transaction failed: replacing the producer, whose successor aborts the transaction left open");
        if let Err(error) = self.initialise_producer().await {
            tracing::warn!(%error, "the new producer has not initialised transactions: the next batch tries again");
        }
    }

    /// The relay's producer (a new one after a retirement) with its transactions
    /// initialised, which aborts what an earlier producer with the same
    /// `transactional.id` left open. A producer that turns fatal doing so is retired.
    async fn initialise_producer(&mut self) -> Result<(), Error> {
        let sink = self.relay.producer(&self.brokers)?;
        self.transactions.initialise(&sink).await.inspect_err(|_| {
            if sink.fatal_error().is_some() {
                self.relay.retire(sink.clone());
            }
        })
    }

    fn count_aborted(&self, outcome: &BatchOutcome) {
        self.metrics.records.inc_by(outcome.records as u64);
        self.metrics.failed.inc_by(outcome.records as u64);
        self.metrics.aborted.inc();
    }
}

/// How long the loop may go without progress before `/healthz` fails: longer than a
/// batch can take (its timeout and, exactly once, the commit's budget), and long enough
/// for librdkafka's statistics (what says the member is idle) to come twice. Unset, 120 s
/// or, when a batch may take longer, that and 10 s; set shorter, refused.
fn liveness_timeout(settings: &ServeSettings) -> Result<Duration, Error> {
    let longest = settings.batch_window
        + settings.batch_timeout
        + LIVENESS_MARGIN
        + if settings.exactly_once {
            COMMIT_BUDGET
        } else {
            // Records done are progress once committed.
            settings.commit_interval
        };
    let statistics = settings
        .consumer_overrides
        .iter()
        .rev()
        .find(|(name, _)| name == "statistics.interval.ms")
        .map_or(Some(STATISTICS_INTERVAL), |(_, ms)| {
            ms.parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
        });
    let Some(bound) = settings.liveness_timeout else {
        let bound = LIVENESS_TIMEOUT.max(longest + Duration::from_secs(10));
        return match statistics {
            Some(statistics) if statistics * 2 < bound => Ok(bound),
            _ => Err(statistics_refused()),
        };
    };
    let refused = |problem: String| {
        Error::Config(ConfigError::Env {
            name: "RELAY_LIVENESS_TIMEOUT_MS".to_owned(),
            value: bound.as_millis().to_string(),
            problem,
        })
    };
    if bound <= longest {
        return Err(refused(format!(
            "must be longer than a batch can take ({} ms: the batch window and timeout{}, and 2 s)",
            longest.as_millis(),
            if settings.exactly_once {
                ", and the commit's budget"
            } else {
                ", the commit interval"
            }
        )));
    }
    match statistics {
        Some(statistics) if statistics * 2 < bound => Ok(bound),
        Some(statistics) => Err(refused(format!(
            "must be longer than two statistics intervals ({} ms each: \
             RELAY_CONSUMER_STATISTICS_INTERVAL_MS): the statistics say when the member is idle",
            statistics.as_millis()
        ))),
        None => Err(statistics_refused()),
    }
}

fn statistics_refused() -> Error {
    Error::Config(ConfigError::Env {
        name: "RELAY_CONSUMER_STATISTICS_INTERVAL_MS".to_owned(),
        value: String::new(),
        problem: "serve needs librdkafka's statistics, at most half RELAY_LIVENESS_TIMEOUT_MS \
                  apart: they say when the member is idle (liveness)"
            .to_owned(),
    })
}

/// Counts a batch's outcome.
fn count(metrics: &Metrics, outcome: &BatchOutcome) {
    metrics.records.inc_by(outcome.records as u64);
    metrics.produced.inc_by(outcome.produced as u64);
    metrics.dead_lettered.inc_by(outcome.dead_lettered as u64);
    metrics.skipped.inc_by(outcome.skipped_total() as u64);
    metrics.failed.inc_by(outcome.not_done as u64);
}

/// Every span's first offset: the whole batch read again.
fn first_offsets(spans: &[Span]) -> NotDone {
    spans
        .iter()
        .map(|s| (s.batch_partition.clone(), s.first))
        .collect()
}

/// Exactly once: a fatal producer is not replaced within a transaction.
struct NoRenewal;

impl Renew for NoRenewal {
    fn renew(&self, failed: &Arc<Sink>) -> Result<Arc<Sink>, Error> {
        Err(Error::Producer(format!(
            "the transactional producer failed ({}); the batch is aborted and read again",
            failed.fatal_error().unwrap_or_default()
        )))
    }
}

/// What exactly once makes of one partition's rejections after an abort.
#[derive(Debug, PartialEq)]
enum Verdict<'a> {
    /// The suspect, sent alone, was rejected again: poison.
    Condemn(&'a Rejection),
    /// This record goes alone next.
    Suspect(&'a Rejection),
    /// The suspect already named goes first (it comes before every rejection).
    Keep,
}

/// `current`: the offset of the partition's suspect, if one was named. The suspect
/// rejected again is condemned. Otherwise the next suspect is the first record rejected
/// for its own bytes: one rejected only because another record of its request was
/// refused (librdkafka names the guilty record and fails the rest of the request
/// beside it) goes through once that record is out of the way, so isolating it first
/// would only cost an abort. When every rejection was a sibling's (the guilty record is
/// another partition's), the first rejected goes alone. A suspect named before and
/// earlier than that stays.
fn verdict<'a>(current: Option<i64>, rejected: &[&'a Rejection]) -> Verdict<'a> {
    if let Some(again) = rejected.iter().find(|r| Some(r.offset) == current) {
        return Verdict::Condemn(again);
    }
    let first = |own_only: bool| {
        rejected
            .iter()
            .filter(|r| !own_only || !r.sibling)
            .min_by_key(|r| r.offset)
            .copied()
    };
    match first(true).or_else(|| first(false)) {
        Some(next) if current.is_none_or(|c| next.offset < c) => Verdict::Suspect(next),
        _ => Verdict::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Stage;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    fn rejection(offset: i64, sibling: bool) -> Rejection {
        Rejection {
            partition: Arc::from("dms-0"),
            offset,
            error: RecordError::permanent(Stage::Sink, "delivery failed: invalid record"),
            sibling,
        }
    }

    type TestCluster =
        rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

    /// A mock cluster with the topics `dms` and `out`, and an exactly once server of
    /// `group` over it (not started).
    fn exactly_once_server(group: &str) -> (TestCluster, Server) {
        exactly_once_server_with(group, &[])
    }

    /// [`exactly_once_server`] with more settings.
    fn exactly_once_server_with(group: &str, more: &[(&str, &str)]) -> (TestCluster, Server) {
        use crate::transform::Routes;
        let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        for topic in ["dms", "out"] {
            cluster.create_topic(topic, 1, 1).expect("topic");
        }
        let brokers = cluster.bootstrap_servers();
        let vars = [
            ("RELAY_BROKERS", brokers.as_str()),
            ("RELAY_SOURCE_TOPICS", "dms"),
            ("RELAY_GROUP_ID", group),
            ("RELAY_HTTP_ADDR", "off"),
            ("RELAY_EXACTLY_ONCE", "true"),
        ];
        let vars = vars
            .iter()
            .chain(more)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (serve, settings) = Server::settings_from(vars).expect("settings");
        let routes = Routes::parse(
            "[[route]]\ntable = \"public.orders\"\ntopic = \"out\"\n",
            "test",
        )
        .expect("routes");
        let relay = Arc::new(Relay::with_routes(settings, routes));
        let server = Server::new(relay, serve).expect("server");
        (cluster, server)
    }

    /// Transactions the brokers refuse to initialise with a fatal answer (here a
    /// transaction timeout above their maximum) stop serve at start with an error that
    /// names the settings to check, instead of a loop that never relays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fatal_refusal_to_initialise_transactions_stops_serve_at_start() {
        let (cluster, mut server) = exactly_once_server("refused");
        cluster.request_errors(
            RDKafkaApiKey::InitProducerId,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT],
        );
        let started = tokio::time::timeout(Duration::from_secs(30), server.start())
            .await
            .expect("start ends");
        let error = started.expect_err("refused").to_string();
        assert!(
            error.contains("RELAY_PRODUCER_TRANSACTION_TIMEOUT_MS"),
            "{error}"
        );
    }

    /// A transaction whose abort fails is not left open until the next batch (there
    /// may be none): the producer is replaced at once, and the new one has initialised
    /// transactions (with the same `transactional.id`, which aborts the open one).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_abort_replaces_the_producer_at_once() {
        let (cluster, mut server) = exactly_once_server("abort");
        let sink = failed_abort(&cluster, &mut server).await;
        let current = server.relay.sink().expect("a new producer already");
        assert!(
            !Arc::ptr_eq(&current, &sink),
            "the failed producer is replaced"
        );
        assert!(
            server.transactions.initialised_with(&current),
            "the new producer has initialised transactions"
        );
    }

    /// With `RELAY_TRANSACTIONAL_ID` set, an abort that fails (here because another
    /// process took the id) makes no new producer at once (it could fence that process
    /// in turn, and abort its transaction): the producer is retired, and the batch's end
    /// stops serving when it was fenced.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_abort_fenced_by_another_process_makes_no_new_producer() {
        let (cluster, mut server) =
            exactly_once_server_with("taken", &[("RELAY_TRANSACTIONAL_ID", "taken-1")]);
        let sink = failed_abort(&cluster, &mut server).await;
        assert!(server.stops_when_fenced(&sink), "fenced");
        assert!(server.relay.sink().is_none(), "no new producer");
    }

    /// Begins a transaction on `server`'s producer, writes one message in it, and
    /// aborts it with the coordinator answering `PRODUCER_FENCED`. Returns the producer.
    async fn failed_abort(cluster: &TestCluster, server: &mut Server) -> Arc<Sink> {
        let sink = server.relay.producer(&server.brokers).expect("producer");
        server.transactions.begin(&sink).await.expect("begun");
        let message = crate::kafka::producer::test_message("out");
        let mut ticket = sink.enqueue(&message, None).await.expect("enqueued");
        tokio::time::timeout(Duration::from_secs(10), ticket.delivered())
            .await
            .expect("reported")
            .expect("written in the transaction");
        cluster.request_errors(
            RDKafkaApiKey::EndTxn,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
        );
        tokio::time::timeout(Duration::from_secs(30), server.abort(&sink))
            .await
            .expect("the abort ends");
        assert!(sink.fatal_error().is_some(), "the abort failed");
        sink
    }

    /// The record rejected for its own bytes goes alone first, not the innocent
    /// neighbours before it that the same request's refusal failed too; with only
    /// siblings' rejections, the first goes; the suspect rejected again, alone, is
    /// condemned; an earlier suspect keeps its turn.
    #[test]
    fn the_guilty_record_goes_alone_before_its_innocent_neighbours() {
        let (innocent, guilty, later) = (
            rejection(10, true),
            rejection(11, false),
            rejection(12, true),
        );
        let all = [&innocent, &guilty, &later];
        assert_eq!(verdict(None, &all), Verdict::Suspect(&guilty));
        assert_eq!(
            verdict(None, &[&innocent, &later]),
            Verdict::Suspect(&innocent)
        );
        assert_eq!(verdict(Some(11), &[&guilty]), Verdict::Condemn(&guilty));
        assert_eq!(verdict(Some(11), &all), Verdict::Condemn(&guilty));
        assert_eq!(verdict(Some(9), &all), Verdict::Keep);
        assert_eq!(verdict(Some(12), &[&guilty]), Verdict::Suspect(&guilty));
        assert_eq!(verdict(None, &[]), Verdict::Keep);
    }
}
