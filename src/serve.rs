//! `cdc-relay serve`: the same pipeline, fed by a Kafka consumer group instead of
//! Lambda's event source mapping.
//!
//! The loop: read a batch (up to `RELAY_BATCH_SIZE` records, `RELAY_BATCH_MAX_BYTES`
//! bytes, or `RELAY_BATCH_WINDOW_MS` after its first record), run it through the
//! unchanged [`Pipeline`](crate::pipeline::Pipeline), then commit. The batch is the unit
//! of everything: the consumer is polled only between batches, so a rebalance (which
//! librdkafka delivers inside a poll) never lands while a batch is in flight, and a
//! partition's records are never processed after it is lost. Records read but not yet
//! processed when their partition is revoked are dropped; their offsets were never
//! committed, so the partition's new owner reads them.
//!
//! **At least once** (default): per partition, the committed offset is the first record
//! not done, exactly what Lambda's partial batch response tells the event source
//! mapping. A partition with a record not done is sought back to it and paused for a
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::Producer;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::ServeSettings;
use crate::error::Error;
use crate::handler::Relay;
use crate::ops::{Metrics, PartitionLabel};
use crate::pipeline::{BatchContext, BatchOutcome, Renew};
use crate::sink::{RelayContext, Sink};
use crate::source::{EventOrigin, Payload, SourceRecord};

/// How long a transactional call (init, send offsets, commit, abort) may block.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a commit, seek or pause may block.
const CONSUMER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the loop and the consumer's context share: partitions revoked since the loop
/// last looked (the context writes them during a poll), and offsets of records done but
/// not yet committed (a commit failed), which a revocation commits before the partition
/// goes.
#[derive(Default)]
struct Shared {
    revoked: Vec<(String, i32)>,
    uncommitted: HashMap<(String, i32), i64>,
}

#[derive(Default)]
struct Group(Mutex<Shared>);

impl Group {
    fn take_revoked(&self) -> Vec<(String, i32)> {
        self.0
            .lock()
            .map(|mut g| std::mem::take(&mut g.revoked))
            .unwrap_or_default()
    }

    /// Notes `next` as the partition's offset to commit (never moving it back).
    fn done(&self, topic: &str, partition: i32, next: i64) {
        if let Ok(mut g) = self.0.lock() {
            let entry = g
                .uncommitted
                .entry((topic.to_owned(), partition))
                .or_insert(next);
            *entry = (*entry).max(next);
        }
    }

    /// Commits the offsets noted (only those of `partitions` when given); forgets
    /// those committed.
    fn commit<C: Consumer<SourceContext>>(
        &self,
        consumer: &C,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<(), KafkaError> {
        let Ok(mut g) = self.0.lock() else {
            return Ok(());
        };
        let chosen: Vec<((String, i32), i64)> = g
            .uncommitted
            .iter()
            .filter(|(k, _)| partitions.is_none_or(|p| p.contains(k)))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if chosen.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &chosen {
            offsets.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        consumer.commit(&offsets, CommitMode::Sync)?;
        for (key, next) in chosen {
            if g.uncommitted.get(&key) == Some(&next) {
                g.uncommitted.remove(&key);
            }
        }
        Ok(())
    }
}

/// The source consumer's librdkafka context: the producer's logging, redaction and
/// IAM tokens, plus the group's rebalances and lag.
pub struct SourceContext {
    inner: RelayContext,
    group: Arc<Group>,
    metrics: Arc<Metrics>,
}

impl ClientContext for SourceContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.metrics.lag.clear();
        for (topic, stats) in statistics.topics {
            for (partition, p) in stats.partitions {
                // librdkafka lists partition -1 (the topic's unassigned messages) and
                // partitions this member does not consume, with lag -1.
                if partition >= 0 && p.consumer_lag >= 0 {
                    let label = PartitionLabel {
                        topic: topic.clone(),
                        partition,
                    };
                    self.metrics.lag.get_or_create(&label).set(p.consumer_lag);
                }
            }
        }
    }

    fn generate_oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.inner.generate_oauth_token(oauthbearer_config)
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let list: Vec<(String, i32)> = partitions
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            let lost = consumer.assignment_lost();
            tracing::info!(partitions = ?list, lost, "partitions revoked");
            // Done but not committed yet (a commit failed): commit before they go.
            if !lost {
                if let Err(error) = self.group.commit(consumer, Some(&list)) {
                    tracing::warn!(%error, "commit before the revocation failed; the new owner reads those records again");
                }
            }
            if let Ok(mut g) = self.group.0.lock() {
                for partition in &list {
                    g.uncommitted.remove(partition);
                }
                g.revoked.extend(list);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let elements = partitions.elements();
            let list: Vec<(&str, i32)> = elements
                .iter()
                .map(|e| (e.topic(), e.partition()))
                .collect();
            tracing::info!(partitions = ?list, "partitions assigned");
        }
        if let Rebalance::Error(error) = rebalance {
            tracing::warn!(%error, "rebalance failed");
        }
        let assigned = consumer.assignment().map_or(0, |a| a.count());
        self.metrics.assigned.set(assigned as i64);
    }
}

