//! One batch end to end: records -> decode -> DMS -> transform -> produce -> outcome.
//!
//! No Lambda types here: tests, benches and the local `invoke` command call
//! [`Pipeline::run`] exactly as the handler does.
//!
//! Concurrency and order: the records are split into chunks of `chunk_size`; each chunk
//! is decoded and transformed in its own tokio task, at most `concurrency` at once (a
//! [`Semaphore`] permit travels into each task). Results are consumed chunk by chunk in
//! source order and handed to the producer in that order, so two messages with the same
//! key enter the same partition's queue in source-offset order; the idempotent producer
//! keeps that order on the wire. Producing starts as soon as the first chunk is ready.
//!
//! Every record ends in exactly one [`RecordState`]: produced, dead-lettered or skipped
//! (all "done"), or not done. A record is produced when every message made from it was
//! acknowledged. A poison record (a permanent error) follows the `on_poison` policy of
//! its route: dead-lettered (done once the dead letter is acknowledged), skipped, or
//! failed. Per source partition, the first record not done and everything after it are
//! not done: Lambda resumes a partition from the lowest offset reported, and once a
//! failure is known before producing, later records of its partition are not enqueued.

use std::sync::Arc;
use std::time::Instant;

use rdkafka::producer::DeliveryFuture;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::deadletter::dead_letter;
use crate::dms::Decoder;
use crate::error::{RecordError, Stage};
use crate::sink::{delivered, Sink};
use crate::source::{EventOrigin, SourceRecord};
use crate::transform::{
    OnPoison, OutMessage, SkipReason, SourcePosition, Transformed, Transformer,
};

/// Tuning of a [`Pipeline`].
#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    /// Transform tasks running at once.
    pub concurrency: usize,
    /// Records per transform task.
    pub chunk_size: usize,
    /// Count outcomes per source table ([`BatchOutcome::tables`]).
    pub per_table: bool,
    /// Put the record's value into per-record problem logs (customer data: off by default).
    pub log_values: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            concurrency: 1,
            chunk_size: 256,
            per_table: false,
            log_values: false,
        }
    }
}

/// What happened to one source table's records in a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableCounts {
    /// `schema.table`, or [`UNDECODED_TABLE`] for records that never decoded.
    pub table: Arc<str>,
    /// Records of the table in the batch.
    pub records: usize,
    /// Records whose messages were all acknowledged.
    pub produced: usize,
    /// Records whose dead letter was acknowledged.
    pub dead_lettered: usize,
    /// Records skipped by configuration.
    pub skipped: usize,
    /// Records not done.
    pub failed: usize,
}

/// The table name of records that failed before their table was known.
pub const UNDECODED_TABLE: &str = "_undecoded";

/// Longest record value written to a problem log with `log_values` (bytes).
const LOGGED_VALUE_MAX: usize = 4096;

/// Decoder + transformer + concurrency limits; shared by all invocations.
#[derive(Debug, Clone)]
pub struct Pipeline {
    decoder: Arc<Decoder>,
    transformer: Arc<Transformer>,
    options: PipelineOptions,
    permits: Arc<Semaphore>,
    dlq_topic: Option<Arc<str>>,
}

/// The first record not done in a source partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFailure {
    /// The `"<topic>-<partition>"` key Lambda sent.
    pub batch_partition: Arc<str>,
    /// Lowest offset not done; Lambda resumes the partition from here.
    pub offset: i64,
    /// Why that record failed.
    pub error: RecordError,
}

/// An acknowledged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Topic written to.
    pub topic: Arc<str>,
    /// Partition written to.
    pub partition: i32,
    /// Offset written at.
    pub offset: i64,
}

/// What happened to a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    /// Records in the batch.
    pub records: usize,
    /// Records whose messages were all acknowledged.
    pub produced: usize,
    /// Records whose dead letter was acknowledged.
    pub dead_lettered: usize,
    /// Messages acknowledged (dead letters included).
    pub messages: usize,
    /// Records skipped by configuration, by reason.
    pub skipped: Vec<(SkipReason, usize)>,
    /// Records not done (failed, or after a failure in their partition).
    pub not_done: usize,
    /// Per source partition with a record not done: the lowest such offset.
    pub failures: Vec<PartitionFailure>,
    /// Every acknowledged message, in the order they were enqueued.
    pub deliveries: Vec<DeliveryRecord>,
    /// Wall time until every record was decoded and transformed, milliseconds.
    pub transform_ms: f64,
    /// Wall time from the first enqueue to the last acknowledgement, milliseconds.
    pub produce_ms: f64,
    /// Timestamp of the oldest record, epoch milliseconds (for replication lag).
    pub oldest_timestamp_ms: Option<i64>,
    /// Per source table, in order of first appearance (with `per_table` only).
    pub tables: Vec<TableCounts>,
}

