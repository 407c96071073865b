//! The source consumer both long-running shells share (`serve` and `esm`): a consumer
//! group over the DMS topics that reads batches and commits only what is done.
//!
//! The batch is the unit of everything: `serve`'s consumer is polled only between
//! batches (or while it waits, through [`Source::wait`]), so a rebalance, which
//! librdkafka delivers inside a poll, never lands while a batch is in flight, and a
//! partition's records are never processed after it is lost. `esm` also serves the
//! group's events within a batch, between invocations ([`Source::serve_pending`],
//! [`Source::serve_while`]); records of a partition lost meanwhile are dropped before
//! the next invocation ([`Source::drop_stale`]), and its batch does not seek it back.
//! Records read but not processed when their partition is revoked are dropped; their
//! offsets were never committed, so the partition's new owner reads them. Offsets of records done are committed on an
//! interval (`serve` at least once: one commit for the batches of that time; `esm`:
//! after every batch), at once before their partition is revoked and when the member
//! leaves, and again before the next batch when a commit failed.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
    StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, Timestamp, TopicPartitionList};

use crate::error::Error;
use crate::kafka::ClientAuth;
use crate::kafka::RelayContext;
use crate::ops::{Metrics, PartitionLabel};
use crate::source::{NotDone, Payload, SourceRecord};

/// How long a commit, seek or pause may block.
pub(crate) const CONSUMER_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// librdkafka's `max.poll.interval.ms` when the consumer properties do not set it.
const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// Checks that a batch (`batch`: its timeout, and under exactly once its commit too) ends
/// inside the consumer's `max.poll.interval.ms` (from `consumer_properties`, else
/// librdkafka's 300 s): serve does not poll the consumer while a batch runs, and past the
/// interval the member leaves the group, its partitions go to another member and two
/// processes write them at once.
pub(crate) fn check_poll_interval(
    batch: Duration,
    consumer_properties: &[(String, String)],
) -> Result<(), Error> {
    let interval = crate::kafka::property_millis(
        consumer_properties,
        "max.poll.interval.ms",
        "RELAY_CONSUMER_MAX_POLL_INTERVAL_MS",
        DEFAULT_MAX_POLL_INTERVAL,
    )
    .map_err(Error::Consumer)?;
    if batch >= interval {
        return Err(Error::Consumer(format!(
            "a batch may take {} ms (RELAY_BATCH_TIMEOUT_MS, with its commit, and under \
             exactly once what follows a failed commit), \
             not less than the consumer's max.poll.interval.ms ({} ms, \
             RELAY_CONSUMER_MAX_POLL_INTERVAL_MS): the member would leave the group in the \
             middle of a batch and another would write its partitions too. Lower \
             RELAY_BATCH_TIMEOUT_MS or raise the interval",
            batch.as_millis(),
            interval.as_millis()
        )));
    }
    Ok(())
}

/// The longest [`Source::read_batch`] waits for a first record before it returns an
/// empty batch.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// While a commit is under way and offsets noted after it are already due, how often
/// [`Source::read_batch`] looks again whether it has ended (so those offsets go out
/// just after it, not at the idle tick).
const UNDER_WAY_LOOK_AGAIN: Duration = Duration::from_millis(20);

/// How long [`Source::serve_pending`] serves the group's events: enough for one poll of
/// the consumer's queue and the events it finds waiting.
#[cfg(feature = "esm")]
const PENDING_EVENTS_WAIT: Duration = Duration::from_millis(1);

/// How often librdkafka reports its statistics (unless `RELAY_CONSUMER_*` says otherwise).
pub(crate) const STATISTICS_INTERVAL: Duration = Duration::from_secs(5);

/// What a [`Source`] reads and how it batches.
#[derive(Debug, Clone)]
pub(crate) struct SourceOptions {
    /// The source cluster.
    pub brokers: String,
    /// The topics to consume.
    pub topics: Vec<String>,
    /// Consumer group.
    pub group_id: String,
    /// Most records per batch.
    pub batch_size: usize,
    /// Longest wait for a batch to fill after its first record.
    pub batch_window: Duration,
    /// How long offsets of records done may wait to be committed, so that one commit
    /// covers the batches of that time (zero: a commit after every batch). Revocations
    /// and leaving the group commit what is done at once.
    pub commit_interval: Duration,
    /// Most bytes per batch, as [`SourceOptions::record_size`] counts them.
    pub batch_max_bytes: usize,
    /// A record's size towards `batch_max_bytes`.
    pub record_size: fn(&SourceRecord) -> usize,
    /// librdkafka properties applied last (`RELAY_CONSUMER_*`).
    pub overrides: Vec<(String, String)>,
}

/// What the loop and the consumer's context share (the context writes during a poll):
///
/// - per partition, how many times it was revoked (its *epoch*): a record read under an
///   older epoch belongs to an assignment that was lost, even when the partition has
///   been assigned back since;
/// - offsets of records done but not committed yet (waiting for the commit interval, or
///   a commit failed), which a revocation commits before the partition goes.
#[derive(Default)]
struct Shared {
    epochs: HashMap<(String, i32), u64>,
    uncommitted: HashMap<(String, i32), i64>,
    /// When the oldest offset in `uncommitted` was noted: it is committed
    /// [`SourceOptions::commit_interval`] after that at the latest.
    pending_since: Option<tokio::time::Instant>,
}

/// The shared state, locked only for short reads and writes (never across a call to
/// the brokers: the loop's thread takes it to read and to note records done), and a
/// second lock that serialises commits to the brokers, held across each synchronous
/// round trip: commits go out one at a time, each with the latest offsets, so a
/// group's committed offsets never move back.
#[derive(Default)]
struct Group {
    state: Mutex<Shared>,
    committing: Mutex<()>,
    /// A commit on a blocking thread is under way (or waiting for its turn): the
    /// commits that fall due meanwhile are left to the next chance instead of piling up
    /// threads behind a coordinator that answers late.
    under_way: AtomicBool,
}

impl Group {
    fn epoch(&self, topic: &str, partition: i32) -> u64 {
        self.state
            .lock()
            .ok()
            .and_then(|g| g.epochs.get(&(topic.to_owned(), partition)).copied())
            .unwrap_or(0)
    }

    /// Notes `next` as the partition's offset to commit (never moving it back), unless
    /// the partition was revoked since `epoch`.
    fn done(&self, topic: &str, partition: i32, next: i64, epoch: u64) {
        if let Ok(mut g) = self.state.lock() {
            let key = (topic.to_owned(), partition);
            if g.epochs.get(&key).copied().unwrap_or(0) != epoch {
                return;
            }
            if g.uncommitted.is_empty() {
                g.pending_since = Some(tokio::time::Instant::now());
            }
            let entry = g.uncommitted.entry(key).or_insert(next);
            *entry = (*entry).max(next);
        }
    }

