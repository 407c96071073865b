//! One batch end to end: records -> decode -> DMS -> transform -> produce -> outcome.
//!
//! No Lambda types here: tests, benches and the local `invoke` command call
//! [`Pipeline::run`] exactly as the handler does.
//!
//! Concurrency and order: the records are split into chunks of `chunk_size`; each chunk
//! is decoded and transformed in its own tokio task, at most `concurrency` at once (a
//! [`Semaphore`] permit travels into each task), and at most `concurrency + 1` chunks
//! ahead of the producing loop, so finished results wait in memory only that far. A small
//! batch (at most 32 records and 64 KiB, in one chunk) is transformed on the invocation's
//! own task instead, under a permit too. Results are consumed chunk by chunk in source
//! order and handed to the producer in that order, so two messages with the same key
//! enter the same partition's queue in source-offset order; the idempotent producer keeps
//! that order on the wire. Producing starts as soon as the first chunk is ready.
//!
//! Every record ends in exactly one state of its [`ledger`]: produced, dead-lettered or skipped
//! (all "done"), or not done. A record is produced when every message made from it was
//! acknowledged. A poison record (a permanent error of its own) follows the `on_poison`
//! policy of its route: dead-lettered in source order (done once the dead letter is
//! acknowledged), skipped, or failed. Per source partition, the first record not done
//! and everything after it are not done: Lambda resumes a partition from the lowest
//! offset reported, and once a failure is known before producing, later records of its
//! partition are not enqueued.
//!
//! One answer-by time: every wait of a batch (a full producer queue, a topic check, an
//! acknowledgement, the recovery round) ends at the budget; then the producer is purged
//! and the purged deliveries are given until the settle time, after which whatever has
//! not resolved is reported not done.
//!
//! Rejections after sending: a message the broker rejected may have been rejected for
//! its request (a whole request too large, a sibling's invalid record), not for itself.
//! After the batch's acknowledgements, the recovery round goes through each source
//! partition with a rejected record, from its first record not done, in source order: a
//! rejected record's unacknowledged messages are produced again alone (everything before
//! acknowledged first, nothing after sent until they are), and only a record rejected
//! alone is poison. The rejected request left a gap that later requests of the same
//! output partition landed after, so every later record of the source partition is
//! produced again after it, all its messages (one acknowledged before, a fan-out's
//! message to another topic, would stay before the earlier record's new copy): the
//! log's last copy of every key is in source order again. Records that failed retryably are produced again too (with a
//! new producer from [`Renew`] when the old one is fatal). The round runs only while
//! budget remains; records it does not reach are reported.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

mod ledger;
mod observe;
mod recovery;

use crate::deadletter::{dead_letter, DeadLetters};
use crate::dms::Decoder;
use crate::error::{Error, RecordError, Stage};
use crate::kafka::producer::{Delivered, Sink, Ticket, Undelivered};
use crate::source::{EventOrigin, SourceRecord};
use crate::transform::{
    header, OnPoison, OutMessage, Routes, SkipReason, Transformed, Transformer,
};
use cdc_relay_core::process;
use ledger::{Ledger, RecordState};
use observe::{log_failure, traced};

pub use ledger::{BatchOutcome, DeliveryRecord, Rejection, TableCounts, UNDECODED_TABLE};
pub use observe::{TRACEPARENT, XRAY_TRACE_ID};

/// Makes a new producer when the one in use is in a fatal state (the recovery round).
pub(crate) trait Renew: Sync {
    /// Retires `failed` and returns the producer to use instead.
    fn renew(&self, failed: &Arc<Sink>) -> Result<Arc<Sink>, Error>;
}

/// Which of a record's messages to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Every message (first attempt, or to restore order after an earlier record).
    All,
    /// Only the messages the broker has not acknowledged.
    Unacknowledged,
}

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
    /// Messages handed to the producer and not yet reported, at most (a record's messages
    /// go together, so one record may pass it by its fan-out less one). Past it, the
    /// batch waits for reports down to half of it before producing the next record:
    /// librdkafka's copies of a large batch's messages and headers are not all in memory
    /// at once. Unbounded by default: the wait costs time (bench/analysis.md).
    pub max_in_flight: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            concurrency: 1,
            chunk_size: 256,
            per_table: false,
            log_values: false,
            max_in_flight: usize::MAX,
        }
    }
}