/// A partition read back to an offset and paused until its backoff ends.
struct Paused {
    topic: String,
    partition: i32,
    until: Instant,
}

/// One partition's records in a batch.
#[derive(Debug, Clone)]
struct Span {
    batch_partition: Arc<str>,
    topic: Arc<str>,
    partition: i32,
    first: i64,
    last: i64,
}

/// A batch read from the source.
#[derive(Default)]
struct Batch {
    records: Vec<SourceRecord>,
    bytes: usize,
}

/// The serving loop: a consumer group over the DMS topics feeding the relay's pipeline.
pub struct Server {
    relay: Arc<Relay>,
    settings: ServeSettings,
    consumer: StreamConsumer<SourceContext>,
    /// The downstream cluster.
    brokers: String,
    origin: EventOrigin,
    group: Arc<Group>,
    metrics: Arc<Metrics>,
    /// The transactional producer `init_transactions` has run on (exactly once).
    initialised: Option<Arc<Sink>>,
    paused: Vec<Paused>,
    /// Failures in a row per partition, for the backoff.
    failures: HashMap<(Arc<str>, i32), u32>,
    names: Names,
}

/// Per source partition, the shared `"<topic>-<partition>"` and topic strings.
type Names = HashMap<(String, i32), (Arc<str>, Arc<str>)>;

/// What a batch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Every record done and committed.
    All,
    /// Some partitions read back (at least once: the done part committed; exactly once:
    /// nothing committed).
    Partly,
}