    /// The turn to commit: waits for a commit under way to end (`within` at most when
    /// given; none when it did not end by then). Blocks: call it on a blocking thread, or
    /// where waiting is meant (a revocation, which bounds it).
    fn turn(&self, within: Option<Duration>) -> Option<MutexGuard<'_, ()>> {
        // The lock guards no data: one a panic poisoned is taken all the same.
        let Some(within) = within else {
            return Some(
                self.committing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
        };
        let until = std::time::Instant::now() + within;
        loop {
            match self.committing.try_lock() {
                Ok(turn) => return Some(turn),
                Err(TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < until => {
                    std::thread::sleep(UNDER_WAY_LOOK_AGAIN);
                }
                Err(TryLockError::WouldBlock) => return None,
            }
        }
    }

    /// With the turn to commit, commits the offsets noted (only those of `partitions`
    /// when given); forgets those committed (unless noted further meanwhile). Whether
    /// there was anything to commit. One round trip to the brokers.
    fn commit<C: Consumer<SourceContext>>(
        &self,
        _turn: MutexGuard<'_, ()>,
        consumer: &C,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<bool, KafkaError> {
        let taken = tokio::time::Instant::now();
        let chosen: Vec<((String, i32), i64)> = {
            let Ok(g) = self.state.lock() else {
                return Ok(false);
            };
            g.uncommitted
                .iter()
                .filter(|(k, _)| partitions.is_none_or(|p| p.contains(k)))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        if chosen.is_empty() {
            return Ok(false);
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &chosen {
            offsets.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        consumer.commit(&offsets, CommitMode::Sync)?;
        if let Ok(mut g) = self.state.lock() {
            for (key, next) in chosen {
                if g.uncommitted.get(&key) == Some(&next) {
                    g.uncommitted.remove(&key);
                }
            }
            if g.uncommitted.is_empty() {
                g.pending_since = None;
            } else if partitions.is_none() {
                // What is left was noted while the commit was under way.
                g.pending_since = g.pending_since.map(|since| since.max(taken));
            }
        }
        Ok(true)
    }

    /// When the offsets noted are due to be committed, if any are noted.
    fn due(&self, interval: Duration) -> Option<tokio::time::Instant> {
        self.state
            .lock()
            .ok()
            .and_then(|g| g.pending_since)
            .map(|since| since + interval)
    }
}

/// The source consumer's librdkafka context: the producer's logging, redaction and
/// IAM tokens, plus the group's rebalances and lag.
pub(crate) struct SourceContext {
    inner: RelayContext,
    group: Arc<Group>,
    metrics: Arc<Metrics>,
    /// The partitions the lag gauge shows.
    lag_labels: Mutex<Vec<PartitionLabel>>,
    /// Whether the last statistics said nothing is left to read (see [`caught_up`]);
    /// cleared when a partition is set back for a retry.
    caught_up: AtomicBool,
    /// Fetch requests sent per broker, at the last statistics.
    fetches: Mutex<Fetches>,
}

/// Fetch requests sent per broker id (librdkafka's statistics).
type Fetches = HashMap<i32, i64>;

impl ClientContext for SourceContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let fetches: Fetches = statistics
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0)
            .map(|b| (b.nodeid, b.req.get("Fetch").copied().unwrap_or(0)))
            .collect();
        let before = self
            .fetches
            .lock()
            .map(|mut last| std::mem::replace(&mut *last, fetches))
            .unwrap_or_default();
        self.caught_up
            .store(caught_up(&statistics, &before), Ordering::Relaxed);
        let Ok(mut shown) = self.lag_labels.lock() else {
            return;
        };
        let mut now = Vec::new();
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
                    now.push(label);
                }
            }
        }
        // Partitions no longer reported (revoked) leave the gauge; the others were
        // overwritten in place, so a scrape never sees them missing.
        for gone in shown.iter().filter(|l| !now.contains(l)) {
            self.metrics.lag.remove(gone);
        }
        *shown = now;
    }

    fn generate_oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.inner.generate_oauth_token(oauthbearer_config)
    }
}

/// Nothing left to fetch, as far as librdkafka's statistics tell: the member is in the
/// group (its coordinator known and up; a cooperative rebalance goes on consuming, so
/// the join state matters only to a member without partitions), and every assigned partition is being fetched, from
/// a leader that is up, and has been fetched to its end (the last stable offset: the
/// source is read as committed), by a fetcher that still fetches: the broker it fetches
/// from got Fetch requests since the statistics `before` (an end learned before the
/// fetcher stopped is stale). A leader that is down or refuses the login is not up; an
/// end not known (before a fetch, or after a failed one) is not reached. What was
/// fetched is not what was done: [`Source::caught_up`] adds that.
pub(crate) fn caught_up(statistics: &Statistics, before: &Fetches) -> bool {
    let Some(group) = &statistics.cgrp else {
        return false;
    };
    // Without partitions, only a member in the group is idle (one that cannot join
    // has none either).
    if group.state != "up" || (group.assignment_size == 0 && group.join_state != "steady") {
        return false;
    }
    let up = |leader: i32| {
        leader >= 0
            && statistics
                .brokers
                .values()
                .any(|b| b.nodeid == leader && b.state == "UP")
    };
    let fetching = |broker: i32| {
        statistics
            .brokers
            .values()
            .find(|b| b.nodeid == broker && broker >= 0)
            .and_then(|b| b.req.get("Fetch"))
            .is_some_and(|now| before.get(&broker).is_some_and(|then| now > then))
    };
    let fetched = statistics
        .topics
        .values()
        .flat_map(|t| t.partitions.values())
        .filter(|p| p.partition >= 0 && p.fetch_state == "active")
        .map(|p| {
            p.ls_offset >= 0
                && p.hi_offset >= 0
                && p.next_offset >= p.ls_offset
                && up(p.leader)
                && (p.broker == p.leader || up(p.broker))
                && fetching(p.broker)
        })
        .collect::<Vec<bool>>();
    fetched.len() == usize::try_from(group.assignment_size).unwrap_or(usize::MAX)
        && fetched.iter().all(|&done| done)
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
            // Done but not committed yet (waiting for the commit interval, or a commit
            // failed): committed before they go. A synchronous commit, inside the poll
            // that serves the rebalance: one coordinator round trip on the polling task
            // (two when a commit is under way beside a batch: it goes first).
            // A commit under way (it commits these partitions' offsets noted before it
            // started) is waited for [`CONSUMER_CALL_TIMEOUT`] at most: one the
            // coordinator does not answer would otherwise hold the poll, and with it the
            // group's rebalance, for as long as it hangs.
            if !lost {
                match self.group.turn(Some(CONSUMER_CALL_TIMEOUT)) {
                    None => tracing::warn!(
                        within_ms = CONSUMER_CALL_TIMEOUT.as_millis() as u64,
                        "a commit under way did not end in time: the partitions go without a commit of their own; the new owner reads again what was done since the last commit"
                    ),
                    Some(turn) => match self.group.commit(turn, consumer, Some(&list)) {
                        Ok(true) => self.metrics.progress(),
                        Ok(false) => {}
                        Err(error) => {
                            tracing::warn!(%error, "commit before the revocation failed; the new owner reads those records again");
                        }
                    },
                }
            }
            if let Ok(mut g) = self.group.state.lock() {
                for partition in list {
                    g.uncommitted.remove(&partition);
                    *g.epochs.entry(partition).or_insert(0) += 1;
                }
                if g.uncommitted.is_empty() {
                    g.pending_since = None;
                }
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
            // librdkafka keeps a partition the application paused paused across a
            // revocation and a new assignment; a new assignment starts from the
            // committed offset, unpaused.
            if let Err(error) = consumer.resume(partitions) {
                tracing::debug!(%error, "resume on assignment");
            }
        }
        if let Rebalance::Error(error) = rebalance {
            tracing::warn!(%error, "rebalance failed");
        }
        let assigned = consumer.assignment().map_or(0, |a| a.count());
        self.metrics.assigned.set(assigned as i64);
    }
}