/// What a batch runs with besides its records.
#[derive(Debug, Clone, Default)]
pub struct BatchContext {
    /// Where the batch came from (for dead letters).
    pub origin: EventOrigin,
    /// When to stop waiting for the broker, purge and answer.
    pub budget: Option<Instant>,
    /// The Lambda X-Ray trace id, added to every message as `x-amzn-trace-id`.
    pub xray_trace_id: Option<String>,
}

/// Header carrying the W3C trace context from source record to downstream message.
pub const TRACEPARENT: &str = "traceparent";
/// Header carrying the Lambda invocation's X-Ray trace id.
pub const XRAY_TRACE_ID: &str = "x-amzn-trace-id";

impl BatchOutcome {
    /// Records skipped for `reason`.
    pub fn skipped(&self, reason: SkipReason) -> usize {
        self.skipped
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Records skipped for any reason.
    pub fn skipped_total(&self) -> usize {
        self.skipped.iter().map(|(_, n)| n).sum()
    }
}

/// Where a record stands.
#[derive(Debug)]
enum RecordState {
    /// Waiting for this many acknowledgements; `dead_letter`: of its dead letter.
    Pending { remaining: usize, dead_letter: bool },
    /// All messages acknowledged.
    Produced,
    /// Its dead letter was acknowledged.
    DeadLettered,
    /// Skipped by configuration.
    Skipped(SkipReason),
    /// Failed; reported to Lambda.
    Failed(RecordError),
    /// A message was rejected permanently by the broker; awaiting the poison policy.
    Rejected(RecordError),
    /// Not attempted because an earlier record of its partition failed.
    Blocked,
}

/// Per record: its table (when counted per table) and what the transform made of it.
type ChunkResult = Vec<(Option<Arc<str>>, Result<Transformed, RecordError>)>;

/// One batch in progress.
struct Run<'a> {
    pipeline: &'a Pipeline,
    sink: &'a Sink,
    origin: &'a EventOrigin,
    /// Set once the first message is handed to the producer.
    first_enqueue: Option<Instant>,
    records: Arc<[SourceRecord]>,
    budget: Option<Instant>,
    states: Vec<RecordState>,
    /// Per record, its table (with `per_table`).
    tables: Vec<Option<Arc<str>>>,
    log_values: bool,
    in_flight: Vec<InFlight>,
    deliveries: Vec<DeliveryRecord>,
    purged: bool,
}

struct InFlight {
    record: usize,
    topic: Arc<str>,
    future: DeliveryFuture,
}

impl Pipeline {
    /// A pipeline over a decoder and a transformer.
    pub fn new(decoder: Decoder, transformer: Transformer, options: PipelineOptions) -> Pipeline {
        let options = PipelineOptions {
            concurrency: options.concurrency.max(1),
            chunk_size: options.chunk_size.max(1),
            ..options
        };
        let dlq_topic = transformer.routes().dlq_topic.as_deref().map(Arc::from);
        Pipeline {
            decoder: Arc::new(decoder),
            transformer: Arc::new(transformer),
            permits: Arc::new(Semaphore::new(options.concurrency)),
            options,
            dlq_topic,
        }
    }

    /// The transformer in use.
    pub fn transformer(&self) -> &Transformer {
        &self.transformer
    }

    /// Decodes and transforms one record: the per-record work of a task.
    pub fn process(&self, record: &SourceRecord) -> Result<Transformed, RecordError> {
        process(&self.decoder, &self.transformer, record, &mut None)
    }