impl Server {
    /// Subscribes to the source topics. `relay` must have been built from settings whose
    /// producer overrides include the `transactional.id` when exactly once
    /// ([`Server::producer_overrides`]).
    pub fn new(relay: Arc<Relay>, settings: ServeSettings) -> Result<Server, Error> {
        let source = settings
            .source_brokers
            .clone()
            .ok_or_else(|| Error::Producer("no source brokers".to_owned()))?;
        let brokers = relay
            .settings()
            .brokers
            .clone()
            .unwrap_or_else(|| source.clone());
        let auth = relay.client_auth(&source, settings.source_cluster_arn.as_deref())?;
        let metrics = Arc::new(Metrics::new());
        let group = Arc::new(Group::default());
        let context = SourceContext {
            inner: RelayContext::new(&auth),
            group: group.clone(),
            metrics: metrics.clone(),
        };
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &source)
            .set("group.id", &settings.group_id)
            // Offsets are committed by the loop, only for records that are done.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A new group starts at the beginning: DMS topics are the change log.
            .set("auto.offset.reset", "earliest")
            // Rebalances move only the partitions that change owner.
            .set("partition.assignment.strategy", "cooperative-sticky")
            // A transactional source (rare for DMS) is read as committed.
            .set("isolation.level", "read_committed")
            // Lag per partition for /metrics.
            .set("statistics.interval.ms", "5000");
        auth.apply(&mut config);
        for (name, value) in &settings.consumer_overrides {
            config.set(name, value);
        }
        let consumer: StreamConsumer<SourceContext> =
            config.create_with_context(context).map_err(|e| {
                Error::Producer(format!(
                    "cannot create the source consumer for {source}: {e}"
                ))
            })?;
        let topics: Vec<&str> = settings.source_topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| Error::Producer(format!("cannot subscribe to {topics:?}: {e}")))?;
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
            bootstrap_servers: Some(source),
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
            consumer,
            brokers,
            origin,
            group,
            metrics,
            initialised: None,
            paused: Vec::new(),
            failures: HashMap::new(),
            names: HashMap::new(),
        })
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

    /// What `/healthz` and `/metrics` show.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` completes, then gives the batch in flight up to
    /// `RELAY_SHUTDOWN_TIMEOUT_MS` to finish and commit, and leaves the group. A batch
    /// still running then is abandoned uncommitted: its records are read again by the
    /// partitions' next owner (exactly once: its transaction is aborted by the broker).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        tokio::pin!(shutdown);
        'serving: loop {
            self.resume_due();
            self.commit_uncommitted();
            let batch = tokio::select! {
                batch = self.read_batch() => batch,
                () = &mut shutdown => break 'serving,
            };
            if batch.records.is_empty() {
                continue;
            }
            let shutdown_timeout = self.settings.shutdown_timeout;
            let processing = self.process(batch);
            tokio::pin!(processing);
            let (result, stop) = tokio::select! {
                result = &mut processing => (Some(result), false),
                () = &mut shutdown => {
                    tracing::info!(
                        timeout_ms = shutdown_timeout.as_millis() as u64,
                        "shutting down: finishing the batch in flight"
                    );
                    (tokio::time::timeout(shutdown_timeout, &mut processing).await.ok(), true)
                }
            };
            match result {
                Some(Err(error)) => {
                    tracing::warn!(%error, "batch not committed; read again after a backoff")
                }
                None => tracing::warn!(
                    "the batch in flight did not finish before the shutdown timeout; \
                     it is not committed"
                ),
                Some(Ok(_)) => {}
            }
            if stop {
                break;
            }
        }
        tracing::info!("shutting down");
        self.leave().await;
        Ok(())
    }

    /// Reads one batch: waits for the first record (or the next paused partition's
    /// resume), then fills until the size, byte or window limit.
    async fn read_batch(&mut self) -> Batch {
        let mut batch = Batch::default();
        let mut window_end: Option<tokio::time::Instant> = None;
        loop {
            let wake = self.paused.iter().map(|p| p.until).min();
            let until = match (window_end, wake) {
                (Some(end), _) => Some(end),
                (None, Some(w)) => Some(tokio::time::Instant::from_std(w)),
                (None, None) => None,
            };
            let received = match until {
                Some(at) => tokio::time::timeout_at(at, self.consumer.recv()).await.ok(),
                None => Some(self.consumer.recv().await),
            };
            let message = match received {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(%error, "source consumer error");
                    if batch.records.is_empty() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            };
            let record = source_record(&mut self.names, &message);
            drop(message);
            batch.bytes += record_bytes(&record);
            batch.records.push(record);
            if window_end.is_none() {
                window_end = Some(tokio::time::Instant::now() + self.settings.batch_window);
            }
            if batch.records.len() >= self.settings.batch_size
                || batch.bytes >= self.settings.batch_max_bytes
            {
                break;
            }
        }
        let revoked = self.group.take_revoked();
        if !revoked.is_empty() {
            let before = batch.records.len();
            batch.records.retain(|r| {
                !revoked
                    .iter()
                    .any(|(t, p)| **t == *r.topic && i64::from(*p) == r.partition)
            });
            self.paused.retain(|p| {
                !revoked
                    .iter()
                    .any(|(t, part)| *t == p.topic && *part == p.partition)
            });
            if batch.records.len() < before {
                tracing::info!(
                    dropped = before - batch.records.len(),
                    "records of revoked partitions dropped before processing"
                );
            }
        }
        // The pipeline wants each partition's records together, in offset order.
        batch
            .records
            .sort_by(|a, b| (&a.batch_partition, a.offset).cmp(&(&b.batch_partition, b.offset)));
        batch
    }

    /// Runs a batch through the pipeline and commits it; stops waiting for the broker
    /// after `RELAY_BATCH_TIMEOUT_MS`.
    async fn process(&mut self, batch: Batch) -> Result<Committed, Error> {
        let started = Instant::now();
        let spans = spans(&batch.records);
        let budget = started + self.settings.batch_timeout;
        let context = BatchContext {
            origin: self.origin.clone(),
            budget: Some(budget),
            settle_by: None,
            xray_trace_id: None,
        };
        let sink = match self.relay.producer(&self.brokers) {
            Ok(sink) => sink,
            Err(error) => {
                self.read_again(&spans, &HashMap::new());
                return Err(error);
            }
        };
        let result = if self.settings.exactly_once {
            self.process_transaction(&sink, &context, &spans, batch.records)
                .await
        } else {
            let relay = self.relay.clone();
            let brokers = self.brokers.clone();
            let outcome = relay
                .pipeline()
                .run(
                    sink.clone(),
                    &relay.renewal(&brokers),
                    &context,
                    batch.records,
                )
                .await;
            self.metrics.count(&outcome);
            self.commit_done(&spans, &outcome).await
        };
        if let Some(fatal) = sink.fatal_error() {
            tracing::warn!(error = %fatal, "the producer is in a fatal state: the next batch gets a new one");
            self.relay.retire(sink);
            self.initialised = None;
        } else {
            self.metrics.producer_ready.store(true, Ordering::Relaxed);
        }
        self.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// At least once: commits, per partition, up to the first record not done, and
    /// reads the rest again after a backoff.
    async fn commit_done(
        &mut self,
        spans: &[Span],
        outcome: &BatchOutcome,
    ) -> Result<Committed, Error> {
        let failed: HashMap<&str, i64> = outcome
            .failures
            .iter()
            .map(|f| (&*f.batch_partition, f.offset))
            .collect();
        for span in spans {
            let next = failed
                .get(&*span.batch_partition)
                .copied()
                .unwrap_or(span.last + 1);
            if next > span.first {
                self.group.done(&span.topic, span.partition, next);
            }
        }
        self.commit_uncommitted();
        let failed_owned: HashMap<Arc<str>, i64> = outcome
            .failures
            .iter()
            .map(|f| (f.batch_partition.clone(), f.offset))
            .collect();
        self.read_again(spans, &failed_owned);
        Ok(if outcome.failures.is_empty() {
            Committed::All
        } else {
            Committed::Partly
        })
    }

    /// Commits the offsets of records done. On failure they stay noted: retried before
    /// the next batch, at a revocation and at shutdown.
    fn commit_uncommitted(&self) {
        if self.consumer.assignment_lost() {
            tracing::warn!("the group took the partitions away: not committing; their new owner reads the records again");
            return;
        }
        if let Err(error) = tokio::task::block_in_place(|| self.group.commit(&self.consumer, None))
        {
            tracing::warn!(%error, "commit failed; retried before the next batch");
        }
    }

    /// Exactly once: the batch's messages and offsets in one transaction, or none.
    async fn process_transaction(
        &mut self,
        sink: &Arc<Sink>,
        context: &BatchContext,
        spans: &[Span],
        records: Vec<SourceRecord>,
    ) -> Result<Committed, Error> {
        let everything_again: HashMap<Arc<str>, i64> = spans
            .iter()
            .map(|s| (s.batch_partition.clone(), s.first))
            .collect();
        if let Err(error) = self.begin(sink) {
            self.read_again(spans, &everything_again);
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
        let committed = if done {
            self.commit_transaction(sink, spans)
        } else {
            Err(Error::Producer(format!(
                "{} records not done: the transaction is aborted",
                outcome.not_done
            )))
        };
        match committed {
            Ok(()) => {
                self.metrics.count(&outcome);
                self.read_again(spans, &HashMap::new());
                Ok(Committed::All)
            }
            Err(error) => {
                self.abort(sink);
                self.metrics.records.inc_by(outcome.records as u64);
                self.metrics.failed.inc_by(outcome.records as u64);
                self.metrics.aborted.inc();
                self.read_again(spans, &everything_again);
                Err(error)
            }
        }
    }

    /// Initialises the transactional producer once, then begins a transaction.
    fn begin(&mut self, sink: &Arc<Sink>) -> Result<(), Error> {
        let txn = sink.transactions();
        if !self
            .initialised
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, sink))
        {
            tokio::task::block_in_place(|| txn.init_transactions(TRANSACTION_TIMEOUT))
                .map_err(|e| Error::Producer(format!("init_transactions: {e}")))?;
            self.initialised = Some(sink.clone());
        }
        txn.begin_transaction()
            .map_err(|e| Error::Producer(format!("begin_transaction: {e}")))
    }

    fn commit_transaction(&self, sink: &Arc<Sink>, spans: &[Span]) -> Result<(), Error> {
        if self.consumer.assignment_lost() {
            return Err(Error::Producer(
                "the group took the partitions away during the batch".to_owned(),
            ));
        }
        let mut offsets = TopicPartitionList::new();
        for span in spans {
            offsets
                .add_partition_offset(&span.topic, span.partition, Offset::Offset(span.last + 1))
                .map_err(|e| Error::Producer(format!("offset list: {e}")))?;
        }
        let group = self
            .consumer
            .group_metadata()
            .ok_or_else(|| Error::Producer("no consumer group metadata".to_owned()))?;
        let txn = sink.transactions();
        tokio::task::block_in_place(|| {
            txn.send_offsets_to_transaction(&offsets, &group, TRANSACTION_TIMEOUT)
                .map_err(|e| Error::Producer(format!("send_offsets_to_transaction: {e}")))?;
            txn.commit_transaction(TRANSACTION_TIMEOUT)
                .map_err(|e| Error::Producer(format!("commit_transaction: {e}")))
        })
    }

    fn abort(&mut self, sink: &Arc<Sink>) {
        let txn = sink.transactions();
        if let Err(error) =
            tokio::task::block_in_place(|| txn.abort_transaction(TRANSACTION_TIMEOUT))
        {
            // A producer that cannot abort cannot go on: the next batch gets a new one,
            // whose init_transactions aborts what this one left open.
            tracing::warn!(%error, "abort_transaction failed: replacing the producer");
            self.relay.retire(sink.clone());
            self.initialised = None;
        }
    }

    /// Seeks every partition in `from` back to its offset and pauses it for its
    /// backoff; partitions of `spans` not in `from` had no failure.
    fn read_again(&mut self, spans: &[Span], from: &HashMap<Arc<str>, i64>) {
        for span in spans {
            let key = (span.topic.clone(), span.partition);
            let Some(&offset) = from.get(&span.batch_partition) else {
                self.failures.remove(&key);
                continue;
            };
            let failures = self.failures.entry(key).or_insert(0);
            *failures = failures.saturating_add(1);
            let backoff = self
                .settings
                .retry_backoff
                .saturating_mul(1u32 << (*failures - 1).min(16))
                .min(self.settings.retry_backoff_max);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&span.topic, span.partition);
            let result = tokio::task::block_in_place(|| {
                self.consumer.pause(&tpl)?;
                self.consumer.seek(
                    &span.topic,
                    span.partition,
                    Offset::Offset(offset),
                    CONSUMER_CALL_TIMEOUT,
                )
            });
            match result {
                Ok(()) => {
                    tracing::info!(
                        topic = %span.topic, partition = span.partition, offset,
                        backoff_ms = backoff.as_millis() as u64,
                        "partition read again from the first record not done, after a backoff"
                    );
                    self.paused.push(Paused {
                        topic: span.topic.to_string(),
                        partition: span.partition,
                        until: Instant::now() + backoff,
                    });
                }
                // Not assigned any more: its new owner starts from the committed offset.
                Err(error) => {
                    tracing::warn!(topic = %span.topic, partition = span.partition, %error, "cannot read the partition again here");
                }
            }
        }
    }

    /// Resumes the paused partitions whose backoff has ended.
    fn resume_due(&mut self) {
        let now = Instant::now();
        let (due, waiting): (Vec<Paused>, Vec<Paused>) = std::mem::take(&mut self.paused)
            .into_iter()
            .partition(|p| p.until <= now);
        self.paused = waiting;
        for p in due {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&p.topic, p.partition);
            if let Err(error) = self.consumer.resume(&tpl) {
                tracing::debug!(topic = %p.topic, partition = p.partition, %error, "resume");
            }
        }
    }

    /// Leaves the group (its partitions go to the other members at once) and flushes
    /// the producer.
    async fn leave(self) {
        tracing::info!("leaving the consumer group");
        self.commit_uncommitted();
        self.consumer.unsubscribe();
        // Serve the revocation the unsubscribe triggers, so the group rebalances now
        // rather than after the session timeout.
        let _ = tokio::time::timeout(Duration::from_millis(500), self.consumer.recv()).await;
        let consumer = self.consumer;
        let relay = self.relay;
        let _ = tokio::task::spawn_blocking(move || {
            drop(consumer);
            if let Some(sink) = relay.sink() {
                let _ = sink.flush(Duration::from_secs(5));
            }
        })
        .await;
    }
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