/// One partition's records in a batch.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    /// `"<topic>-<partition>"`, as in the records.
    pub batch_partition: Arc<str>,
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// First offset in the batch.
    pub first: i64,
    /// Last offset in the batch.
    pub last: i64,
    /// The partition's epoch when the records were read.
    pub epoch: u64,
}

/// Each partition's first and last offset in a batch sorted by partition and offset.
pub(crate) fn spans(reads: &[Read]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    for read in reads {
        let r = &read.record;
        match spans.last_mut() {
            Some(span) if span.batch_partition == r.batch_partition => span.last = r.offset,
            _ => spans.push(Span {
                batch_partition: r.batch_partition.clone(),
                topic: r.topic.clone(),
                partition: r.partition as i32,
                first: r.offset,
                last: r.offset,
                epoch: read.epoch,
            }),
        }
    }
    spans
}

/// How long a partition waits before it is read again after `failures` failures in a
/// row (at least 1): `first`, doubling per failure, at most `max`.
pub(crate) fn backoff(first: Duration, max: Duration, failures: u32) -> Duration {
    first
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(max)
}

/// A record read from the source, with what only a consumer knows of it.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    /// The record.
    pub record: SourceRecord,
    /// Whether the broker set the timestamp (`LOG_APPEND_TIME`) rather than the producer.
    #[cfg_attr(not(feature = "esm"), allow(dead_code))]
    pub log_append_time: bool,
    /// The partition's epoch when the record was read (see [`Source::done`]).
    pub epoch: u64,
}

/// A partition read back to an offset and paused until its backoff ends.
struct Paused {
    topic: String,
    partition: i32,
    /// Where it is read again from (sought again on resume when the first seek failed).
    offset: i64,
    epoch: u64,
    until: Instant,
}

/// Per source partition, the shared `"<topic>-<partition>"` and topic strings.
type Names = HashMap<(String, i32), (Arc<str>, Arc<str>)>;

/// The consumer group over the source topics.
pub(crate) struct Source {
    consumer: Arc<StreamConsumer<SourceContext>>,
    group: Arc<Group>,
    options: SourceOptions,
    names: Names,
    paused: Vec<Paused>,
    /// Failures in a row per partition, for the backoff, and the partition's epoch then.
    failures: HashMap<(Arc<str>, i32), (u32, u64)>,
    /// Records read that did not fit in the last batch, or while the loop was busy
    /// elsewhere ([`Source::serve_while`]): the first of the next, in the order read.
    carried: VecDeque<Read>,
}

