//! `cdc-relay esm`: Lambda's Kafka event source mapping, on a laptop.
//!
//! A consumer group over the DMS topics (the same [`Source`] as `serve`) that invokes a
//! Lambda endpoint (the `cargo lambda watch` emulator, or any Runtime Interface
//! Emulator) with real MSK events, as the mapping does:
//!
//! - **Batching**: up to `--batch-size` records (1-10,000, default 100), waiting at most
//!   `--maximum-batching-window-in-seconds` (0-300, default 0.5) after the first, and
//!   never more than the 6 MB invocation payload: a record that would push the event
//!   past it starts the next batch.
//! - **The event**: records grouped by `"<topic>-<partition>"`, in offset order, key,
//!   value and headers as Lambda encodes them (base64; header bytes as signed Java
//!   bytes), with `eventSource`, `eventSourceArn` (`--event-source-arn`, else
//!   `SelfManagedKafka`) and `bootstrapServers`.
//! - **Answers**: an HTTP error status or an `X-Amz-Function-Error` header is a
//!   function error: the whole batch is retried. With `--report-batch-item-failures`, a
//!   `batchItemFailures` list resumes each partition it names from the offset it names;
//!   a list naming a partition or offset not in the event is invalid and fails the
//!   whole batch, as Lambda does.
//! - **Retries**: after a backoff, the same records again (a partial failure: only the
//!   named partitions, from the named offsets). `--maximum-retry-attempts` (-1 =
//!   infinite, the default; 10 when infinite with an on-failure destination) and
//!   `--maximum-record-age-in-seconds` bound them; `--bisect-batch-on-function-error`
//!   splits a failing batch in two halves, first half first, without counting a retry.
//! - **Discarded records** (retries or age exhausted) go to `--on-failure kafka://TOPIC`
//!   on the source cluster: the record as it was, with its source and the failure in
//!   `esm-*` headers. Without a destination they are logged and skipped, as Lambda
//!   skips them.
//!
//! A batch's offsets are committed once every record in it is done or discarded. An
//! endpoint that cannot be reached (the emulator still building) is retried without
//! counting. SIGTERM (or Ctrl-C) lets the invocation in flight end (at most the function
//! timeout: the function may still be running it, and the partition's next owner must
//! not invoke its records meanwhile), invokes nothing more (no backoff, no discard),
//! commits what is done and leaves the group.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::error::Error;
use crate::kafka::group::{spans, Read, Source, SourceOptions};
use crate::kafka::ClientAuth;
use crate::ops::Metrics;
use crate::source::{
    base64_text, signed_bytes, EventWriter, NotDone, Payload, RecordOut, SourceRecord,
    LAMBDA_PAYLOAD_LIMIT,
};

/// Room kept in [`LAMBDA_PAYLOAD_LIMIT`] for the event's envelope.
const ENVELOPE_ROOM: usize = 16 * 1024;

/// The longest leaving the group may take at the end.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What `max.poll.interval.ms` must leave beyond the function timeout: the request
/// around the invocation and the loop's steps before the next poll.
const POLL_MARGIN: Duration = Duration::from_secs(1);
/// librdkafka's largest `max.poll.interval.ms`.
const MAX_POLL_INTERVAL_MS: u64 = 86_400_000;

/// Retries applied when retries are infinite and an on-failure destination is set.
const RETRIES_WITH_DESTINATION: i64 = 10;