/// Decoder + transformer + concurrency limits; shared by all invocations.
#[derive(Debug, Clone)]
pub struct Pipeline {
    decoder: Arc<Decoder>,
    transformer: Arc<Transformer>,
    options: PipelineOptions,
    permits: Arc<Semaphore>,
    dlq_topic: Option<Arc<str>>,
}

/// What a batch runs with besides its records.
#[derive(Debug, Clone, Default)]
pub(crate) struct BatchContext {
    /// Where the batch came from (for event ids and dead letters).
    pub origin: EventOrigin,
    /// When to stop waiting for the broker, purge and answer.
    pub budget: Option<Instant>,
    /// After a purge, how long purged deliveries may take to resolve; past it, they are
    /// reported not done without waiting. Default: [`SETTLE_TIME`] after the budget.
    pub settle_by: Option<Instant>,
    /// The Lambda X-Ray trace id, added to every message as `x-amzn-trace-id`.
    pub xray_trace_id: Option<String>,
    /// A record larger than this ([`SourceRecord::size`]) is poison: dead-lettered cut to
    /// fit, with its size and SHA-256, instead of transformed (`serve`:
    /// `RELAY_MAX_RECORD_BYTES`).
    pub max_record_bytes: Option<usize>,
    /// Records known to be poison before they are transformed (batch partition, offset):
    /// under exactly once, records the broker rejected when produced alone. They get the
    /// poison policy (a dead letter) without being produced.
    pub condemned: Arc<HashMap<(Arc<str>, i64), RecordError>>,
}

/// How long purged deliveries may take to resolve when the context sets no `settle_by`.
pub(crate) const SETTLE_TIME: std::time::Duration = std::time::Duration::from_millis(100);

/// A chunk being transformed: in a task of its own, or, for a small batch's only chunk,
/// on the invocation's task when its turn comes.
enum Work {
    Task(JoinHandle<ChunkResult>),
    Inline(Chunk),
}

/// Per record: its table (when counted per table) and what the transform made of it.
type ChunkResult = Vec<(Option<Arc<str>>, Result<Transformed, RecordError>)>;

/// One batch in progress.
struct Run<'a> {
    pipeline: &'a Pipeline,
    /// The producer; replaced by the recovery round when it is in a fatal state.
    sink: Arc<Sink>,
    origin: &'a EventOrigin,
    /// After a purge, when to stop waiting for purged deliveries.
    settle_by: Option<Instant>,
    /// The invocation's X-Ray trace id, for messages made again in the second round.
    xray: Option<Arc<[u8]>>,
    /// Set once the first message is handed to the producer.
    first_enqueue: Option<Instant>,
    records: Arc<[SourceRecord]>,
    budget: Option<Instant>,
    /// Where each record stands.
    ledger: Ledger,
    /// Per record, its table (with `per_table`).
    tables: Vec<Option<Arc<str>>>,
    log_values: bool,
    /// Messages enqueued and not resolved yet, oldest first.
    in_flight: VecDeque<InFlight>,
    /// The most messages in flight at once.
    most_in_flight: usize,
    deliveries: Vec<DeliveryRecord>,
    purged: bool,
}

struct InFlight {
    record: usize,
    /// The message's index among its record's messages (for [`Ledger::acknowledged`]).
    message: usize,
    /// Whether this is the record's dead letter (its routed messages may still be in
    /// flight too, and must not count towards the dead letter).
    dead_letter: bool,
    topic: Arc<str>,
    ticket: Ticket,
}

impl Pipeline {
    /// The routes the pipeline transforms by.
    pub fn routes(&self) -> &Routes {
        self.transformer.routes()
    }