    /// Runs a batch. Records must be in source order (as [`crate::source::records`]
    /// returns them). `budget` is when to stop waiting for the broker: undelivered
    /// messages are then purged and their records reported not done.
    pub async fn run(
        &self,
        sink: &Sink,
        context: &BatchContext,
        records: Vec<SourceRecord>,
    ) -> BatchOutcome {
        let started = Instant::now();
        let oldest_timestamp_ms = records.iter().map(|r| r.timestamp_ms).min();
        let records: Arc<[SourceRecord]> = records.into();
        let xray: Option<Arc<[u8]>> = context
            .xray_trace_id
            .as_deref()
            .map(|t| Arc::from(t.as_bytes()));
        let tasks = self.spawn_chunks(&records, xray);
        let budget = context.budget;
        let mut run = Run {
            pipeline: self,
            sink,
            origin: &context.origin,
            first_enqueue: None,
            states: Vec::with_capacity(records.len()),
            tables: Vec::with_capacity(if self.options.per_table {
                records.len()
            } else {
                0
            }),
            log_values: self.options.log_values,
            records,
            budget,
            in_flight: Vec::new(),
            deliveries: Vec::new(),
            purged: false,
        };
        let mut failed_partition: Option<Arc<str>> = None;
        for task in tasks {
            let results = match task.await {
                Ok(results) => results,
                Err(join_error) => {
                    let n = self
                        .options
                        .chunk_size
                        .min(run.records.len() - run.states.len());
                    let error = RecordError::retryable(
                        Stage::Transform,
                        format!("transform task failed: {join_error}"),
                    );
                    std::iter::repeat_n((None, Err(error)), n).collect()
                }
            };
            for (table, result) in results {
                let index = run.states.len();
                if self.options.per_table {
                    run.tables.push(table);
                }
                let partition = run.records[index].batch_partition.clone();
                let state = if failed_partition.as_ref() == Some(&partition) {
                    RecordState::Blocked
                } else {
                    match result {
                        Ok(Transformed::Skipped(reason)) => RecordState::Skipped(reason),
                        Ok(Transformed::Messages(messages)) => {
                            run.enqueue(index, &messages, false).await
                        }
                        Err(error) if !error.is_retryable() => run.poison(index, error).await,
                        Err(error) => RecordState::Failed(error),
                    }
                };
                if let RecordState::Failed(error) = &state {
                    failed_partition = Some(partition);
                    log_failure(&run.records[index], error, run.log_values);
                }
                run.states.push(state);
            }
        }
        let transform_ms = started.elapsed().as_secs_f64() * 1e3;
        run.await_deliveries().await;
        // Second round: records the broker rejected permanently (e.g. too large) are poison.
        let rejected: Vec<usize> = (0..run.states.len())
            .filter(|i| matches!(run.states[*i], RecordState::Rejected(_)))
            .collect();
        for index in rejected {
            if let RecordState::Rejected(error) =
                std::mem::replace(&mut run.states[index], RecordState::Blocked)
            {
                let state = run.poison(index, error).await;
                run.states[index] = state;
            }
        }
        run.await_deliveries().await;
        let produce_ms = run
            .first_enqueue
            .map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3);
        let mut outcome = run.summarise();
        outcome.transform_ms = transform_ms;
        outcome.produce_ms = produce_ms;
        outcome.oldest_timestamp_ms = oldest_timestamp_ms;
        outcome
    }

    fn spawn_chunks(
        &self,
        records: &Arc<[SourceRecord]>,
        xray: Option<Arc<[u8]>>,
    ) -> Vec<JoinHandle<ChunkResult>> {
        (0..records.len())
            .step_by(self.options.chunk_size)
            .map(|start| {
                let end = (start + self.options.chunk_size).min(records.len());
                let records = records.clone();
                let decoder = self.decoder.clone();
                let transformer = self.transformer.clone();
                let permits = self.permits.clone();
                let xray = xray.clone();
                let per_table = self.options.per_table;
                tokio::spawn(async move {
                    // The semaphore is never closed; if it were, run unthrottled.
                    let _permit = permits.acquire_owned().await.ok();
                    records[start..end]
                        .iter()
                        .map(|record| {
                            let mut table = per_table.then_some(None);
                            let result = traced(
                                process(&decoder, &transformer, record, &mut table),
                                record,
                                xray.as_deref(),
                            );
                            let table = table
                                .map(|t| t.map_or_else(|| Arc::from(UNDECODED_TABLE), Arc::from));
                            (table, result)
                        })
                        .collect()
                })
            })
            .collect()
    }
}