impl Source {
    /// The id of the cluster the group reads, if it answers within `timeout`.
    pub(crate) async fn cluster_id(&self, timeout: Duration) -> Option<String> {
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.client().fetch_cluster_id(timeout))
            .await
            .ok()
            .flatten()
    }

    /// Creates the consumer (cooperative-sticky assignment, offsets committed only by
    /// [`Source::done`] + [`Source::commit`]) and subscribes.
    pub(crate) fn new(
        options: SourceOptions,
        auth: &ClientAuth,
        metrics: Arc<Metrics>,
    ) -> Result<Source, Error> {
        let group = Arc::new(Group::default());
        let context = SourceContext {
            inner: RelayContext::new(auth),
            group: group.clone(),
            metrics,
            lag_labels: Mutex::new(Vec::new()),
            caught_up: AtomicBool::new(false),
            fetches: Mutex::default(),
        };
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &options.brokers)
            .set("group.id", &options.group_id)
            // Offsets are committed by the loop, only for records that are done.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A new group starts at the beginning: DMS topics are the change log.
            .set("auto.offset.reset", "earliest")
            // Rebalances move only the partitions that change owner.
            .set("partition.assignment.strategy", "cooperative-sticky")
            // A transactional source is read as committed.
            .set("isolation.level", "read_committed")
            // Lag per partition for /metrics, and whether the member is idle (liveness).
            .set(
                "statistics.interval.ms",
                STATISTICS_INTERVAL.as_millis().to_string(),
            )
            // A fetch that finds nothing waits at most this long for new records (the
            // default, 500 ms, is latency a relay does not need; brokers that answer
            // only at the end of the wait make it the lag's floor).
            .set("fetch.wait.max.ms", "100");
        auth.apply(&mut config);
        for (name, value) in &options.overrides {
            config.set(name, value);
        }
        let redactor = crate::kafka::Redactor::new(auth.secrets());
        let consumer: StreamConsumer<SourceContext> =
            config.create_with_context(context).map_err(|e| {
                Error::Consumer(format!(
                    "cannot create the consumer for {}: {}",
                    options.brokers,
                    redactor.redact(&e.to_string())
                ))
            })?;
        let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| Error::Consumer(format!("cannot subscribe to {topics:?}: {e}")))?;
        Ok(Source {
            consumer: Arc::new(consumer),
            group,
            options,
            names: HashMap::new(),
            paused: Vec::new(),
            failures: HashMap::new(),
            carried: VecDeque::new(),
        })
    }

    /// Whether the brokers refused the consumer's login (SASL authentication) since
    /// the last call, and forgets it (as [`crate::kafka::producer::Sink::take_login_refused`]).
    pub(crate) fn take_login_refused(&self) -> bool {
        self.consumer
            .context()
            .inner
            .auth_refused
            .swap(false, Ordering::Relaxed)
    }

    /// What the source reads and how it batches (to make it again).
    pub(crate) fn options(&self) -> &SourceOptions {
        &self.options
    }

    /// Reads one batch: waits for the first record (or the next paused partition's
    /// resume, or [`IDLE_TICK`]: an empty batch lets the loop look after itself), then
    /// fills until the size, byte or window limit. Records of partitions
    /// revoked meanwhile are dropped; the rest come sorted by partition and offset.
    pub(crate) async fn read_batch(&mut self) -> Vec<Read> {
        self.resume_due();
        self.commit_due().await;
        let mut batch: Vec<Read> = Vec::new();
        let mut bytes = 0;
        let mut window_end: Option<tokio::time::Instant> = None;
        let idle_end = tokio::time::Instant::now() + IDLE_TICK;
        loop {
            let read = match self.carried.pop_front() {
                Some(read) => read,
                None => {
                    // Waiting for the first record: until a paused partition resumes,
                    // offsets done are due to be committed, or the idle tick.
                    let wake = self
                        .paused
                        .iter()
                        .map(|p| tokio::time::Instant::from_std(p.until))
                        .chain(self.commit_wake())
                        .min();
                    let until = match (window_end, wake) {
                        (Some(end), _) => end,
                        (None, Some(w)) => w.min(idle_end),
                        (None, None) => idle_end,
                    };
                    let received = tokio::time::timeout_at(until, self.consumer.recv())
                        .await
                        .ok();
                    match received {
                        None => break,
                        Some(Ok(message)) => read(&mut self.names, &self.group, &message),
                        Some(Err(error)) => {
                            tracing::warn!(%error, "source consumer error");
                            if batch.is_empty() {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            continue;
                        }
                    }
                }
            };
            let size = (self.options.record_size)(&read.record);
            if !batch.is_empty() && bytes + size > self.options.batch_max_bytes {
                self.carried.push_front(read);
                break;
            }
            bytes += size;
            batch.push(read);
            if window_end.is_none() {
                window_end = Some(tokio::time::Instant::now() + self.options.batch_window);
            }
            if batch.len() >= self.options.batch_size || bytes >= self.options.batch_max_bytes {
                break;
            }
        }
        self.drop_stale(&mut batch);
        // Each partition's records together, in offset order (the pipeline's contract).
        batch.sort_by(|a, b| {
            (&a.record.batch_partition, a.record.offset)
                .cmp(&(&b.record.batch_partition, b.record.offset))
        });
        batch
    }

    /// When a wait for records should end to commit the offsets noted: when they fall
    /// due; while a commit is under way and they are past due (they were noted after its
    /// snapshot, or their commit was skipped for it), every [`UNDER_WAY_LOOK_AGAIN`], so
    /// the next read commits them just after it ends (once, also when it failed); never
    /// when none are noted. Past due after a failed commit with none under way, they are
    /// retried at the next batch or idle tick (a coordinator that refuses is not asked
    /// again at once).
    fn commit_wake(&self) -> Option<tokio::time::Instant> {
        let due = self.group.due(self.options.commit_interval)?;
        let now = tokio::time::Instant::now();
        if due > now {
            Some(due)
        } else if self.group.under_way.load(Ordering::Acquire) {
            Some(now + UNDER_WAY_LOOK_AGAIN)
        } else {
            None
        }
    }

    /// Drops from `batch` (and from what is carried or paused) what belongs to an
    /// assignment since lost, and records of partitions paused for a read-again (read
    /// before the pause took effect; the partition is sought back to before them).
    pub(crate) fn drop_stale(&mut self, batch: &mut Vec<Read>) {
        // A pause counts only within the assignment it was made in: a partition revoked
        // and assigned back starts afresh from its committed offset.
        let stale = |group: &Group, paused: &[Paused], r: &Read| {
            r.epoch != group.epoch(&r.record.topic, r.record.partition as i32)
                || paused.iter().any(|p| {
                    p.epoch == r.epoch
                        && *p.topic == *r.record.topic
                        && i64::from(p.partition) == r.record.partition
                })
        };
        let before = batch.len();
        batch.retain(|r| !stale(&self.group, &self.paused, r));
        let (group, paused) = (&self.group, &self.paused);
        self.carried.retain(|r| !stale(group, paused, r));
        let group = &self.group;
        self.paused
            .retain(|p| p.epoch == group.epoch(&p.topic, p.partition));
        if batch.len() < before {
            tracing::info!(
                dropped = before - batch.len(),
                "records of revoked or paused partitions dropped before processing"
            );
        }
    }

    /// The group's committed offset of each span's partition (read as stable: a
    /// pending transactional commit settles first), as [`resume_points`] reads the
    /// answer: a partition with no committed offset is read again from the span's first
    /// record, and one the answer gives an error for fails the call.
    pub(crate) fn committed(&self, spans: &[Span]) -> Result<NotDone, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for span in spans {
            tpl.add_partition(&span.topic, span.partition);
        }
        let committed = tokio::task::block_in_place(|| {
            self.consumer.committed_offsets(tpl, CONSUMER_CALL_TIMEOUT)
        })?;
        let answers: Vec<Answered> = committed
            .elements()
            .iter()
            .map(|e| {
                (
                    e.topic().to_owned(),
                    e.partition(),
                    e.error().map(|()| e.offset()),
                )
            })
            .collect();
        resume_points(spans, &answers)
    }

    /// Notes that a partition's records before `next`, read under `epoch`, are done
    /// (committed by [`Source::commit`]); ignored when the partition was revoked since.
    pub(crate) fn done(&self, topic: &str, partition: i32, next: i64, epoch: u64) {
        self.group.done(topic, partition, next, epoch);
    }

    /// Notes every span's records done, except, per partition in `not_done`, those
    /// from the offset there on.
    pub(crate) fn done_except(&self, spans: &[Span], not_done: &NotDone) {
        for span in spans {
            let next = not_done.get(&span.batch_partition).unwrap_or(span.last + 1);
            if next > span.first {
                self.done(&span.topic, span.partition, next, span.epoch);
            }
        }
    }

    /// Commits the offsets of records done. On failure they stay noted: retried before
    /// the next batch, at a revocation and at shutdown. Records committed are progress
    /// (liveness).
    /// The commit runs on a blocking thread: a caller that stops waiting (the shutdown)
    /// is not held by brokers that do not answer.
    pub(crate) async fn commit(&self) -> bool {
        commit(self.consumer.clone(), self.group.clone(), IfUnderWay::Wait).await
    }

    /// Commits the offsets of records done once the oldest of them has waited
    /// [`SourceOptions::commit_interval`] (at once when that is zero, or after a failed
    /// commit).
    pub(crate) async fn commit_due(&self) {
        let due = self.group.due(self.options.commit_interval);
        if due.is_some_and(|due| tokio::time::Instant::now() >= due) {
            commit(self.consumer.clone(), self.group.clone(), IfUnderWay::Skip).await;
        }
    }

    /// Commits the offsets of records done when they fall due, for the loop to run
    /// beside a batch: the records of the batches before are committed on time however
    /// long this one takes (liveness counts commits). Touches nothing a poll serves; one
    /// commit at most, and never ends when nothing is noted.
    pub(crate) fn commit_when_due(&self) -> impl Future<Output = ()> + Send + 'static {
        let (consumer, group) = (self.consumer.clone(), self.group.clone());
        let due = self.group.due(self.options.commit_interval);
        async move {
            match due {
                Some(due) => {
                    tokio::time::sleep_until(due).await;
                    commit(consumer, group, IfUnderWay::Skip).await;
                }
                None => std::future::pending().await,
            }
        }
    }

    /// Nothing left to do, so far as this member knows: the last statistics said every
    /// assigned partition was fetched to its end (see [`caught_up`]), no partition of the
    /// assignment waits for a retry, and every record done is committed. Idle, not stuck
    /// (liveness).
    pub(crate) fn caught_up(&self) -> bool {
        // Each report counts once: statistics that stop coming are no progress.
        if !self
            .consumer
            .context()
            .caught_up
            .swap(false, Ordering::Relaxed)
            || !self.carried.is_empty()
        {
            return false;
        }
        let uncommitted = self
            .group
            .state
            .lock()
            .map_or(true, |g| !g.uncommitted.is_empty());
        if uncommitted {
            return false;
        }
        // A partition revoked since its failure is its new owner's (and, assigned back,
        // starts afresh).
        !self
            .failures
            .iter()
            .any(|((topic, partition), (_, epoch))| *epoch == self.group.epoch(topic, *partition))
    }

    /// Whether the group took this member's partitions away (a session timeout).
    pub(crate) fn assignment_lost(&self) -> bool {
        self.consumer.assignment_lost()
    }

    /// The group's metadata, for a transaction's offsets.
    pub(crate) fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }

    /// Seeks every partition of `spans` found in `from` back to its offset there and
    /// pauses it for its backoff (`first`, doubling per failure in a row, up to `max`);
    /// a partition not in `from` had no failure. A record carried over for such a
    /// partition is dropped (it comes again after the seek).
    pub(crate) fn read_again(
        &mut self,
        spans: &[Span],
        from: &NotDone,
        first: Duration,
        max: Duration,
    ) {
        self.set_back(spans, from, Some((first, max)));
    }

    /// Seeks every partition of `spans` found in `from` back to its offset there, to be
    /// read again at once: records a batch set aside for the next one, not failures (no
    /// backoff). A partition whose records before that offset went through made
    /// progress: its count of failures in a row starts again (exactly once isolating a
    /// rejected record commits the records before it, then the record alone, and each
    /// rejected record of a partition must not double the backoff of the next).
    pub(crate) fn read_later(&mut self, spans: &[Span], from: &NotDone) {
        self.set_back(spans, from, None);
    }

    /// [`Source::read_again`] with `retry` as its backoff (`first`, `max`), or
    /// [`Source::read_later`] without one.
    fn set_back(&mut self, spans: &[Span], from: &NotDone, retry: Option<(Duration, Duration)>) {
        for span in spans {
            // Revoked since the batch was read (esm serves the group's events during a
            // batch): the partition's new assignment, here or elsewhere, starts from the
            // committed offset; pausing or seeking it to this batch's offset would take
            // a later assignment back to it.
            if span.epoch != self.group.epoch(&span.topic, span.partition) {
                continue;
            }
            let key = (span.topic.clone(), span.partition);
            let Some(offset) = from.get(&span.batch_partition) else {
                self.failures.remove(&key);
                continue;
            };
            self.carried.retain(|r| {
                !(*r.record.topic == *span.topic && r.record.partition == i64::from(span.partition))
            });
            let backoff = match retry {
                Some((first, max)) => {
                    // Statistics from before the failure must not call the member idle.
                    self.consumer
                        .context()
                        .caught_up
                        .store(false, Ordering::Relaxed);
                    let epoch = self.group.epoch(&span.topic, span.partition);
                    let (failures, since) = self.failures.entry(key).or_insert((0, epoch));
                    if *since != epoch {
                        (*failures, *since) = (0, epoch);
                    }
                    *failures = failures.saturating_add(1);
                    backoff(first, max, *failures)
                }
                None => {
                    // Records of the partition before `offset` went through: progress.
                    if offset > span.first {
                        self.failures.remove(&key);
                    }
                    Duration::ZERO
                }
            };
            let epoch = self.group.epoch(&span.topic, span.partition);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&span.topic, span.partition);
            if let Err(error) = self.consumer.pause(&tpl) {
                // Not assigned any more: its new owner starts from the committed offset.
                tracing::warn!(topic = %span.topic, partition = span.partition, %error, "cannot pause the partition to read it again here");
                continue;
            }
            self.paused
                .retain(|p| !(*p.topic == *span.topic && p.partition == span.partition));
            self.paused.push(Paused {
                topic: span.topic.to_string(),
                partition: span.partition,
                offset,
                epoch,
                until: Instant::now() + backoff,
            });
            match self.seek(&span.topic, span.partition, offset) {
                Ok(()) => tracing::info!(
                    topic = %span.topic, partition = span.partition, offset,
                    backoff_ms = backoff.as_millis() as u64,
                    "partition read again from the first record not done, after a backoff"
                ),
                Err(error) => tracing::warn!(
                    topic = %span.topic, partition = span.partition, offset, %error,
                    "seek failed; the partition stays paused and is sought again before it resumes"
                ),
            }
        }
    }

    fn seek(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaError> {
        tokio::task::block_in_place(|| {
            self.consumer.seek(
                topic,
                partition,
                Offset::Offset(offset),
                CONSUMER_CALL_TIMEOUT,
            )
        })
    }

    /// Resumes the paused partitions whose backoff has ended, seeking each to its
    /// offset first (again: the first seek may have failed); one whose seek fails stays
    /// paused for another second.
    fn resume_due(&mut self) {
        let now = Instant::now();
        let (due, mut waiting): (Vec<Paused>, Vec<Paused>) = std::mem::take(&mut self.paused)
            .into_iter()
            .partition(|p| p.until <= now);
        for mut p in due {
            if p.epoch != self.group.epoch(&p.topic, p.partition) {
                continue;
            }
            if let Err(error) = self.seek(&p.topic, p.partition, p.offset) {
                tracing::warn!(topic = %p.topic, partition = p.partition, offset = p.offset, %error, "seek failed; still paused");
                p.until = now + Duration::from_secs(1);
                waiting.push(p);
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&p.topic, p.partition);
            if let Err(error) = self.consumer.resume(&tpl) {
                tracing::debug!(topic = %p.topic, partition = p.partition, %error, "resume");
            }
        }
        self.paused = waiting;
    }

    /// Waits `duration` while serving the group's events (see [`Source::serve_while`]).
    pub(crate) async fn wait(&mut self, duration: Duration) {
        self.serve_while(tokio::time::sleep(duration)).await;
    }

    /// Serves the group's events already waiting (a revocation, an assignment) and
    /// counts as a poll for `max.poll.interval.ms`, without waiting for records: between
    /// two invocations of a chain (bisection, a batch split by partial failures), so the
    /// chain never gets the member evicted and a revocation is answered before the next
    /// invocation (whose lost records [`Source::drop_stale`] then drops).
    #[cfg(feature = "esm")]
    pub(crate) async fn serve_pending(&mut self) {
        // Pending at its first poll, whatever the pause before it cost: the consumer's
        // queue is polled at least once before the wait ends.
        self.serve_while(async {
            tokio::task::yield_now().await;
            tokio::time::sleep(PENDING_EVENTS_WAIT).await;
        })
        .await;
    }

    /// Runs `work` (an invocation, a backoff) while serving the group's events
    /// (rebalances, heartbeats) and polling at least every [`IDLE_TICK`], so the member
    /// neither misses a rebalance nor passes `max.poll.interval.ms` however long `work`
    /// takes. Every assigned partition is paused meanwhile; a record read anyway (fetched
    /// before the pause, or from a partition assigned meanwhile, which is paused then) is
    /// kept for the next batch.
    pub(crate) async fn serve_while<F: Future>(&mut self, work: F) -> F::Output {
        let mut paused_here = self.consumer.assignment().unwrap_or_default();
        let _ = self.consumer.pause(&paused_here);
        tokio::pin!(work);
        let output = loop {
            tokio::select! {
                output = &mut work => break output,
                received = tokio::time::timeout(IDLE_TICK, self.consumer.recv()) => match received {
                    Err(_) => {}
                    Ok(Ok(message)) => {
                        let read = read(&mut self.names, &self.group, &message);
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition(message.topic(), message.partition());
                        if self.consumer.pause(&tpl).is_ok() {
                            paused_here.add_partition(message.topic(), message.partition());
                        }
                        drop(message);
                        self.carried.push_back(read);
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "source consumer error"),
                },
            }
        };
        // Partitions paused for their own backoff (in their current assignment) stay
        // paused.
        let mut resume = TopicPartitionList::new();
        for e in paused_here.elements() {
            if !self.paused.iter().any(|p| {
                p.topic == e.topic()
                    && p.partition == e.partition()
                    && p.epoch == self.group.epoch(&p.topic, p.partition)
            }) {
                resume.add_partition(e.topic(), e.partition());
            }
        }
        let _ = self.consumer.resume(&resume);
        output
    }

    /// Commits what is done and leaves the group (its partitions go to the other
    /// members at once).
    /// Gives up waiting after `within`: a commit or a close the brokers do not answer is
    /// left behind (the partitions then move after the session timeout).
    pub(crate) async fn leave(self, within: Duration) {
        tracing::info!("leaving the consumer group");
        let leaving = tokio::spawn(async move {
            self.commit().await;
            self.consumer.unsubscribe();
            // Serve the revocation the unsubscribe triggers, so the group rebalances now
            // rather than after the session timeout.
            let _ = tokio::time::timeout(Duration::from_millis(500), self.consumer.recv()).await;
            let consumer = self.consumer;
            let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        });
        if tokio::time::timeout(within, leaving).await.is_err() {
            tracing::warn!(
                within_ms = within.as_millis() as u64,
                "the consumer did not leave the group in time: its partitions move after the session timeout"
            );
        }
    }
}