    /// A pipeline over a decoder and a transformer.
    pub fn new(decoder: Decoder, transformer: Transformer, options: PipelineOptions) -> Pipeline {
        let options = PipelineOptions {
            concurrency: options.concurrency.max(1),
            chunk_size: options.chunk_size.max(1),
            max_in_flight: options.max_in_flight.max(1),
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
    pub(crate) fn transformer(&self) -> &Transformer {
        &self.transformer
    }

    /// Decodes and transforms one record: the per-record work of a task. `cluster` is
    /// the source cluster's identity ([`EventOrigin::cluster`]), part of every event id.
    pub fn process(
        &self,
        record: &SourceRecord,
        cluster: &str,
    ) -> Result<Transformed, RecordError> {
        process(&self.decoder, &self.transformer, record, cluster, false).result
    }

    /// The event ids a record yields when it is done: its messages' ids, none when it is
    /// skipped, and its dead letter's id when it is poison and `dead_letters` (for
    /// checking what reached the broker, in tests and tools).
    pub fn expected_ids(
        &self,
        record: &SourceRecord,
        cluster: &str,
        dead_letters: bool,
    ) -> Vec<String> {
        match self.process(record, cluster) {
            Ok(Transformed::Messages(messages)) => messages
                .iter()
                .filter_map(|m| m.header(header::EVENT_ID))
                .map(|id| String::from_utf8_lossy(id).into_owned())
                .collect(),
            Ok(Transformed::Skipped(_)) => Vec::new(),
            Err(_) if dead_letters => {
                vec![crate::transform::dead_letter_id(
                    record.position(cluster, None),
                )]
            }
            Err(_) => Vec::new(),
        }
    }

    /// Runs a batch. Records must be in source order (as [`crate::source::MskEvent`]
    /// holds them). `budget` is when to stop waiting for the broker: undelivered
    /// messages are then purged and their records reported not done.
    ///
    /// `renew` gives the recovery round a new producer when `sink` turns fatal.
    pub(crate) async fn run(
        &self,
        sink: Arc<Sink>,
        renew: &dyn Renew,
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
        sink.begin_batch();
        let record_count = records.len();
        let cluster: Arc<str> = Arc::from(context.origin.cluster());
        // Chunks are transformed at most `concurrency + 1` ahead of the producing loop:
        // results wait in memory only that far, however large the batch.
        let starts: Vec<usize> = (0..records.len())
            .step_by(self.options.chunk_size)
            .collect();
        let window = self.options.concurrency + 1;
        let small = !records.is_empty()
            && records.len() <= INLINE_RECORDS.min(self.options.chunk_size)
            && records.iter().map(SourceRecord::size).sum::<usize>() <= INLINE_BYTES;
        let mut tasks: VecDeque<Work> = if small {
            VecDeque::from([Work::Inline(self.chunk(
                &records,
                0,
                &cluster,
                xray.clone(),
                context,
            ))])
        } else {
            starts
                .iter()
                .take(window)
                .map(|&start| {
                    Work::Task(self.spawn(self.chunk(
                        &records,
                        start,
                        &cluster,
                        xray.clone(),
                        context,
                    )))
                })
                .collect()
        };
        let mut next_chunk = tasks.len();
        let budget = context.budget;
        let mut run = Run {
            pipeline: self,
            sink,
            origin: &context.origin,
            settle_by: context.settle_by.or(budget.map(|b| b + SETTLE_TIME)),
            xray,
            first_enqueue: None,
            ledger: Ledger::new(record_count),
            tables: Vec::with_capacity(if self.options.per_table {
                records.len()
            } else {
                0
            }),
            log_values: self.options.log_values,
            records,
            budget,
            in_flight: VecDeque::with_capacity(self.options.max_in_flight.min(record_count)),
            most_in_flight: 0,
            // At least one message per record, as a rule: grown once, not doubling
            // through a large batch.
            deliveries: Vec::with_capacity(record_count),
            purged: false,
        };
        let mut failed_partition: Option<Arc<str>> = None;
        while let Some(task) = tasks.pop_front() {
            // Past the budget no chunk is started: its records could only be reported,
            // and transforming them first spends time the answer needs.
            if let Some(&start) = starts.get(next_chunk).filter(|_| !run.out_of_time()) {
                tasks.push_back(Work::Task(self.spawn(self.chunk(
                    &run.records,
                    start,
                    &cluster,
                    run.xray.clone(),
                    context,
                ))));
                next_chunk += 1;
            }
            let results = match task {
                Work::Task(task) => task.await.map_err(|e| e.to_string()),
                Work::Inline(chunk) => self.transform_inline(chunk).await,
            };
            let results = match results {
                Ok(results) => results,
                Err(why) => {
                    let n = self
                        .options
                        .chunk_size
                        .min(run.records.len() - run.ledger.len());
                    let error = RecordError::retryable(
                        Stage::Transform,
                        format!("transform task failed: {why}"),
                    );
                    std::iter::repeat_n((None, Err(error)), n).collect()
                }
            };
            for (table, result) in results {
                let index = run.ledger.len();
                if self.options.per_table {
                    run.tables.push(table);
                }
                let partition = run.records[index].batch_partition.clone();
                let state = if failed_partition.as_ref() == Some(&partition) {
                    RecordState::Blocked
                } else if run.out_of_time() && matches!(result, Ok(Transformed::Messages(_))) {
                    // Anything enqueued now would only be purged (or, worse, delivered
                    // after the answer): stop producing.
                    RecordState::Failed(spent_before_producing())
                } else {
                    match result {
                        Ok(Transformed::Skipped(reason)) => RecordState::Skipped(reason),
                        Ok(Transformed::Messages(messages)) => {
                            run.produce(index, &messages, Resend::All).await
                        }
                        Err(error) if !error.is_retryable() => {
                            run.make_room().await;
                            run.poison(index, error).await
                        }
                        Err(error) => RecordState::Failed(error),
                    }
                };
                if let RecordState::Failed(error) = &state {
                    failed_partition = Some(partition);
                    run.log_failure(index, error);
                }
                run.ledger.push(state);
            }
        }
        // The records of the chunks never started: reported for retry as they came.
        while let Some(record) = run.records.get(run.ledger.len()) {
            let index = run.ledger.len();
            if self.options.per_table {
                run.tables.push(None);
            }
            let state = if failed_partition.as_ref() == Some(&record.batch_partition) {
                RecordState::Blocked
            } else {
                failed_partition = Some(record.batch_partition.clone());
                let error = spent_before_producing();
                run.log_failure(index, &error);
                RecordState::Failed(error)
            };
            run.ledger.push(state);
        }
        let transform_ms = started.elapsed().as_secs_f64() * 1e3;
        if run.first_enqueue.is_some() {
            // The whole batch is enqueued: nothing is gained by lingering.
            run.sink.send_now(run.budget);
        }
        run.await_deliveries().await;
        run.recover(&cluster, renew).await;
        let produce_ms = run
            .first_enqueue
            .map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3);
        let mut outcome = run
            .ledger
            .summarise(&run.records, run.tables, run.deliveries);
        outcome.transform_ms = transform_ms;
        outcome.produce_ms = produce_ms;
        outcome.most_in_flight = run.most_in_flight;
        outcome.oldest_timestamp_ms = oldest_timestamp_ms;
        outcome
    }

    /// Decodes and transforms a chunk in a task of its own.
    fn spawn(&self, chunk: Chunk) -> JoinHandle<ChunkResult> {
        let permits = self.permits.clone();
        tokio::spawn(async move {
            // The semaphore is never closed; if it were, run unthrottled.
            let _permit = permits.acquire_owned().await.ok();
            chunk.transform()
        })
    }

    /// Decodes and transforms a small batch's only chunk (at most [`INLINE_RECORDS`]
    /// records) on the calling task: a task of its own would only add two wake-ups of
    /// other threads to the invocation (the worker's, then the caller's), about as long
    /// as the work. A panic fails the records as a failed task does.
    async fn transform_inline(&self, chunk: Chunk) -> Result<ChunkResult, String> {
        // The semaphore is never closed; if it were, run unthrottled.
        let _permit = self.permits.acquire().await.ok();
        // The panic's text stays out of the error, as the core keeps it out of a record's
        // (it may quote values); the panic hook has printed it.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| chunk.transform()))
            .map_err(|_| "panicked".to_owned())
    }

    /// What transforming the chunk of `records` starting at `start` needs.
    fn chunk(
        &self,
        records: &Arc<[SourceRecord]>,
        start: usize,
        cluster: &Arc<str>,
        xray: Option<Arc<[u8]>>,
        context: &BatchContext,
    ) -> Chunk {
        Chunk {
            records: records.clone(),
            start,
            end: (start + self.options.chunk_size).min(records.len()),
            decoder: self.decoder.clone(),
            transformer: self.transformer.clone(),
            cluster: cluster.clone(),
            xray,
            max_record_bytes: context.max_record_bytes,
            condemned: context.condemned.clone(),
            per_table: self.options.per_table,
        }
    }
}

/// Batches of at most this many records, in one chunk and of at most [`INLINE_BYTES`],
/// are transformed on the invocation's own task ([`Pipeline::transform_inline`]).
const INLINE_RECORDS: usize = 32;

/// The most bytes ([`SourceRecord::size`]) a batch transformed on the invocation's own
/// task may hold: a fraction of a millisecond of work at the benchmark's rate per core
/// (bench/results/latest.json), short enough for a task to run between two waits
/// (`serve`'s loop, which runs the batch, answers shutdowns and commits between them),
/// where 32 records of up to 8 MiB each would not be.
const INLINE_BYTES: usize = 64 * 1024;

/// One chunk's records and what transforming them takes, owned (to move into a task).
struct Chunk {
    records: Arc<[SourceRecord]>,
    start: usize,
    end: usize,
    decoder: Arc<Decoder>,
    transformer: Arc<Transformer>,
    cluster: Arc<str>,
    xray: Option<Arc<[u8]>>,
    max_record_bytes: Option<usize>,
    condemned: Arc<HashMap<(Arc<str>, i64), RecordError>>,
    per_table: bool,
}

impl Chunk {
    /// Decodes and transforms each record of the chunk, in order.
    fn transform(&self) -> ChunkResult {
        self.records[self.start..self.end]
            .iter()
            .map(|record| {
                let verdict = if self.condemned.is_empty() {
                    None
                } else {
                    self.condemned
                        .get(&(record.batch_partition.clone(), record.offset))
                        .cloned()
                };
                if let Some(error) = verdict.or_else(|| oversized(record, self.max_record_bytes)) {
                    return (
                        self.per_table.then(|| Arc::from(UNDECODED_TABLE)),
                        Err(error),
                    );
                }
                let processed = process(
                    &self.decoder,
                    &self.transformer,
                    record,
                    &self.cluster,
                    self.per_table,
                );
                let result = traced(processed.result, record, self.xray.as_deref());
                let table = self.per_table.then(|| {
                    processed
                        .table
                        .map_or_else(|| Arc::from(UNDECODED_TABLE), Arc::from)
                });
                (table, result)
            })
            .collect()
    }
}

/// A record reached after the invocation budget was spent: not produced (nor its dead
/// letter), retried by the next invocation.
fn spent_before_producing() -> RecordError {
    RecordError::retryable(
        Stage::Sink,
        "the invocation budget was spent before the record was produced",
    )
}

/// The poison error of a record larger than `max` bytes, if it is.
fn oversized(record: &SourceRecord, max: Option<usize>) -> Option<RecordError> {
    let (size, max) = (record.size(), max?);
    (size > max).then(|| {
        RecordError::permanent(
            Stage::Source,
            format!(
                "record of {size} bytes is larger than the limit of {max} (RELAY_MAX_RECORD_BYTES)"
            ),
        )
    })
}

impl Run<'_> {
    /// At [`PipelineOptions::max_in_flight`] messages in flight, resolves the oldest down
    /// to half of it. Down to half, not one below: the producer then gets the next
    /// messages together, in full requests, not each after its own acknowledgement.
    ///
    /// Only before a record's first message: every message in flight is then an earlier
    /// record's, and resolving it now is what the end of the batch would do. The wait
    /// ends at the budget (then the producer is purged: check [`Run::out_of_time`]).
    async fn make_room(&mut self) {
        let max = self.pipeline.options.max_in_flight;
        if self.in_flight.len() < max {
            return;
        }
        while self.in_flight.len() > max / 2 {
            let Some(flight) = self.in_flight.pop_front() else {
                break;
            };
            self.resolve(flight).await;
        }
    }