/// Decodes and transforms one record. `table`: when `Some`, receives the record's
/// `schema.table` once it is known (for per-table counts).
fn process(
    decoder: &Decoder,
    transformer: &Transformer,
    record: &SourceRecord,
    table: &mut Option<Option<String>>,
) -> Result<Transformed, RecordError> {
    let decoded = record.decode()?;
    let Some(value) = decoded.value.as_deref() else {
        return Ok(Transformed::Skipped(SkipReason::SourceTombstone));
    };
    let change = decoder.decode(value)?;
    if let Some(slot) = table {
        *slot = Some(format!("{}.{}", change.schema, change.table));
    }
    let position = SourcePosition {
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
        kafka_key: decoded.key.as_deref(),
    };
    transformer
        .transform(position, &change)
        .map_err(|e| e.with_table(format!("{}.{}", change.schema, change.table)))
}

/// Carries the source record's W3C `traceparent` and the invocation's X-Ray trace id
/// onto every message made from it.
fn traced(
    result: Result<Transformed, RecordError>,
    record: &SourceRecord,
    xray: Option<&[u8]>,
) -> Result<Transformed, RecordError> {
    let Ok(Transformed::Messages(mut messages)) = result else {
        return result;
    };
    let traceparent = record
        .headers_raw
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(TRACEPARENT))
        .map(|(_, bytes)| bytes.iter().map(|b| *b as u8).collect::<Vec<u8>>());
    for message in &mut messages {
        if let Some(tp) = &traceparent {
            message.headers.push((TRACEPARENT.into(), tp.clone()));
        }
        if let Some(id) = xray {
            message.headers.push((XRAY_TRACE_ID.into(), id.to_vec()));
        }
    }
    Ok(Transformed::Messages(messages))
}

/// Logs a record that failed or was poison: where it is and why, never its content
/// unless `log_values` (then its value, up to [`LOGGED_VALUE_MAX`] bytes).
fn log_failure(record: &SourceRecord, error: &RecordError, log_values: bool) {
    let table = error.table.as_deref().unwrap_or("-");
    if log_values {
        let value = logged_value(record);
        tracing::warn!(
            topic = %record.topic, partition = record.partition, offset = record.offset,
            table, stage = %error.stage, retryable = error.retryable,
            error = %error.message, value = %value, "record failed"
        );
    } else {
        tracing::warn!(
            topic = %record.topic, partition = record.partition, offset = record.offset,
            table, stage = %error.stage, retryable = error.retryable,
            error = %error.message, "record failed"
        );
    }
}