/// The event source mapping's settings, named as in `CreateEventSourceMapping`.
#[derive(Debug, Clone, clap::Args)]
pub struct EsmOptions {
    /// The function's invoke URL (`cargo lambda watch` listens on port 9000 by default).
    #[arg(
        long,
        default_value = "http://127.0.0.1:9000/2015-03-31/functions/cdc-relay/invocations"
    )]
    pub function_url: String,
    /// The source cluster's bootstrap servers.
    #[arg(long, env = "RELAY_SOURCE_BROKERS")]
    pub brokers: String,
    /// The topics to consume (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        env = "RELAY_SOURCE_TOPICS"
    )]
    pub topics: Vec<String>,
    /// The consumer group (a mapping's is its UUID).
    #[arg(long, default_value = "cdc-relay-esm")]
    pub group: String,
    /// The MSK cluster ARN to put in `eventSourceArn`; without it the events say
    /// `SelfManagedKafka`.
    #[arg(long)]
    pub event_source_arn: Option<String>,
    /// BatchSize (1-10,000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// MaximumBatchingWindowInSeconds (0-300).
    #[arg(long, default_value_t = 0.5)]
    pub maximum_batching_window_in_seconds: f64,
    /// FunctionResponseTypes ReportBatchItemFailures: honour `batchItemFailures`.
    #[arg(long)]
    pub report_batch_item_failures: bool,
    /// MaximumRetryAttempts (-1 = infinite, or 0-10,000).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..=10_000))]
    pub maximum_retry_attempts: i64,
    /// MaximumRecordAgeInSeconds (-1 = infinite, or 60-604,800).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub maximum_record_age_in_seconds: i64,
    /// BisectBatchOnFunctionError.
    #[arg(long)]
    pub bisect_batch_on_function_error: bool,
    /// DestinationConfig OnFailure: `kafka://TOPIC` on the source cluster.
    #[arg(long)]
    pub on_failure: Option<String>,
    /// How long an invocation may take before it counts as a function error.
    /// Lambda's range: 1 to 900 s.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=900))]
    pub function_timeout_seconds: u64,
    /// Wait before a retry, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub retry_backoff_ms: u64,
    /// A librdkafka property of the source consumer, `NAME=VALUE` (repeatable); for
    /// example `session.timeout.ms=10000`.
    #[arg(long = "consumer-property", value_name = "NAME=VALUE")]
    pub consumer_properties: Vec<String>,
}

impl EsmOptions {
    /// Checks the ranges the mapping's API checks.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let window = self.maximum_batching_window_in_seconds;
        if !(0.0..=300.0).contains(&window) {
            return Err(Error::Invoke(format!(
                "--maximum-batching-window-in-seconds {window}: expected 0 to 300"
            )));
        }
        let age = self.maximum_record_age_in_seconds;
        if age != -1 && !(60..=604_800).contains(&age) {
            return Err(Error::Invoke(format!(
                "--maximum-record-age-in-seconds {age}: expected -1 or 60 to 604800"
            )));
        }
        if let Some(destination) = &self.on_failure {
            let topic = destination.strip_prefix("kafka://").unwrap_or_default();
            if topic.is_empty() {
                return Err(Error::Invoke(format!(
                    "--on-failure {destination}: expected kafka://TOPIC"
                )));
            }
            if self.topics.iter().any(|t| t == topic) {
                return Err(Error::Invoke(format!(
                    "--on-failure {destination}: the destination must not be a source topic"
                )));
            }
        }
        self.consumer_overrides()?;
        Ok(())
    }

    /// The source consumer's properties: `max.poll.interval.ms` past the function
    /// timeout, so that librdkafka never counts a member whose function is still within
    /// its timeout as stalled (the consumer is polled between invocations and during
    /// backoffs, not during an invocation), then `--consumer-property`.
    fn consumer_overrides(&self) -> Result<Vec<(String, String)>, Error> {
        let poll_interval_ms = (self.function_timeout_seconds.saturating_add(60))
            .saturating_mul(1000)
            .min(MAX_POLL_INTERVAL_MS);
        let mut overrides = vec![(
            "max.poll.interval.ms".to_owned(),
            poll_interval_ms.to_string(),
        )];
        for property in &self.consumer_properties {
            match property.split_once('=') {
                Some((name, value)) if !name.trim().is_empty() => {
                    overrides.push((name.trim().to_owned(), value.to_owned()))
                }
                _ => {
                    return Err(Error::Invoke(format!(
                        "--consumer-property {property:?}: expected NAME=VALUE"
                    )))
                }
            }
        }
        // An invocation is the longest stretch without a poll (the offset commit and the
        // seeks after a batch block 20 s and 10 s at most, and only while the brokers do
        // not answer): a member whose function runs
        // to its timeout must still be in the group when it answers.
        let interval = crate::kafka::property_millis(
            &overrides,
            "max.poll.interval.ms",
            "--consumer-property max.poll.interval.ms",
            Duration::from_millis(poll_interval_ms),
        )
        .map_err(Error::Invoke)?;
        let invocation = Duration::from_secs(self.function_timeout_seconds) + POLL_MARGIN;
        if interval < invocation {
            return Err(Error::Invoke(format!(
                "--consumer-property max.poll.interval.ms={} is shorter than the function \
                 timeout ({} s, --function-timeout-seconds) and {} s: the consumer is not \
                 polled while the function runs, so a member whose function runs to its \
                 timeout would leave the group and another would invoke its records too. \
                 Raise the interval or lower the timeout",
                interval.as_millis(),
                self.function_timeout_seconds,
                POLL_MARGIN.as_secs()
            )));
        }
        Ok(overrides)
    }

    /// The retries allowed (`None`: infinite).
    fn retries(&self) -> Option<i64> {
        match (self.maximum_retry_attempts, &self.on_failure) {
            (-1, Some(_)) => Some(RETRIES_WITH_DESTINATION),
            (-1, None) => None,
            (n, _) => Some(n),
        }
    }
}