/// One partition of a committed-offsets answer: topic, partition, and its offset or
/// the error the broker gave for it.
type Answered = (String, i32, Result<Offset, KafkaError>);

/// Where each span's partition is read again from, by the group's committed offsets:
/// the committed offset, or the span's first record when the group has none there
/// (nothing was ever committed, so nothing of the batch was). A partition the answer
/// leaves out or gives an error for (an unstable offset librdkafka stopped asking
/// about, a coordinator that moved) is an error of the whole answer, to be asked again:
/// taking the span's first record then would produce a batch that committed twice.
fn resume_points(spans: &[Span], answers: &[Answered]) -> Result<NotDone, KafkaError> {
    spans
        .iter()
        .map(|span| {
            let answer = answers.iter().find(|(topic, partition, _)| {
                **topic == *span.topic && *partition == span.partition
            });
            let offset = match answer {
                Some((_, _, Ok(Offset::Offset(o)))) => *o,
                Some((_, _, Ok(_))) => span.first,
                Some((_, _, Err(error))) => return Err(error.clone()),
                None => {
                    return Err(KafkaError::OffsetFetch(
                        rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
                    ))
                }
            };
            Ok((span.batch_partition.clone(), offset))
        })
        .collect()
}

/// Commits the offsets of records done (see [`Source::commit`]). On failure they stay
/// noted: retried before the next batch, at a revocation and at shutdown. Records
/// committed are progress (liveness).
/// The commit runs on a blocking thread: a caller that stops waiting (the shutdown) is
/// not held by brokers that do not answer.
/// With [`IfUnderWay::Skip`], nothing is done while another commit is under way (the
/// offsets stay noted, for the next chance); with [`IfUnderWay::Wait`] the commit goes
/// out after it.
async fn commit(
    consumer: Arc<StreamConsumer<SourceContext>>,
    group: Arc<Group>,
    if_under_way: IfUnderWay,
) -> bool {
    if consumer.assignment_lost() {
        tracing::warn!("the group took the partitions away: not committing; their new owner reads the records again");
        return false;
    }
    if group.under_way.swap(true, Ordering::AcqRel) {
        if if_under_way == IfUnderWay::Skip {
            return false;
        }
        // Waits for the commit under way to end rather than queue a blocking thread
        // behind it (one per call while the coordinator does not answer), then commits
        // what is left, within the same bound.
        let until = tokio::time::Instant::now() + CONSUMER_CALL_TIMEOUT;
        loop {
            tokio::time::sleep(UNDER_WAY_LOOK_AGAIN).await;
            if !group.under_way.swap(true, Ordering::AcqRel) {
                break;
            }
            if tokio::time::Instant::now() >= until {
                tracing::warn!("a commit under way did not end in time: not committing now; the offsets stay noted");
                return false;
            }
        }
    }
    let committer = consumer.clone();
    // Moved into the blocking call: the mark clears when it ends, also when it panics or
    // never runs (the runtime shutting down).
    let release = UnderWay(Some(group.clone()));
    let commit = tokio::task::spawn_blocking(move || {
        let _release = release;
        let committed = match group.turn(None) {
            Some(turn) => group.commit(turn, &*committer, None),
            None => Ok(false),
        };
        if let Ok(true) = committed {
            committer.context().metrics.progress();
        }
        committed
    });
    // librdkafka's synchronous commit has no timeout of its own (it waits for a
    // coordinator as long as the group has none, then for its answer): the loop waits
    // [`CONSUMER_CALL_TIMEOUT`] at most, as the poll-interval check counts it. A commit
    // still under way then ends in the background; its offsets stay noted until it lands,
    // and commits that fall due meanwhile are skipped.
    let Ok(committed) = tokio::time::timeout(CONSUMER_CALL_TIMEOUT, commit).await else {
        tracing::warn!(
            within_ms = CONSUMER_CALL_TIMEOUT.as_millis() as u64,
            "commit not answered in time: it goes on in the background; the offsets stay noted"
        );
        return false;
    };
    match committed {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "commit failed; retried before the next batch");
            false
        }
        Err(error) => {
            tracing::warn!(%error, "commit not done; retried before the next batch");
            false
        }
    }
}