/// The record's value as text for a problem log: lossy UTF-8, cut at a character
/// boundary after [`LOGGED_VALUE_MAX`] bytes.
fn logged_value(record: &SourceRecord) -> String {
    let value = match record.decode() {
        Ok(decoded) => decoded.value,
        Err(_) => return "<not base64>".to_owned(),
    };
    let Some(bytes) = value else {
        return "<null>".to_owned();
    };
    let text = String::from_utf8_lossy(&bytes);
    if text.len() <= LOGGED_VALUE_MAX {
        return text.into_owned();
    }
    let mut end = LOGGED_VALUE_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

impl Run<'_> {
    /// Hands a record's messages to the producer.
    async fn enqueue(
        &mut self,
        index: usize,
        messages: &[OutMessage],
        dead_letter: bool,
    ) -> RecordState {
        for message in messages {
            self.first_enqueue.get_or_insert_with(Instant::now);
            match self.sink.enqueue(message, self.budget).await {
                Ok(future) => self.in_flight.push(InFlight {
                    record: index,
                    topic: message.topic.clone(),
                    future,
                }),
                // Rejected before it left (e.g. larger than message.max.bytes).
                Err(error) if !error.is_retryable() && !dead_letter => {
                    return RecordState::Rejected(error)
                }
                Err(error) => return RecordState::Failed(error),
            }
        }
        RecordState::Pending {
            remaining: messages.len(),
            dead_letter,
        }
    }

    /// Applies the poison policy to a record that can never succeed.
    async fn poison(&mut self, index: usize, error: RecordError) -> RecordState {
        let record = &self.records[index];
        match self
            .pipeline
            .transformer
            .routes()
            .poison_policy(error.table.as_deref())
        {
            OnPoison::Skip => {
                log_failure(record, &error, self.log_values);
                RecordState::Skipped(SkipReason::Poison)
            }
            OnPoison::Fail => RecordState::Failed(error),
            OnPoison::Dlq => match &self.pipeline.dlq_topic {
                Some(topic) => {
                    log_failure(record, &error, self.log_values);
                    let letter = dead_letter(topic, record, &error, self.origin);
                    self.enqueue(index, std::slice::from_ref(&letter), true)
                        .await
                }
                None => RecordState::Failed(error),
            },
        }
    }

    /// Awaits every acknowledgement; at the budget, purges the producer so the remaining
    /// futures resolve (as failures) instead of outliving the invocation.
    async fn await_deliveries(&mut self) {
        for mut flight in std::mem::take(&mut self.in_flight) {
            let result = match self.budget {
                Some(deadline) if !self.purged => {
                    match tokio::time::timeout_at(deadline.into(), delivered(&mut flight.future))
                        .await
                    {
                        Ok(result) => result,
                        Err(_elapsed) => {
                            tracing::warn!("invocation budget spent: purging undelivered messages");
                            self.sink.purge();
                            self.purged = true;
                            delivered(flight.future).await
                        }
                    }
                }
                _ => delivered(flight.future).await,
            };
            let state = &mut self.states[flight.record];
            match result {
                Ok(d) => {
                    self.deliveries.push(DeliveryRecord {
                        topic: flight.topic,
                        partition: d.partition,
                        offset: d.offset,
                    });
                    if let RecordState::Pending {
                        remaining,
                        dead_letter,
                    } = state
                    {
                        *remaining -= 1;
                        if *remaining == 0 {
                            *state = if *dead_letter {
                                RecordState::DeadLettered
                            } else {
                                RecordState::Produced
                            };
                        }
                    }
                }
                Err(error) => {
                    if let RecordState::Pending { dead_letter, .. } = state {
                        *state = if !error.is_retryable() && !*dead_letter {
                            RecordState::Rejected(error)
                        } else {
                            log_failure(&self.records[flight.record], &error, self.log_values);
                            RecordState::Failed(error)
                        };
                    }
                }
            }
        }
    }

    /// Per partition: everything from the first record not done onwards is not done.
    fn summarise(self) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            records: self.records.len(),
            messages: self.deliveries.len(),
            deliveries: self.deliveries,
            ..BatchOutcome::default()
        };
        let mut tables = TableTally::default();
        let mut failed_partition: Option<&Arc<str>> = None;
        for (index, (record, state)) in self.records.iter().zip(self.states).enumerate() {
            let table = self.tables.get(index).cloned().flatten();
            let counts = table.map(|t| tables.entry(t));
            if failed_partition == Some(&record.batch_partition) {
                outcome.not_done += 1;
                if let Some(c) = counts {
                    c.failed += 1;
                }
                continue;
            }
            let error = match state {
                RecordState::Produced => {
                    outcome.produced += 1;
                    if let Some(c) = counts {
                        c.produced += 1;
                    }
                    continue;
                }
                RecordState::DeadLettered => {
                    outcome.dead_lettered += 1;
                    if let Some(c) = counts {
                        c.dead_lettered += 1;
                    }
                    continue;
                }
                RecordState::Skipped(reason) => {
                    match outcome.skipped.iter_mut().find(|(r, _)| *r == reason) {
                        Some((_, n)) => *n += 1,
                        None => outcome.skipped.push((reason, 1)),
                    }
                    if let Some(c) = counts {
                        c.skipped += 1;
                    }
                    continue;
                }
                RecordState::Failed(error) | RecordState::Rejected(error) => error,
                RecordState::Pending { .. } | RecordState::Blocked => {
                    RecordError::retryable(Stage::Sink, "not acknowledged before the deadline")
                }
            };
            outcome.not_done += 1;
            if let Some(c) = counts {
                c.failed += 1;
            }
            outcome.failures.push(PartitionFailure {
                batch_partition: record.batch_partition.clone(),
                offset: record.offset,
                error,
            });
            failed_partition = Some(&record.batch_partition);
        }
        outcome.tables = tables.0;
        outcome
    }
}

/// Per-table counts in order of first appearance (a batch holds few tables, so a
/// linear search beats hashing every record).
#[derive(Default)]
struct TableTally(Vec<TableCounts>);

impl TableTally {
    fn entry(&mut self, table: Arc<str>) -> &mut TableCounts {
        let index = match self.0.iter().rposition(|c| c.table == table) {
            Some(i) => i,
            None => {
                self.0.push(TableCounts {
                    table,
                    ..TableCounts::default()
                });
                self.0.len() - 1
            }
        };
        let counts = &mut self.0[index];
        counts.records += 1;
        counts
    }
}
