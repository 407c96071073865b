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
//! Completion: a record is done when every message it produced was acknowledged (or it
//! was skipped by configuration). Per source partition, the first record not done and
//! everything after it are not done: Lambda resumes a partition from the lowest offset
//! reported, and later records of a failed partition are not even enqueued once the
//! failure is known before producing.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::dms::Decoder;
use crate::error::{RecordError, Stage};
use crate::sink::{delivered, Sink};
use crate::source::SourceRecord;
use crate::transform::{OutMessage, SkipReason, SourcePosition, Transformed, Transformer};

/// Tuning of a [`Pipeline`].
#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    /// Transform tasks running at once.
    pub concurrency: usize,
    /// Records per transform task.
    pub chunk_size: usize,
}

/// Decoder + transformer + concurrency limits; shared by all invocations.
#[derive(Debug, Clone)]
pub struct Pipeline {
    decoder: Arc<Decoder>,
    transformer: Arc<Transformer>,
    options: PipelineOptions,
    permits: Arc<Semaphore>,
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Records in the batch.
    pub records: usize,
    /// Records whose messages were all acknowledged.
    pub produced: usize,
    /// Messages acknowledged.
    pub messages: usize,
    /// Records skipped by configuration, by reason.
    pub skipped: Vec<(SkipReason, usize)>,
    /// Records not done (failed, or after a failure in their partition).
    pub not_done: usize,
    /// Per source partition with a record not done: the lowest such offset.
    pub failures: Vec<PartitionFailure>,
    /// Every acknowledged message, in the order they were enqueued.
    pub deliveries: Vec<DeliveryRecord>,
}