/// What an invocation came to.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Every record done, or these partitions not done from these offsets.
    Done(NotDone),
    /// A function error (or an invalid response): the whole batch failed.
    FunctionError(String),
    /// The endpoint could not be reached: nothing was invoked.
    Unreachable(String),
}

/// Records still to be done, and how often they were retried.
struct Attempt {
    reads: Vec<Read>,
    retries: i64,
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// The local event source mapping.
pub struct Mapping {
    options: EsmOptions,
    source: Source,
    client: Client,
    url: hyper::Uri,
    destination: Option<(FutureProducer, String)>,
}

impl Mapping {
    /// Subscribes to the source topics (plaintext).
    pub fn new(options: EsmOptions) -> Result<Mapping, Error> {
        options.validate()?;
        let url = function_uri(&options.function_url)?;
        let source = Source::new(
            SourceOptions {
                brokers: options.brokers.clone(),
                topics: options.topics.clone(),
                group_id: options.group.clone(),
                batch_size: options.batch_size as usize,
                batch_window: Duration::from_secs_f64(options.maximum_batching_window_in_seconds),
                // As the event source mapping: a commit after every invocation.
                commit_interval: Duration::ZERO,
                batch_max_bytes: LAMBDA_PAYLOAD_LIMIT - ENVELOPE_ROOM,
                record_size: event_bytes,
                overrides: options.consumer_overrides()?,
            },
            &ClientAuth::None,
            Arc::new(Metrics::new()),
        )?;
        let destination = match &options.on_failure {
            None => None,
            Some(d) => {
                let topic = d.trim_start_matches("kafka://").to_owned();
                let producer: FutureProducer =
                    crate::kafka::producer::producer_config(&options.brokers, &[])
                        .create()
                        .map_err(|e| Error::Producer(format!("on-failure destination: {e}")))?;
                Some((producer, topic))
            }
        };
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        tracing::info!(
            url = %url, topics = ?options.topics, batch_size = options.batch_size,
            window_s = options.maximum_batching_window_in_seconds,
            report_batch_item_failures = options.report_batch_item_failures,
            "event source mapping started"
        );
        Ok(Mapping {
            options,
            source,
            client,
            url,
            destination,
        })
    }

    /// Polls and invokes until `shutdown` completes (between batches), then commits
    /// what is done and leaves the group.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        tokio::pin!(shutdown);
        loop {
            let batch = tokio::select! {
                batch = self.source.read_batch() => batch,
                () = &mut shutdown => break,
            };
            if batch.is_empty() {
                continue;
            }
            let records = batch.len();
            let spans = spans(&batch);
            // A shutdown lets the invocation in flight end (the function may still be
            // running it, and the partition's next owner must not invoke its records
            // meanwhile), starts no other, and commits what is done before leaving.
            let stopping = AtomicBool::new(false);
            let not_done = {
                let resolving = self.resolve(batch, &stopping);
                tokio::pin!(resolving);
                tokio::select! {
                    not_done = &mut resolving => not_done,
                    () = &mut shutdown => {
                        stopping.store(true, Ordering::Relaxed);
                        tracing::info!("stopping: waiting for the invocation in flight");
                        resolving.await
                    }
                }
            };
            if stopping.load(Ordering::Relaxed) {
                self.source.done_except(&spans, &not_done);
                self.source.commit().await;
                break;
            }
            tracing::info!(
                records,
                partitions = spans.len(),
                not_done = not_done.len(),
                "batch finished"
            );
            self.source.done_except(&spans, &not_done);
            self.source.commit().await;
            let backoff = Duration::from_millis(self.options.retry_backoff_ms);
            self.source
                .read_again(&spans, &not_done, backoff, backoff * 60);
        }
        self.source.leave(LEAVE_TIMEOUT).await;
        Ok(())
    }