/// Clears [`Group::under_way`] when dropped, if this commit set it.
struct UnderWay(Option<Arc<Group>>);

impl Drop for UnderWay {
    fn drop(&mut self) {
        if let Some(group) = &self.0 {
            group.under_way.store(false, Ordering::Release);
        }
    }
}

/// What a commit does when another is under way.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IfUnderWay {
    /// Nothing: the commits that fall due while the loop runs.
    Skip,
    /// Goes out after it ends (waited for within [`CONSUMER_CALL_TIMEOUT`]): leaving
    /// the group, remaking the consumer, esm's commit after a batch.
    Wait,
}

/// A consumed message as a source record.
fn read(names: &mut Names, group: &Group, message: &BorrowedMessage<'_>) -> Read {
    let (batch_partition, topic) = names
        .entry((message.topic().to_owned(), message.partition()))
        .or_insert_with(|| {
            (
                Arc::from(format!("{}-{}", message.topic(), message.partition())),
                Arc::from(message.topic()),
            )
        })
        .clone();
    let timestamp = message.timestamp();
    Read {
        record: SourceRecord {
            batch_partition,
            topic,
            partition: i64::from(message.partition()),
            offset: message.offset(),
            timestamp_ms: timestamp.to_millis().unwrap_or(0),
            key: message.key().map(|k| Payload::Bytes(k.to_vec())),
            value: message.payload().map(|v| Payload::Bytes(v.to_vec())),
            headers: super::headers_of(message),
        },
        log_append_time: matches!(timestamp, Timestamp::LogAppendTime(_)),
        epoch: group.epoch(message.topic(), message.partition()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch must end inside the poll interval the consumer really has: librdkafka's
    /// 300 s, or the one the properties set.
    #[test]
    fn a_batch_fits_inside_the_poll_interval() {
        let secs = Duration::from_secs;
        check_poll_interval(secs(299), &[]).expect("inside 300 s");
        let error = check_poll_interval(secs(300), &[])
            .expect_err("not inside 300 s")
            .to_string();
        assert!(error.contains("(300000 ms"), "{error}");
        let set = |ms: &str| vec![("max.poll.interval.ms".to_owned(), ms.to_owned())];
        check_poll_interval(secs(500), &set("600000")).expect("inside a raised interval");
        assert!(check_poll_interval(secs(30), &set("20000")).is_err());
        assert!(check_poll_interval(secs(1), &set("soon")).is_err());
    }

    fn read(partition: i64, offset: i64, epoch: u64) -> Read {
        Read {
            record: SourceRecord {
                batch_partition: Arc::from(format!("dms-{partition}")),
                topic: Arc::from("dms"),
                partition,
                offset,
                timestamp_ms: 0,
                key: None,
                value: None,
                headers: Vec::new(),
            },
            log_append_time: false,
            epoch,
        }
    }

    type Mock = rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

    /// A source of group `group` reading topic `dms` (one partition) on a mock cluster,
    /// with offsets due at once.
    fn mock_source(group: &str) -> (Mock, Source) {
        let cluster: Mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("dms", 1, 1).expect("topic");
        let options = SourceOptions {
            brokers: cluster.bootstrap_servers(),
            topics: vec!["dms".to_owned()],
            group_id: group.to_owned(),
            batch_size: 10,
            batch_window: Duration::from_millis(5),
            commit_interval: Duration::ZERO,
            batch_max_bytes: 1 << 20,
            record_size: |_| 1,
            overrides: Vec::new(),
        };
        let source =
            Source::new(options, &ClientAuth::None, Arc::new(Metrics::new())).expect("source");
        (cluster, source)
    }

    /// The backoff doubles per failure in a row from `first`, never past `max`, and
    /// does not overflow however long a partition keeps failing.
    #[test]
    fn backoff_doubles_up_to_the_most() {
        let first = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let waits: Vec<u128> = (1..=8)
            .map(|n| backoff(first, max, n).as_millis())
            .collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff(first, max, u32::MAX), max);
        assert_eq!(backoff(first, Duration::MAX, 0), first);
        assert_eq!(
            backoff(Duration::from_secs(1), Duration::MAX, 40),
            Duration::from_secs(1 << 16)
        );
    }

    /// A record whose header name is not UTF-8 (any client on the DMS topic can write
    /// one) is read, its name with U+FFFD, its value as it came: rdkafka's header
    /// iterator panics on it, which stopped every member that read the record.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_header_name_that_is_not_utf8_is_read() {
        use rdkafka::bindings as rd;
        use rdkafka::producer::{BaseProducer, Producer};
        let (cluster, mut source) = mock_source("header-names");
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .expect("producer");
        let (topic, value) = (c"dms", b"{}");
        let header = |name: &'static [u8], value: &'static [u8]| rd::rd_kafka_vu_t {
            vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER,
            u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                header: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                    name: name.as_ptr().cast(),
                    val: value.as_ptr().cast(),
                    size: value.len() as isize,
                },
            },
        };
        let fields = [
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    cstr: topic.as_ptr(),
                },
            },
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                        ptr: value.as_ptr() as *mut _,
                        size: value.len(),
                    },
                },
            },
            header(b"\xffname\0", b"v"),
            header(b"ok\0", b"1"),
        ];
        // SAFETY: every pointer is to a static that outlives the call, which copies
        // the topic, value and headers (RD_KAFKA_MSG_F_COPY is the default).
        let error = unsafe {
            rd::rd_kafka_produceva(
                producer.client().native_ptr(),
                fields.as_ptr(),
                fields.len(),
            )
        };
        assert!(error.is_null(), "enqueued");
        producer
            .flush(Duration::from_secs(5))
            .expect("acknowledged");
        let mut read = Vec::new();
        for _ in 0..50 {
            read.extend(source.read_batch().await);
            if !read.is_empty() {
                break;
            }
        }
        assert_eq!(read.len(), 1, "the record is read");
        assert_eq!(
            read[0].record.headers,
            vec![
                ("\u{FFFD}name".to_owned(), b"v".to_vec()),
                ("ok".to_owned(), b"1".to_vec())
            ]
        );
    }

    /// Reads until the group has assigned the source a partition (20 reads at most).
    async fn joined(source: &mut Source) {
        for _ in 0..20 {
            let _ = source.read_batch().await;
            if !source
                .consumer
                .assignment()
                .map_or(true, |a| a.count() == 0)
            {
                return;
            }
        }
    }

    /// A commit the coordinator does not answer holds the loop for
    /// [`CONSUMER_CALL_TIMEOUT`] at most (librdkafka's synchronous commit has no timeout,
    /// and the poll-interval check counts that much); the offsets stay noted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_the_coordinator_does_not_answer_holds_the_loop_at_most_the_call_timeout() {
        let (cluster, mut source) = mock_source("slow-commit");
        // Joined, so the commit goes to a known coordinator.
        joined(&mut source).await;
        source.group.done("dms", 0, 5, 0);
        let round_trip = CONSUMER_CALL_TIMEOUT + Duration::from_secs(3);
        cluster
            .broker_round_trip_time(1, round_trip)
            .expect("round trip");
        let started = tokio::time::Instant::now();
        source.commit_due().await;
        let waited = started.elapsed();
        assert!(
            waited < CONSUMER_CALL_TIMEOUT + Duration::from_secs(2),
            "the loop waited {waited:?}"
        );
        assert!(
            source.group.due(Duration::ZERO).is_some(),
            "the offsets stay noted while the commit is unanswered"
        );
        // Answered again, so the consumer closes without waiting out round trips.
        cluster
            .broker_round_trip_time(1, Duration::ZERO)
            .expect("round trip");
        while source.group.under_way.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A revocation served while a commit is under way (it holds the turn to commit,
    /// as one the coordinator does not answer does for as long as it hangs) waits for it
    /// [`CONSUMER_CALL_TIMEOUT`] at most, then lets the partition go: its epoch moves on
    /// and its offsets noted are forgotten (the new owner reads those records again).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revocation_waits_for_a_commit_under_way_at_most_the_call_timeout() {
        let (_cluster, mut source) = mock_source("revoke-under-way");
        joined(&mut source).await;
        assert_eq!(source.group.epoch("dms", 0), 0, "assigned");
        source.group.done("dms", 0, 5, 0);
        let held = Duration::from_secs(30);
        let group = source.group.clone();
        let (taken, turn_taken) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _turn = group.committing.lock();
            let _ = taken.send(());
            let _ = released.recv_timeout(held);
        });
        turn_taken.recv().expect("the turn is held");
        let consumer = source.consumer.clone();
        consumer.unsubscribe();
        let started = tokio::time::Instant::now();
        // Serves the revocation the unsubscribe triggers.
        let serving = tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(40), consumer.recv()).await;
        });
        while source.group.epoch("dms", 0) == 0 && started.elapsed() < held {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let waited = started.elapsed();
        assert_eq!(source.group.epoch("dms", 0), 1, "revoked");
        assert!(
            waited >= CONSUMER_CALL_TIMEOUT
                && waited < CONSUMER_CALL_TIMEOUT + Duration::from_secs(3),
            "the revocation waited {waited:?} for the commit under way"
        );
        assert!(
            source.group.due(Duration::ZERO).is_none(),
            "the revoked partition's offsets are forgotten"
        );
        serving.abort();
        let _ = release.send(());
        let _ = tokio::task::spawn_blocking(move || holder.join()).await;
    }

    /// Offsets noted while a commit is under way, and past due when the loop waits for
    /// records, go out just after that commit ends, not at the idle tick: the wait for
    /// records ends within [`UNDER_WAY_LOOK_AGAIN`] (so the next read commits), and the
    /// offsets stay noted meanwhile (skipped, not dropped).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_for_records_ends_soon_when_a_commit_under_way_held_back_one_due() {
        let (_cluster, mut source) = mock_source("under-way");
        // Noted (due at once: no interval) while another commit holds the turn.
        source.group.done("dms", 0, 5, 0);
        source.group.under_way.store(true, Ordering::Release);
        let mut waits = Vec::new();
        for _ in 0..3 {
            let started = tokio::time::Instant::now();
            let batch = source.read_batch().await;
            assert!(batch.is_empty(), "no records to read");
            waits.push(started.elapsed());
        }
        assert!(
            waits.iter().all(|w| *w < IDLE_TICK / 4),
            "each wait ended soon after the look-again interval, not at the idle tick: {waits:?}"
        );
        assert!(
            source.group.due(Duration::ZERO).is_some(),
            "the offsets stay noted while the other commit is under way"
        );
    }

    /// A batch's partition revoked since it was read (esm serves the group's events
    /// during a batch) is neither paused nor sought back by the batch's read-again: its
    /// new assignment starts from the committed offset, and a later assignment here
    /// would otherwise be taken back to this batch's offset when the backoff ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partition_revoked_since_its_batch_is_not_read_again_from_it() {
        let (_cluster, mut source) = mock_source("stale");
        let batch = spans(&[read(0, 10, 0), read(0, 11, 0)]);
        let mut not_done = NotDone::new();
        not_done.mark(Arc::from("dms-0"), 10, None);
        let (first, max) = (Duration::from_millis(100), Duration::from_secs(30));
        if let Ok(mut g) = source.group.state.lock() {
            g.epochs.insert(("dms".to_owned(), 0), 1);
        }
        source.read_again(&batch, &not_done, first, max);
        assert!(source.paused.is_empty(), "revoked since: left alone");
        let current = spans(&[read(0, 10, 1), read(0, 11, 1)]);
        source.read_again(&current, &not_done, first, max);
        assert_eq!(
            source
                .paused
                .iter()
                .map(|p| (p.offset, p.epoch))
                .collect::<Vec<_>>(),
            vec![(10, 1)],
            "the current assignment is read again from the first not done"
        );
    }

    /// Failures in a row count per partition across read-agains; records set aside after
    /// others of the partition went through (progress) start the count again, records
    /// set aside with none of the partition through leave it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn progress_before_a_set_aside_starts_the_failure_count_again() {
        let (_cluster, mut source) = mock_source("failures");
        let batch = spans(&[read(0, 10, 0), read(0, 11, 0), read(0, 12, 0)]);
        let from = |offset: i64| {
            let mut not_done = NotDone::new();
            not_done.mark(Arc::from("dms-0"), offset, None);
            not_done
        };
        let count = |source: &Source| {
            source
                .failures
                .get(&(Arc::from("dms"), 0))
                .map_or(0, |(n, _)| *n)
        };
        let (first, max) = (Duration::from_millis(100), Duration::from_secs(30));
        for _ in 0..3 {
            source.read_again(&batch, &from(10), first, max);
        }
        assert_eq!(count(&source), 3);
        source.read_later(&batch, &from(10));
        assert_eq!(count(&source), 3, "nothing went through");
        source.read_later(&batch, &from(11));
        assert_eq!(count(&source), 0, "offset 10 went through");
        source.read_again(&batch, &from(11), first, max);
        assert_eq!(count(&source), 1);
    }

    /// The committed offsets say where to read again: the offset committed, the span's
    /// first record where the group has none; a partition the answer gives an error
    /// for, or leaves out, fails the whole answer (asked again), never falls back to the
    /// span's first record.
    #[test]
    fn committed_offsets_with_a_partition_error_are_asked_again() {
        let batch = spans(&[read(0, 10, 0), read(0, 12, 0), read(2, 3, 0)]);
        let answer = |offset: Result<Offset, KafkaError>| -> Vec<Answered> {
            vec![
                ("dms".to_owned(), 0, Ok(Offset::Offset(11))),
                ("dms".to_owned(), 2, offset),
            ]
        };
        let from = resume_points(&batch, &answer(Ok(Offset::Invalid))).expect("answered");
        assert_eq!((from.get("dms-0"), from.get("dms-2")), (Some(11), Some(3)));
        let unstable =
            KafkaError::OffsetFetch(rdkafka::types::RDKafkaErrorCode::UnstableOffsetCommit);
        assert!(resume_points(&batch, &answer(Err(unstable))).is_err());
        let partial = answer(Ok(Offset::Offset(4)))[..1].to_vec();
        assert!(
            resume_points(&batch, &partial).is_err(),
            "a partition left out"
        );
    }

    /// A batch sorted by partition and offset gives one span per partition, from its
    /// first to its last offset, with the epoch its first record was read under.
    #[test]
    fn spans_per_partition() {
        let reads = [
            read(0, 10, 1),
            read(0, 11, 1),
            read(0, 14, 1),
            read(2, 3, 7),
            read(5, 0, 2),
            read(5, 1, 2),
        ];
        let spans_of_batch = spans(&reads);
        let got: Vec<(&str, i32, i64, i64, u64)> = spans_of_batch
            .iter()
            .map(|s| (&*s.batch_partition, s.partition, s.first, s.last, s.epoch))
            .collect();
        assert_eq!(
            got,
            vec![
                ("dms-0", 0, 10, 14, 1),
                ("dms-2", 2, 3, 3, 7),
                ("dms-5", 5, 0, 1, 2)
            ]
        );
        assert!(spans(&[]).is_empty());
    }
}