impl BatchOutcome {
    /// Records skipped for `reason`.
    pub fn skipped(&self, reason: SkipReason) -> usize {
        self.skipped
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

/// Per-record progress while a batch runs.
#[derive(Debug)]
enum RecordState {
    /// Waiting for this many acknowledgements.
    Pending(usize),
    /// All messages acknowledged.
    Done,
    /// Skipped by configuration.
    Skipped(SkipReason),
    /// Failed.
    Failed(RecordError),
    /// Not attempted because an earlier record of its partition failed.
    Blocked,
}

type ChunkResult = Vec<Result<Transformed, RecordError>>;

impl Pipeline {
    /// A pipeline over a decoder and a transformer.
    pub fn new(decoder: Decoder, transformer: Transformer, options: PipelineOptions) -> Pipeline {
        let options = PipelineOptions {
            concurrency: options.concurrency.max(1),
            chunk_size: options.chunk_size.max(1),
        };
        Pipeline {
            decoder: Arc::new(decoder),
            transformer: Arc::new(transformer),
            permits: Arc::new(Semaphore::new(options.concurrency)),
            options,
        }
    }

    /// The transformer in use.
    pub fn transformer(&self) -> &Transformer {
        &self.transformer
    }

    /// Decodes and transforms one record: the per-record work of a task.
    pub fn process(&self, record: &SourceRecord) -> Result<Transformed, RecordError> {
        process(&self.decoder, &self.transformer, record)
    }

    /// Runs a batch. Records must be in source order (as [`crate::source::records`]
    /// returns them). `budget` is when to stop waiting for the broker: undelivered
    /// messages are then purged and their records reported not done.
    pub async fn run(
        &self,
        sink: &Sink,
        records: Vec<SourceRecord>,
        budget: Option<Instant>,
    ) -> BatchOutcome {
        let total = records.len();
        let positions: Vec<(Arc<str>, i64)> = records
            .iter()
            .map(|r| (r.batch_partition.clone(), r.offset))
            .collect();
        let tasks = self.spawn_chunks(records);

        let mut states: Vec<RecordState> = Vec::with_capacity(total);
        let mut in_flight = Vec::new();
        let mut failed_partition: Option<Arc<str>> = None;
        let mut index = 0;
        for task in tasks {
            let results = match task.await {
                Ok(results) => results,
                Err(join_error) => {
                    let n = self.options.chunk_size.min(total - index);
                    let error = RecordError::retryable(
                        Stage::Transform,
                        format!("transform task failed: {join_error}"),
                    );
                    std::iter::repeat_n(Err(error), n).collect()
                }
            };
            for result in results {
                let partition = &positions[index].0;
                let state = if failed_partition.as_ref() == Some(partition) {
                    RecordState::Blocked
                } else {
                    match result {
                        Ok(Transformed::Skipped(reason)) => RecordState::Skipped(reason),
                        Ok(Transformed::Messages(messages)) => {
                            self.enqueue_all(sink, index, &messages, budget, &mut in_flight)
                                .await
                        }
                        Err(error) => RecordState::Failed(error),
                    }
                };
                if let RecordState::Failed(error) = &state {
                    tracing::warn!(
                        batch_partition = %partition, offset = positions[index].1,
                        stage = %error.stage, error = %error.message, "record failed"
                    );
                    failed_partition = Some(partition.clone());
                }
                states.push(state);
                index += 1;
            }
        }

        let deliveries = await_deliveries(sink, in_flight, budget, &mut states).await;
        summarise(&positions, states, deliveries)
    }

    fn spawn_chunks(&self, mut records: Vec<SourceRecord>) -> Vec<JoinHandle<ChunkResult>> {
        let mut chunks = Vec::with_capacity(records.len().div_ceil(self.options.chunk_size));
        while !records.is_empty() {
            let rest = records.split_off(self.options.chunk_size.min(records.len()));
            chunks.push(std::mem::replace(&mut records, rest));
        }
        chunks
            .into_iter()
            .map(|chunk| {
                let decoder = self.decoder.clone();
                let transformer = self.transformer.clone();
                let permits = self.permits.clone();
                tokio::spawn(async move {
                    // The semaphore is never closed; if it were, run unthrottled.
                    let _permit = permits.acquire_owned().await.ok();
                    chunk
                        .iter()
                        .map(|record| process(&decoder, &transformer, record))
                        .collect()
                })
            })
            .collect()
    }

    async fn enqueue_all(
        &self,
        sink: &Sink,
        index: usize,
        messages: &[OutMessage],
        budget: Option<Instant>,
        in_flight: &mut Vec<InFlight>,
    ) -> RecordState {
        for message in messages {
            match sink.enqueue(message, budget).await {
                Ok(future) => in_flight.push(InFlight {
                    record: index,
                    topic: message.topic.clone(),
                    future,
                }),
                Err(error) => return RecordState::Failed(error),
            }
        }
        RecordState::Pending(messages.len())
    }
}

fn process(
    decoder: &Decoder,
    transformer: &Transformer,
    record: &SourceRecord,
) -> Result<Transformed, RecordError> {
    let decoded = record.decode()?;
    let Some(value) = decoded.value.as_deref() else {
        return Ok(Transformed::Skipped(SkipReason::SourceTombstone));
    };
    let change = decoder.decode(value)?;
    let position = SourcePosition {
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
        kafka_key: decoded.key.as_deref(),
    };
    transformer.transform(position, &change)
}

struct InFlight {
    record: usize,
    topic: Arc<str>,
    future: rdkafka::producer::DeliveryFuture,
}

/// Awaits every acknowledgement; at `budget`, purges the producer so the remaining
/// futures resolve (as failures) instead of outliving the invocation.
async fn await_deliveries(
    sink: &Sink,
    in_flight: Vec<InFlight>,
    budget: Option<Instant>,
    states: &mut [RecordState],
) -> Vec<DeliveryRecord> {
    let mut deliveries = Vec::with_capacity(in_flight.len());
    let mut purged = false;
    for mut flight in in_flight {
        let result = match budget {
            Some(deadline) if !purged => {
                match tokio::time::timeout_at(deadline.into(), delivered(&mut flight.future)).await
                {
                    Ok(result) => result,
                    Err(_elapsed) => {
                        tracing::warn!("invocation budget spent: purging undelivered messages");
                        sink.purge();
                        purged = true;
                        delivered(flight.future).await
                    }
                }
            }
            _ => delivered(flight.future).await,
        };
        let state = &mut states[flight.record];
        match result {
            Ok(d) => {
                deliveries.push(DeliveryRecord {
                    topic: flight.topic,
                    partition: d.partition,
                    offset: d.offset,
                });
                if let RecordState::Pending(n) = state {
                    *n -= 1;
                    if *n == 0 {
                        *state = RecordState::Done;
                    }
                }
            }
            Err(error) => {
                if matches!(state, RecordState::Pending(_)) {
                    *state = RecordState::Failed(error);
                }
            }
        }
    }
    deliveries
}

/// Per partition: everything from the first record not done onwards is not done.
fn summarise(
    positions: &[(Arc<str>, i64)],
    states: Vec<RecordState>,
    deliveries: Vec<DeliveryRecord>,
) -> BatchOutcome {
    let mut outcome = BatchOutcome {
        records: positions.len(),
        messages: deliveries.len(),
        deliveries,
        ..BatchOutcome::default()
    };
    let mut failed_partition: Option<&Arc<str>> = None;
    for ((partition, offset), state) in positions.iter().zip(states) {
        if failed_partition == Some(partition) {
            outcome.not_done += 1;
            continue;
        }
        match state {
            RecordState::Done => outcome.produced += 1,
            RecordState::Skipped(reason) => {
                match outcome.skipped.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, n)) => *n += 1,
                    None => outcome.skipped.push((reason, 1)),
                }
            }
            other => {
                let error = match other {
                    RecordState::Failed(error) => error,
                    _ => RecordError::retryable(Stage::Sink, "not acknowledged"),
                };
                outcome.not_done += 1;
                outcome.failures.push(PartitionFailure {
                    batch_partition: partition.clone(),
                    offset: *offset,
                    error,
                });
                failed_partition = Some(partition);
            }
        }
    }
    outcome
}