    /// Invokes until every record of `batch` is done or discarded. Returns, per
    /// partition, the first offset neither (a discarded record the destination did not
    /// take): read again after a backoff.
    async fn resolve(&mut self, batch: Vec<Read>, stopping: &AtomicBool) -> NotDone {
        let mut not_done = NotDone::new();
        let mut work = VecDeque::from([Attempt {
            reads: batch,
            retries: 0,
        }]);
        let backoff = Duration::from_millis(self.options.retry_backoff_ms);
        let mut first = true;
        while let Some(mut attempt) = work.pop_front() {
            if stopping.load(Ordering::Relaxed) {
                // Stopping: nothing more is invoked; what is left is read again by the
                // partitions' next owner.
                for attempt in std::iter::once(attempt).chain(work.drain(..)) {
                    for r in attempt.reads {
                        not_done.mark(r.record.batch_partition.clone(), r.record.offset, None);
                    }
                }
                break;
            }
            // Each invocation after the batch's first: the group's events are served
            // first, so a chain of invocations (halves of a bisection, the rest of a
            // partial failure) is never one long stretch without a poll, and a partition
            // revoked meanwhile is answered now and left out below.
            if !std::mem::take(&mut first) {
                self.source.serve_pending().await;
            }
            self.source.drop_stale(&mut attempt.reads);
            // A partition's records from its first not done on wait for the read-again;
            // those before it go on (their timestamps need not rise with their offsets).
            attempt.reads.retain(|r| {
                not_done
                    .get(&r.record.batch_partition)
                    .is_none_or(|from| r.record.offset < from)
            });
            let (old, young) = self.split_by_age(attempt.reads);
            if !old.is_empty() {
                // Sending to the destination can take librdkafka's delivery timeout per
                // record: the group's events are served meanwhile.
                self.source
                    .serve_while(discard(
                        &self.destination,
                        old,
                        "record age exceeded",
                        attempt.retries,
                        &mut not_done,
                    ))
                    .await;
                // The rest goes round again: a partition revoked during the discard,
                // or one whose old record the destination refused, is left out above
                // before anything is invoked.
                if !young.is_empty() {
                    work.push_front(Attempt {
                        reads: young,
                        retries: attempt.retries,
                    });
                }
                continue;
            }
            attempt.reads = young;
            if attempt.reads.is_empty() {
                continue;
            }
            // The consumer is not polled during the invocation: a revocation served now
            // would let the partition's next owner invoke these records while this
            // invocation still runs (two writers of one key). max.poll.interval.ms
            // outlasts the function timeout instead (see `consumer_overrides`).
            let failed = match invoke(&self.client, &self.url, &self.options, &attempt.reads).await
            {
                Answer::Done(failures) if failures.is_empty() => continue,
                Answer::Done(failures) => {
                    tracing::info!(partitions = failures.len(), "partial batch failure: the reported partitions are retried from the reported offsets");
                    attempt
                        .reads
                        .into_iter()
                        .filter(|r| {
                            failures
                                .get(&r.record.batch_partition)
                                .is_some_and(|from| r.record.offset >= from)
                        })
                        .collect::<Vec<_>>()
                }
                Answer::Unreachable(error) => {
                    tracing::warn!(%error, url = %self.url, "function not reachable; invoking again");
                    if !stopping.load(Ordering::Relaxed) {
                        self.source.wait(backoff).await;
                    }
                    work.push_front(attempt);
                    continue;
                }
                Answer::FunctionError(error) => {
                    tracing::warn!(%error, records = attempt.reads.len(), "function error");
                    if self.options.bisect_batch_on_function_error && attempt.reads.len() > 1 {
                        let second = attempt.reads.split_off(attempt.reads.len() / 2);
                        work.push_front(Attempt {
                            reads: second,
                            retries: attempt.retries,
                        });
                        work.push_front(Attempt {
                            reads: attempt.reads,
                            retries: attempt.retries,
                        });
                        continue;
                    }
                    attempt.reads
                }
            };
            if stopping.load(Ordering::Relaxed) {
                // Stopping: no backoff and no discard (a destination can take its
                // delivery timeout); the failed records are the next owner's to retry.
                work.push_front(Attempt {
                    reads: failed,
                    retries: attempt.retries,
                });
                continue;
            }
            let retries = attempt.retries + 1;
            if self.options.retries().is_some_and(|max| retries > max) {
                self.source
                    .serve_while(discard(
                        &self.destination,
                        failed,
                        "retries exhausted",
                        attempt.retries,
                        &mut not_done,
                    ))
                    .await;
                continue;
            }
            self.source.wait(backoff).await;
            work.push_front(Attempt {
                reads: failed,
                retries,
            });
        }
        not_done
    }