    /// Checks the topics of a record's messages, then hands them to the producer. A
    /// message the producer refuses for its own bytes makes the record poison, handled
    /// here, in source order.
    ///
    /// `resend`: which messages to send (all, or those not acknowledged yet).
    async fn produce(
        &mut self,
        index: usize,
        messages: &[OutMessage],
        resend: Resend,
    ) -> RecordState {
        self.make_room().await;
        if self.out_of_time() {
            return RecordState::Failed(spent_before_producing());
        }
        match self.check_topics(messages).await {
            Err(error) if !error.is_retryable() => return self.poison(index, error).await,
            Err(error) => return RecordState::Failed(error),
            Ok(()) => {}
        }
        match self.enqueue(index, messages, false, resend).await {
            Err(error) if !error.is_retryable() => self.poison(index, error).await,
            Err(error) => RecordState::Failed(error),
            Ok(state) => state,
        }
    }

    /// Asks the sink about each topic of `messages`; a refusal names the route that
    /// made the topic.
    async fn check_topics(&self, messages: &[OutMessage]) -> Result<(), RecordError> {
        for (i, message) in messages.iter().enumerate() {
            if messages[..i].iter().any(|m| m.topic == message.topic) {
                continue;
            }
            if let Err(refusal) = self.sink.check_topic(&message.topic, self.budget).await {
                let mut error = self.blame(refusal, &message.topic);
                let table = message
                    .header(header::TABLE)
                    .map(|t| String::from_utf8_lossy(t).into_owned());
                let origin = self
                    .pipeline
                    .transformer
                    .routes()
                    .origin_of_topic(table.as_deref(), &message.topic);
                error.message = format!("{} (made by {origin})", error.message);
                if let Some(table) = table {
                    error = error.with_table(table);
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// Hands a record's messages to the producer. `Err` when one could not be enqueued:
    /// permanent when the producer refused its bytes, retryable otherwise.
    async fn enqueue(
        &mut self,
        index: usize,
        messages: &[OutMessage],
        dead_letter: bool,
        resend: Resend,
    ) -> Result<RecordState, RecordError> {
        if resend == Resend::All && !dead_letter {
            self.ledger.forget_acknowledged(index);
        }
        let mut remaining = 0;
        for (number, message) in messages.iter().enumerate() {
            let acked = !dead_letter && self.ledger.is_acknowledged(index, number);
            if acked && resend == Resend::Unacknowledged {
                continue;
            }
            self.first_enqueue.get_or_insert_with(Instant::now);
            let ticket = self.sink.enqueue(message, self.budget).await?;
            self.in_flight.push_back(InFlight {
                record: index,
                message: number,
                dead_letter,
                topic: message.topic.clone(),
                ticket,
            });
            self.most_in_flight = self.most_in_flight.max(self.in_flight.len());
            remaining += 1;
        }
        if remaining == 0 {
            return Ok(RecordState::Produced);
        }
        Ok(RecordState::Pending {
            remaining,
            dead_letter,
        })
    }

    /// Applies the poison policy to a record that can never succeed. Its dead letter is
    /// enqueued now, so it keeps its place in its partition.
    async fn poison(&mut self, index: usize, error: RecordError) -> RecordState {
        match self
            .pipeline
            .transformer
            .routes()
            .poison_policy(error.table.as_deref())
        {
            OnPoison::Skip => {
                self.log_failure(index, &error);
                RecordState::Skipped(SkipReason::Poison)
            }
            OnPoison::Fail => RecordState::Failed(error),
            // Nothing is enqueued once the budget is spent: it would only be purged, or
            // written after the answer.
            OnPoison::Dlq if self.out_of_time() => RecordState::Failed(spent_before_producing()),
            OnPoison::Dlq => match self.pipeline.dlq_topic.clone() {
                Some(topic) => {
                    self.log_failure(index, &error);
                    let letters = DeadLetters {
                        topic: &topic,
                        routes: self.pipeline.transformer.routes(),
                        before_field: self.pipeline.decoder.before_field(),
                        max_bytes: self.sink.message_max_bytes(),
                    };
                    let letter = dead_letter(letters, &self.records[index], &error, self.origin);
                    if let Err(dlq_error) = self.check_topics(std::slice::from_ref(&letter)).await {
                        return RecordState::Failed(dlq_error);
                    }
                    match self
                        .enqueue(index, std::slice::from_ref(&letter), true, Resend::All)
                        .await
                    {
                        Ok(state) => state,
                        Err(mut dlq_error) => {
                            // The dead letter is cut to fit, so a refusal here is not the
                            // record's: report it.
                            dlq_error.retryable = true;
                            dlq_error.message = format!("dead letter: {}", dlq_error.message);
                            RecordState::Failed(dlq_error)
                        }
                    }
                }
                None => RecordState::Failed(error),
            },
        }
    }

    /// Whether the budget is spent (or the producer was purged at it).
    fn out_of_time(&self) -> bool {
        self.purged || self.budget.is_some_and(|b| Instant::now() >= b)
    }

    /// Awaits every acknowledgement until the budget; then purges the producer and gives
    /// the purged deliveries until the settle time. A delivery still unresolved then is
    /// a failure of its record (retryable): no wait outlives the invocation.
    async fn await_deliveries(&mut self) {
        while let Some(flight) = self.in_flight.pop_front() {
            self.resolve(flight).await;
        }
    }

    /// Awaits one message's report (see [`Run::await_deliveries`] for the budget) and
    /// books it against its record.
    async fn resolve(&mut self, mut flight: InFlight) {
        let result = match (self.budget, self.purged) {
            (Some(budget), false) => {
                match tokio::time::timeout_at(budget.into(), flight.ticket.delivered()).await {
                    Ok(result) => result,
                    Err(_elapsed) => {
                        tracing::warn!("invocation budget spent: purging undelivered messages");
                        self.sink.purge();
                        self.purged = true;
                        self.settle(&mut flight.ticket).await
                    }
                }
            }
            (Some(_), true) => self.settle(&mut flight.ticket).await,
            (None, _) => flight.ticket.delivered().await,
        };
        match result {
            Ok(d) => {
                self.deliveries.push(DeliveryRecord {
                    topic: flight.topic,
                    partition: d.partition,
                    offset: d.offset,
                });
                self.ledger
                    .acknowledged(flight.record, flight.message, flight.dead_letter);
            }
            Err(refusal) => {
                let sibling = refusal.sibling;
                let error = self.blame(refusal, &flight.topic);
                if self
                    .ledger
                    .failed_blaming(flight.record, error, sibling, flight.dead_letter)
                {
                    if let RecordState::Failed(error) = self.ledger.state(flight.record) {
                        self.log_failure(flight.record, error);
                    }
                }
            }
        }
    }

    /// Waits for a purged delivery until the settle time.
    async fn settle(&self, ticket: &mut Ticket) -> Result<Delivered, Undelivered> {
        let Some(settle_by) = self.settle_by else {
            return ticket.delivered().await;
        };
        tokio::time::timeout_at(settle_by.into(), ticket.delivered())
            .await
            .unwrap_or_else(|_elapsed| {
                Err(RecordError::retryable(
                    Stage::Sink,
                    "purged at the deadline; no delivery report before the answer",
                )
                .into())
            })
    }

    /// Who is to blame for a message `topic` did not take. A topic name the broker
    /// refuses is the record's fault (poison) when the relay rendered it from DMS's
    /// schema and table, and the configuration's (retryable, never dead-lettered) when
    /// the routes wrote it out: init checked those, so the cluster has a rule of its own.
    fn blame(&self, refusal: Undelivered, topic: &str) -> RecordError {
        let mut error = refusal.error;
        if refusal.name_refused && !self.pipeline.transformer.routes().is_written_topic(topic) {
            error.retryable = false;
            error.message = format!(
                "{}: the name was rendered from the record's schema and table",
                error.message
            );
        }
        error
    }

    /// Logs a failed or poison record, with its value when `log_values`.
    fn log_failure(&self, index: usize, error: &RecordError) {
        let record = &self.records[index];
        let value = self
            .log_values
            .then(|| self.pipeline.loggable_value(record));
        log_failure(record, error, value);
    }
}