/// Each partition's first and last offset in a batch sorted by partition and offset.
fn spans(records: &[SourceRecord]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    for r in records {
        match spans.last_mut() {
            Some(span) if span.batch_partition == r.batch_partition => span.last = r.offset,
            _ => spans.push(Span {
                batch_partition: r.batch_partition.clone(),
                topic: r.topic.clone(),
                partition: r.partition as i32,
                first: r.offset,
                last: r.offset,
            }),
        }
    }
    spans
}

/// A consumed message as the pipeline's source record.
fn source_record(names: &mut Names, message: &BorrowedMessage<'_>) -> SourceRecord {
    let (batch_partition, topic) = names
        .entry((message.topic().to_owned(), message.partition()))
        .or_insert_with(|| {
            (
                Arc::from(format!("{}-{}", message.topic(), message.partition())),
                Arc::from(message.topic()),
            )
        })
        .clone();
    SourceRecord {
        batch_partition,
        topic,
        partition: i64::from(message.partition()),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
        key: message.key().map(|k| Payload::Bytes(k.to_vec())),
        value: message.payload().map(|v| Payload::Bytes(v.to_vec())),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// A record's size towards `RELAY_BATCH_MAX_BYTES`.
fn record_bytes(record: &SourceRecord) -> usize {
    let payload = |p: &Option<Payload>| match p {
        Some(Payload::Bytes(b)) => b.len(),
        Some(Payload::Base64(t)) => t.len(),
        None => 0,
    };
    payload(&record.key)
        + payload(&record.value)
        + record
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum::<usize>()
}