    /// Splits off the records older than `--maximum-record-age-in-seconds`.
    fn split_by_age(&self, reads: Vec<Read>) -> (Vec<Read>, Vec<Read>) {
        let max_age = self.options.maximum_record_age_in_seconds;
        if max_age < 0 {
            return (Vec::new(), reads);
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // A record without a timestamp (0) has no age.
        reads.into_iter().partition(|r| {
            r.record.timestamp_ms > 0 && now_ms - r.record.timestamp_ms > max_age * 1000
        })
    }
}

/// One invocation of `url` with `reads` as an MSK event.
async fn invoke(client: &Client, url: &hyper::Uri, options: &EsmOptions, reads: &[Read]) -> Answer {
    let body = match serde_json::to_vec(&event(reads, options)) {
        Ok(body) => body,
        Err(e) => return Answer::FunctionError(format!("event not serialisable: {e}")),
    };
    let request = hyper::Request::post(url.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)));
    let request = match request {
        Ok(r) => r,
        Err(e) => return Answer::Unreachable(e.to_string()),
    };
    // One deadline for the whole invocation, answer and body: a function that answers
    // within its timeout never keeps the member from its poll for longer.
    let timeout = Duration::from_secs(options.function_timeout_seconds);
    let deadline = tokio::time::Instant::now() + timeout;
    let response = match tokio::time::timeout_at(deadline, client.request(request)).await {
        Err(_) => return Answer::FunctionError(format!("timed out after {timeout:?}")),
        // Not connected: nothing was invoked. Any other failure (the connection
        // reset mid-invocation) counts as a function error.
        Ok(Err(e)) if e.is_connect() => return Answer::Unreachable(e.to_string()),
        Ok(Err(e)) => return Answer::FunctionError(e.to_string()),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    let function_error = response
        .headers()
        .get("x-amz-function-error")
        .map(|v| v.to_str().unwrap_or("Unhandled").to_owned());
    // Lambda's response payload limit is 6 MB too.
    let limited = http_body_util::Limited::new(response.into_body(), LAMBDA_PAYLOAD_LIMIT);
    let body = match tokio::time::timeout_at(deadline, limited.collect()).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) => return Answer::FunctionError(format!("response body: {e}")),
        Err(_) => return Answer::FunctionError("response body timed out".to_owned()),
    };
    if !status.is_success() || function_error.is_some() {
        return Answer::FunctionError(format!(
            "{status} {}: {}",
            function_error.unwrap_or_default(),
            String::from_utf8_lossy(&body[..body.len().min(500)])
        ));
    }
    if !options.report_batch_item_failures {
        return Answer::Done(NotDone::new());
    }
    batch_item_failures(&body, reads)
}

/// Sends discarded records to the on-failure destination (or logs them when there is
/// none). A record the destination does not take stays not done, with the rest of its
/// partition.
async fn discard(
    destination: &Option<(FutureProducer, String)>,
    reads: Vec<Read>,
    reason: &str,
    retries: i64,
    not_done: &mut NotDone,
) {
    let Some((producer, topic)) = destination else {
        for r in &reads {
            tracing::warn!(
                topic = %r.record.topic, partition = r.record.partition,
                offset = r.record.offset, reason, retries,
                "record discarded (no on-failure destination)"
            );
        }
        return;
    };
    for r in reads {
        let record = &r.record;
        // After a refusal, the partition's later records wait for the read-again too.
        if not_done
            .get(&record.batch_partition)
            .is_some_and(|from| record.offset > from)
        {
            continue;
        }
        let parts = record.original_parts();
        let mut headers = OwnedHeaders::new();
        for (name, value) in &parts.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let retries = retries.to_string();
        for (key, value) in [
            ("esm-source-topic", &*record.topic),
            ("esm-source-partition", &partition),
            ("esm-source-offset", &offset),
            ("esm-failure", reason),
            ("esm-retry-attempts", &retries),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut message: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(key) = parts.key.as_deref() {
            message = message.key(key);
        }
        if let Some(value) = parts.value.as_deref() {
            message = message.payload(value);
        }
        match producer.send(message, Duration::from_secs(30)).await {
            Ok(_) => tracing::warn!(
                topic = %record.topic, partition = record.partition, offset = record.offset,
                reason, destination = %topic, "record sent to the on-failure destination"
            ),
            Err((error, _)) => {
                tracing::error!(
                    topic = %record.topic, partition = record.partition, offset = record.offset,
                    %error, "the on-failure destination refused the record; read again later"
                );
                not_done.mark(record.batch_partition.clone(), record.offset, None);
            }
        }
    }
}

/// The event Lambda's mapping sends for `reads` (sorted by partition and offset).
fn event<'a>(reads: &'a [Read], options: &'a EsmOptions) -> EventWriter<'a> {
    let mut event = EventWriter::new(options.event_source_arn.as_deref(), Some(&options.brokers));
    for r in reads {
        let record = &r.record;
        event.push(
            &*record.batch_partition,
            RecordOut {
                topic: &record.topic,
                partition: record.partition,
                offset: record.offset,
                timestamp: record.timestamp_ms,
                timestamp_type: if r.log_append_time {
                    "LOG_APPEND_TIME"
                } else {
                    "CREATE_TIME"
                },
                key: record.key.as_ref().map(base64),
                value: record.value.as_ref().map(base64),
                headers: record
                    .headers
                    .iter()
                    .map(|(name, bytes)| BTreeMap::from([(name.as_str(), signed_bytes(bytes))]))
                    .collect(),
            },
        );
    }
    event
}

/// A payload in base64: as it came (Lambda's own events), else encoded.
fn base64(payload: &Payload) -> Cow<'_, str> {
    match payload {
        Payload::Base64(text) => Cow::Borrowed(text.as_str()),
        Payload::Bytes(bytes) => Cow::Owned(base64_text(bytes)),
    }
}

/// A record's most bytes in the event: base64 key and value, each header byte as up to
/// four characters and a comma, and the fields around them.
fn event_bytes(record: &SourceRecord) -> usize {
    let b64 = |p: &Option<Payload>| match p {
        Some(Payload::Bytes(b)) => b.len().div_ceil(3) * 4 + 10,
        Some(Payload::Base64(t)) => t.len() + 10,
        None => 0,
    };
    2 * record.batch_partition.len()
        + record.topic.len()
        + b64(&record.key)
        + b64(&record.value)
        + record
            .headers
            .iter()
            .map(|(n, v)| n.len() + 10 + 5 * v.len())
            .sum::<usize>()
        + 160
}

/// The partial batch response: per partition, the lowest offset reported. An entry
/// naming a partition or an offset that is not in the event makes the whole response
/// invalid (a function error), as Lambda treats it.
fn batch_item_failures(body: &[u8], reads: &[Read]) -> Answer {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Response {
        #[serde(default)]
        batch_item_failures: Option<Vec<Failure>>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Failure {
        item_identifier: Option<Identifier>,
    }
    #[derive(serde::Deserialize)]
    struct Identifier {
        partition: String,
        offset: i64,
    }
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() || text.trim() == "null" {
        return Answer::Done(NotDone::new());
    }
    let invalid = |e: &dyn std::fmt::Display| {
        Answer::FunctionError(format!("invalid partial batch response: {e}"))
    };
    // serde's derives would also read a struct from an array of its fields (`[]` as a
    // response without failures): each level must be the object Lambda reads. The shape
    // is checked on a value; the response is read from the text itself, where a key
    // given twice is refused (a value keeps the last).
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) if objects_all_the_way(&value) => {}
        Ok(_) => {
            return invalid(&format!(
                "expected {{\"batchItemFailures\": [{{\"itemIdentifier\": {{\"partition\": ..., \
                 \"offset\": ...}}}}]}}, got {}",
                text.chars().take(200).collect::<String>()
            ))
        }
        Err(e) => return invalid(&e),
    }
    let response: Response = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return invalid(&e),
    };
    let mut failures = NotDone::new();
    for failure in response.batch_item_failures.unwrap_or_default() {
        let Some(id) = failure.item_identifier else {
            return Answer::FunctionError(
                "invalid partial batch response: an item without itemIdentifier".to_owned(),
            );
        };
        let Some(read) = reads
            .iter()
            .find(|r| *r.record.batch_partition == *id.partition && r.record.offset == id.offset)
        else {
            return Answer::FunctionError(format!(
                "invalid partial batch response: {} offset {} is not in the event",
                id.partition, id.offset
            ));
        };
        failures.mark(read.record.batch_partition.clone(), id.offset, None);
    }
    Answer::Done(failures)
}

/// The function's URL. Refused at start unless `http://HOST[:PORT]/...`: the client
/// sends nowhere else, and any other URL would fail every invocation (a function error:
/// records discarded once retries run out) or never connect (retried for ever).
fn function_uri(url: &str) -> Result<hyper::Uri, Error> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| Error::Invoke(format!("--function-url {url}: {e}")))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none_or(str::is_empty) {
        return Err(Error::Invoke(format!(
            "--function-url {url}: expected http://HOST[:PORT]/PATH (the local function, \
             e.g. cargo lambda watch's http://127.0.0.1:9000/2015-03-31/functions/NAME/invocations)"
        )));
    }
    Ok(uri)
}

/// Whether a partial batch response is objects where Lambda reads objects: the response,
/// each item of `batchItemFailures` (a list, or null), and its `itemIdentifier`.
fn objects_all_the_way(response: &serde_json::Value) -> bool {
    use serde_json::Value;
    let Value::Object(response) = response else {
        return false;
    };
    match response.get("batchItemFailures") {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.iter().all(|item| {
            let Value::Object(item) = item else {
                return false;
            };
            matches!(
                item.get("itemIdentifier"),
                None | Some(Value::Null | Value::Object(_))
            )
        }),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(partition: i64, offset: i64) -> Read {
        Read {
            record: SourceRecord {
                batch_partition: Arc::from(format!("dms.orders-{partition}")),
                topic: Arc::from("dms.orders"),
                partition,
                offset,
                timestamp_ms: 1_732_200_000_000,
                key: Some(Payload::Bytes(b"k".to_vec())),
                value: Some(Payload::Bytes(vec![0xC3, 0xAB])),
                headers: vec![("traceparent".to_owned(), vec![0xC3, 0xAB])],
            },
            log_append_time: false,
            epoch: 0,
        }
    }

    fn parsed(args: &[&str]) -> EsmOptions {
        try_parsed(args).expect("arguments")
    }

    fn try_parsed(args: &[&str]) -> Result<EsmOptions, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            esm: EsmOptions,
        }
        let all = [
            "esm",
            "--brokers",
            "127.0.0.1:9092",
            "--topics",
            "dms.orders",
        ];
        <Cli as clap::Parser>::try_parse_from(all.iter().chain(args)).map(|cli| cli.esm)
    }

    /// A function URL the client cannot send to is refused at start (it would fail or
    /// never reach every invocation); the default, cargo lambda watch's, is taken.
    #[test]
    fn a_function_url_the_client_cannot_send_to_is_refused() {
        for url in [
            "/2015-03-31/functions/cdc-relay/invocations",
            "localhost:9000/2015-03-31/functions/cdc-relay/invocations",
            "https://127.0.0.1:9000/2015-03-31/functions/cdc-relay/invocations",
            "ftp://127.0.0.1/x",
        ] {
            let error = function_uri(url)
                .err()
                .unwrap_or_else(|| panic!("{url} taken"))
                .to_string();
            assert!(error.contains("--function-url"), "{error}");
        }
        function_uri(&parsed(&[]).function_url).expect("the default URL");
    }

    /// A function within its timeout never makes librdkafka count the member stalled:
    /// `max.poll.interval.ms` is the function timeout and 60 s unless a property sets it;
    /// a property must be NAME=VALUE.
    #[test]
    fn the_poll_interval_outlasts_the_function_timeout() {
        let poll = |options: &EsmOptions| {
            options
                .consumer_overrides()
                .expect("properties")
                .into_iter()
                .rev()
                .find(|(name, _)| name == "max.poll.interval.ms")
                .map(|(_, value)| value)
        };
        assert_eq!(
            poll(&parsed(&[])).as_deref(),
            Some("960000"),
            "900 s + 60 s"
        );
        let options = parsed(&["--function-timeout-seconds", "30"]);
        assert_eq!(poll(&options).as_deref(), Some("90000"));
        let options = parsed(&[
            "--function-timeout-seconds",
            "5",
            "--consumer-property",
            "max.poll.interval.ms=6000",
        ]);
        assert_eq!(poll(&options).as_deref(), Some("6000"), "the property wins");
        // A lowered interval must still outlast the function timeout and the margin.
        for (timeout, interval, refused) in [("5", "5999", true), ("900", "6000", true)] {
            let property = format!("max.poll.interval.ms={interval}");
            let options = parsed(&[
                "--function-timeout-seconds",
                timeout,
                "--consumer-property",
                &property,
            ]);
            let error = options.validate().map_err(|e| e.to_string());
            assert_eq!(
                error.is_err(),
                refused,
                "{timeout} s, {interval} ms: {error:?}"
            );
            if let Err(error) = error {
                assert!(error.contains("--function-timeout-seconds"), "{error}");
            }
        }
        let options = parsed(&["--consumer-property", "max.poll.interval.ms=soon"]);
        assert!(options.validate().is_err(), "not a number");
        // Lambda's range of function timeouts, so the interval never overflows.
        for timeout in ["0", "901", "18446744073709551615"] {
            assert!(
                try_parsed(&["--function-timeout-seconds", timeout]).is_err(),
                "{timeout}"
            );
        }
        for bad in ["max.poll.interval.ms", "=6000", " =1"] {
            let options = parsed(&["--consumer-property", bad]);
            let error = options.validate().expect_err("refused").to_string();
            assert!(error.contains("NAME=VALUE"), "{bad}: {error}");
        }
    }

    /// The partial batch response is read as Lambda reads it: the lowest offset per
    /// partition, and anything not in the event invalidates the whole answer.
    #[test]
    fn partial_batch_responses() {
        let reads = [read(0, 5), read(0, 6), read(0, 7), read(1, 9)];
        let answer = |json: &str| batch_item_failures(json.as_bytes(), &reads);
        assert_eq!(answer(""), Answer::Done(NotDone::new()));
        assert_eq!(answer("null"), Answer::Done(NotDone::new()));
        assert_eq!(answer("{}"), Answer::Done(NotDone::new()));
        assert_eq!(
            answer(r#"{"batchItemFailures":null}"#),
            Answer::Done(NotDone::new())
        );
        assert_eq!(
            answer(r#"{"batchItemFailures":[]}"#),
            Answer::Done(NotDone::new())
        );
        assert_eq!(
            answer(
                r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"dms.orders-0","offset":7}},
                   {"itemIdentifier":{"partition":"dms.orders-0","offset":6}}]}"#
            ),
            Answer::Done(NotDone::from_iter([(Arc::from("dms.orders-0"), 6)]))
        );
        for invalid in [
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"dms.orders-0","offset":8}}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"dms.orders-2","offset":5}}]}"#,
            r#"{"batchItemFailures":[{}]}"#,
            r#"{"batchItemFailures":"#,
            // Structs written as arrays of their fields: not what Lambda reads.
            "[]",
            "[null]",
            r#"{"batchItemFailures":[[{"partition":"dms.orders-0","offset":6}]]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":["dms.orders-0",6]}]}"#,
            r#"{"batchItemFailures":{}}"#,
            // A key given twice: the failures must not be read as none.
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"dms.orders-0","offset":6}}],"batchItemFailures":[]}"#,
        ] {
            assert!(
                matches!(answer(invalid), Answer::FunctionError(_)),
                "{invalid}"
            );
        }
    }

    /// The event is an MSK event the relay's own parser reads back to the same records,
    /// and its size never exceeds what [`event_bytes`] counted.
    #[test]
    fn events_are_msk_events_within_the_counted_size() {
        let reads = [read(0, 5), read(0, 6), read(1, 9)];
        let options = EsmOptions {
            function_url: String::new(),
            brokers: "b-1:9092".to_owned(),
            topics: vec!["dms.orders".to_owned()],
            group: "g".to_owned(),
            event_source_arn: None,
            batch_size: 100,
            maximum_batching_window_in_seconds: 0.5,
            report_batch_item_failures: true,
            maximum_retry_attempts: -1,
            maximum_record_age_in_seconds: -1,
            bisect_batch_on_function_error: false,
            on_failure: None,
            function_timeout_seconds: 1,
            retry_backoff_ms: 1,
            consumer_properties: Vec::new(),
        };
        let json = serde_json::to_string(&event(&reads, &options)).expect("serialises");
        assert!(
            json.len() <= reads.iter().map(|r| event_bytes(&r.record)).sum::<usize>() + 200,
            "{} bytes",
            json.len()
        );
        let parsed = crate::source::MskEvent::parse(json.into_bytes()).expect("an MSK event");
        assert_eq!(
            parsed.origin.event_source.as_deref(),
            Some("SelfManagedKafka")
        );
        assert_eq!(parsed.origin.bootstrap_servers.as_deref(), Some("b-1:9092"));
        let records = parsed.records;
        assert_eq!(records.len(), 3);
        for (got, want) in records.iter().zip(&reads) {
            assert_eq!(
                (&*got.batch_partition, got.offset),
                (&*want.record.batch_partition, want.record.offset)
            );
            assert_eq!(
                got.decode().expect("decodes"),
                want.record.decode().expect("decodes")
            );
        }
    }
}
