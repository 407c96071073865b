//! The rdkafka producer: enqueue every message, await every acknowledgement.
//!
//! One [`Sink`] per execution environment (never per invocation: creating a producer
//! and its connections costs on the order of 100 ms). It is idempotent with `acks=all`,
//! so librdkafka's internal retries neither duplicate nor reorder messages within a
//! partition, and it uses the Java client's `murmur2_random` partitioner so that
//! downstream consumers written in any client agree on which partition a key lands in.
//!
//! Delivery errors are classified here, once: a message the broker or the producer
//! rejects for its own bytes (too large, invalid record) is permanent; everything else is
//! retryable: broker down, timeouts, leader changes, a purge at the deadline, and every
//! fault of the infrastructure rather than the record (authorization, an unknown topic,
//! a fatal producer state), so that one missing grant never sends a stream to the
//! dead-letter topic. A topic name the broker refuses (INVALID_TOPIC) is flagged
//! ([`Undelivered::name_refused`]): the pipeline blames the record when the relay rendered
//! the name from DMS's, and the configuration when the routes wrote it out.
//!
//! Before the first message to a topic, the sink asks the cluster about it once
//! ([`Sink::check_topic`]): a topic that does not exist, or that the relay may not
//! describe, fails its records at once (retryable) instead of after librdkafka's 30 s of
//! metadata waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, PurgeConfig};

use crate::error::{Error, RecordError, Stage};
use crate::kafka::{ClientAuth, Redactor, RelayContext};
use crate::transform::OutMessage;

/// Where the broker put an acknowledged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// Partition the message landed in.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// The downstream Kafka producer.
pub struct Sink {
    producer: FutureProducer<RelayContext>,
    brokers: String,
    auth: crate::kafka::AuthMode,
    redactor: Redactor,
    /// `message.max.bytes` in force: the largest message the producer sends.
    message_max_bytes: usize,
    /// What the cluster said about each topic: known to exist, or a recent refusal.
    topics: Mutex<HashMap<Arc<str>, TopicCheck>>,
    /// Set by the producer's context when the brokers refused the login.
    login_refused: Arc<AtomicBool>,
}

/// What the sink knows about a topic.
#[derive(Debug, Clone)]
enum TopicCheck {
    /// The cluster listed it: produce without asking again.
    Exists,
    /// The cluster refused it; not asked again until this instant (the budget of the
    /// batch that asked) or the next batch ([`Sink::begin_batch`]), so the other
    /// partitions of the batch fail at once instead of each waiting for metadata.
    Refused(Instant, Undelivered),
    /// The cluster did not answer in time (or listed no partitions yet): produced without
    /// asking again until this instant (as for a refusal) or the next batch, so one
    /// record of the batch waits for the answer, not each in turn; the delivery reports
    /// decide.
    Unanswered(Instant),
}

/// How long a refusal or a question not answered is remembered when the batch has no
/// budget.
const REFUSAL_MEMORY: Duration = Duration::from_secs(1);

/// Longest wait for a topic's metadata before producing without an answer.
const TOPIC_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The longest [`Sink::send_now`] keeps a blocking thread when no budget is given.
const SEND_NOW_MAX: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("brokers", &self.brokers)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// The producer configuration the relay relies on, before authentication and user
/// overrides.
pub fn producer_config(brokers: &str, overrides: &[(String, String)]) -> ClientConfig {
    producer_config_with(brokers, &ClientAuth::None, overrides)
}

/// The full producer configuration: the relay's defaults, then the authentication
/// mode's properties, then the user's `RELAY_PRODUCER_*` overrides (which win).
pub fn producer_config_with(
    brokers: &str,
    auth: &ClientAuth,
    overrides: &[(String, String)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Nothing lost, nothing duplicated by librdkafka's own retries, order kept per partition.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Same key -> same partition as the Java client computes.
        .set("partitioner", "murmur2_random")
        // Small batches still leave quickly; throughput comes from many in flight.
        .set("linger.ms", "2")
        // A whole 10,000-record batch (with fan-out) must fit in the local queue.
        .set("queue.buffering.max.messages", "1000000")
        // Connect to every broker as soon as metadata names it (during init), not when
        // the first batch has something for it: the first invocation is not slower.
        .set("enable.sparse.connections", "false");
    auth.apply(&mut config);
    for (name, value) in overrides {
        config.set(name, value);
    }
    config
}

impl Sink {
    /// Creates the producer for an authentication mode. Does not contact the brokers.
    pub fn connect_with(
        brokers: &str,
        auth: ClientAuth,
        overrides: &[(String, String)],
    ) -> Result<Sink, Error> {
        let context = RelayContext::new(&auth);
        let login_refused = context.auth_refused.clone();
        let redactor = Redactor::new(auth.secrets());
        let config = producer_config_with(brokers, &auth, overrides);
        let message_max_bytes = config
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
        let producer: FutureProducer<RelayContext> =
            config.create_with_context(context).map_err(|e| {
                let e = e.to_string();
                Error::Producer(format!(
                    "cannot create producer for {brokers}: {}",
                    redactor.redact(&e)
                ))
            })?;
        Ok(Sink {
            producer,
            brokers: brokers.to_owned(),
            auth: auth.mode(),
            redactor,
            message_max_bytes,
            topics: Mutex::new(HashMap::new()),
            login_refused,
        })
    }

    /// The transactional producer's calls (`serve` with exactly-once: the producer
    /// then has a `transactional.id`). Each blocks up to its timeout: call them off the
    /// async workers.
    pub(crate) fn transactions(&self) -> &FutureProducer<RelayContext> {
        &self.producer
    }

    /// Forgets the topics the cluster refused or did not answer about: a new batch asks
    /// about them again, so a grant added or a topic created between invocations takes
    /// effect at once.
    pub(crate) fn begin_batch(&self) {
        if let Ok(mut topics) = self.topics.lock() {
            topics.retain(|_, check| matches!(check, TopicCheck::Exists));
        }
    }

    /// Whether the brokers refused this producer's login (SASL authentication failed)
    /// since [`Sink::take_login_refused`] last asked.
    pub fn login_refused(&self) -> bool {
        self.login_refused.load(Ordering::Relaxed)
    }

    /// Whether the brokers refused this producer's login since the last call, and
    /// forgets it: one refusal is acted on once (the secret fetched again), and a login
    /// that works again stops asking for the secret. A refusal that lasts is reported
    /// again: librdkafka passes an identical broker error on at most once per 30 s per
    /// broker, and again at the first refusal after that.
    pub fn take_login_refused(&self) -> bool {
        self.login_refused.swap(false, Ordering::Relaxed)
    }

    /// The largest message the producer sends (`message.max.bytes`).
    pub(crate) fn message_max_bytes(&self) -> usize {
        self.message_max_bytes
    }

    /// The id of the cluster the producer writes to, if it answers within `timeout`
    /// (blocking: call from a blocking thread).
    pub(crate) fn cluster_id(&self, timeout: Duration) -> Option<String> {
        self.producer.client().fetch_cluster_id(timeout)
    }

    /// Whether the producer's fatal error is a fencing: another producer with its
    /// `transactional.id` initialised transactions after it.
    pub(crate) fn fenced(&self) -> bool {
        matches!(
            self.producer.client().fatal_error(),
            Some((
                RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch,
                _
            ))
        )
    }

    /// The producer's fatal error, if it has one: it then fails every message, and
    /// only a new producer can deliver again.
    pub(crate) fn fatal_error(&self) -> Option<String> {
        self.producer
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code:?}: {}", self.redactor.redact(&reason)))
    }

    /// Asks the cluster about `topic` before its first message: `Err` (retryable) when
    /// the topic does not exist or the relay may not use it. Asked once per producer
    /// for a topic that exists; a refusal is remembered until `budget`. When the
    /// cluster does not answer by `budget` (or [`TOPIC_CHECK_TIMEOUT`]), the message is
    /// produced and the delivery reports decide; so are the topic's next messages until
    /// `budget`, without asking again (a slow cluster would otherwise hold every record
    /// of the batch for the timeout in turn).
    pub(crate) async fn check_topic(
        &self,
        topic: &Arc<str>,
        budget: Option<Instant>,
    ) -> Result<(), Undelivered> {
        let known = self.topics.lock().ok().and_then(|t| t.get(topic).cloned());
        match known {
            Some(TopicCheck::Exists) => return Ok(()),
            Some(TopicCheck::Refused(until, error)) if Instant::now() < until => return Err(error),
            Some(TopicCheck::Unanswered(until)) if Instant::now() < until => return Ok(()),
            _ => {}
        }
        let timeout = budget
            .map_or(TOPIC_CHECK_TIMEOUT, |b| {
                b.saturating_duration_since(Instant::now())
            })
            .min(TOPIC_CHECK_TIMEOUT);
        let producer = self.producer.clone();
        let name = topic.clone();
        let answer = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&name), timeout)
                .map(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == &*name)
                        .map(|t| (t.error(), t.partitions().len()))
                })
        })
        .await;
        let verdict = match answer {
            Ok(Ok(Some((None, partitions)))) if partitions > 0 => TopicCheck::Exists,
            Ok(Ok(Some((Some(code), _)))) => {
                let code = RDKafkaErrorCode::from(code);
                let why = match code {
                    RDKafkaErrorCode::UnknownTopicOrPartition => {
                        "does not exist on the cluster".to_owned()
                    }
                    RDKafkaErrorCode::TopicAuthorizationFailed => {
                        "is not authorized for the relay (check its grants)".to_owned()
                    }
                    RDKafkaErrorCode::InvalidTopic => {
                        "is a name the cluster refuses (INVALID_TOPIC)".to_owned()
                    }
                    other => format!("is not usable: {other}"),
                };
                TopicCheck::Refused(
                    budget.unwrap_or_else(|| Instant::now() + REFUSAL_MEMORY),
                    Undelivered {
                        error: RecordError::retryable(
                            Stage::Sink,
                            format!("topic {topic:?} {why}"),
                        ),
                        name_refused: code == RDKafkaErrorCode::InvalidTopic,
                    },
                )
            }
            // No answer in time, or no partitions yet: let the producer find out.
            _ => TopicCheck::Unanswered(budget.unwrap_or_else(|| Instant::now() + REFUSAL_MEMORY)),
        };
        // A check that went unanswered never replaces an answer another check got
        // meanwhile (a refusal still in force, or the topic's existence).
        let verdict = match self.topics.lock() {
            Ok(mut topics) => {
                let verdict = match (verdict, topics.get(topic)) {
                    (TopicCheck::Unanswered(_), Some(TopicCheck::Exists)) => TopicCheck::Exists,
                    (TopicCheck::Unanswered(_), Some(TopicCheck::Refused(until, error)))
                        if Instant::now() < *until =>
                    {
                        TopicCheck::Refused(*until, error.clone())
                    }
                    (verdict, _) => verdict,
                };
                topics.insert(topic.clone(), verdict.clone());
                verdict
            }
            Err(_) => verdict,
        };
        match verdict {
            TopicCheck::Exists | TopicCheck::Unanswered(_) => Ok(()),
            TopicCheck::Refused(_, error) => Err(error),
        }
    }

    /// Connects to the cluster by fetching metadata, so the connection and the
    /// idempotent producer id are settled before the first batch (at init, where
    /// Lambda does not bill the handler). Runs on tokio's blocking pool.
    pub async fn warm_up(&self, timeout: Duration) -> Result<(), Error> {
        let producer = self.producer.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(|m| {
                m.topics()
                    .iter()
                    .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                    .map(|t| Arc::from(t.name()))
                    .collect::<Vec<Arc<str>>>()
            })
        })
        .await
        .map_err(|e| Error::Producer(format!("warm-up task failed: {e}")))?;
        if let (Ok(names), Ok(mut topics)) = (&fetched, self.topics.lock()) {
            for name in names {
                topics.insert(name.clone(), TopicCheck::Exists);
            }
        }
        fetched.map(|_| ()).map_err(|e| {
            let e = e.to_string();
            Error::Producer(format!(
                "brokers {} not reachable: {}",
                self.brokers,
                self.redactor.redact(&e)
            ))
        })
    }

    /// Hands a message to librdkafka and returns the future of its acknowledgement.
    /// When the local queue is full, waits for room until `budget` (if any).
    pub(crate) async fn enqueue(
        &self,
        message: &OutMessage,
        budget: Option<Instant>,
    ) -> Result<DeliveryFuture, RecordError> {
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
        for (key, value) in message.headers.iter() {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&message.topic).headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &message.value {
            record = record.payload(value.as_slice());
        }
        loop {
            match self.producer.send_result(record) {
                Ok(future) => return Ok(future),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    if budget.is_some_and(|b| Instant::now() >= b) {
                        return Err(RecordError::retryable(
                            Stage::Sink,
                            "producer queue full until the deadline",
                        ));
                    }
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => return Err(classify(&error)),
            }
        }
    }

    /// Drops everything not yet acknowledged: queued and in-flight messages fail with a
    /// purge error, so their futures resolve now instead of outliving the invocation.
    /// Queued messages are never sent; a message already on the wire may still be
    /// written by the broker, with the same event id as its retry (consumers
    /// de-duplicate by it).
    pub(crate) fn purge(&self) {
        self.producer
            .purge(PurgeConfig::default().queue().inflight().non_blocking());
    }

    /// Sends what is queued now, without waiting `linger.ms`: for the end of a batch,
    /// when nothing more is coming. librdkafka sends at once while a flush is under way,
    /// so this holds one, on a blocking thread, until everything queued is acknowledged
    /// or `until` (at most [`SEND_NOW_MAX`] from now) passes.
    ///
    /// librdkafka's own `rd_kafka_flush` is called: rdkafka's `flush` polls it with a
    /// zero timeout, which ends the flush before the broker thread looks, so the linger
    /// wait stays. With delivery reports as events (how rdkafka runs the producer), the
    /// flush only waits; the producer's polling thread still delivers every report.
    pub(crate) fn send_now(self: &Arc<Self>, until: Option<Instant>) {
        let sink = Arc::clone(self);
        let timeout = until
            .map_or(SEND_NOW_MAX, |t| {
                t.saturating_duration_since(Instant::now())
            })
            .min(SEND_NOW_MAX);
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        tokio::task::spawn_blocking(move || {
            // SAFETY: the handle belongs to `sink`'s producer, which this closure keeps
            // alive until the call returns; rd_kafka_flush may be called from any thread.
            // Whatever the flush ends with, each message's own delivery report decides.
            unsafe {
                rdkafka::bindings::rd_kafka_flush(sink.producer.client().native_ptr(), millis);
            }
        });
    }

    /// Waits until everything enqueued was acknowledged or failed, up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        self.producer
            .flush(timeout)
            .map_err(|e| Error::Producer(format!("flush: {e}")))
    }
}

/// A message the cluster did not take: its error as classified here (retryable unless
/// the message's own bytes were refused), and whether the refusal was of the topic's
/// name, which only the pipeline can blame (on the record for a rendered name).
#[derive(Debug, Clone)]
pub(crate) struct Undelivered {
    pub(crate) error: RecordError,
    /// The broker answered INVALID_TOPIC for the message's topic.
    pub(crate) name_refused: bool,
}

impl From<RecordError> for Undelivered {
    fn from(error: RecordError) -> Self {
        Undelivered {
            error,
            name_refused: false,
        }
    }
}

impl From<&KafkaError> for Undelivered {
    fn from(error: &KafkaError) -> Self {
        Undelivered {
            error: classify(error),
            name_refused: error.rdkafka_error_code() == Some(RDKafkaErrorCode::InvalidTopic),
        }
    }
}

/// Resolves a delivery future (or `&mut` one) into an acknowledgement or a classified error.
pub(crate) async fn delivered<F>(future: F) -> Result<Delivered, Undelivered>
where
    F: std::future::Future<Output = <DeliveryFuture as std::future::Future>::Output>,
{
    match future.await {
        Ok(Ok(delivery)) => Ok(Delivered {
            partition: delivery.partition,
            offset: delivery.offset,
        }),
        Ok(Err((error, _message))) => Err(Undelivered::from(&error)),
        Err(_canceled) => Err(RecordError::retryable(
            Stage::Sink,
            "producer dropped the message before acknowledging it",
        )
        .into()),
    }
}

/// Permanent when the broker or the producer refused the message's own bytes (too
/// large, an invalid record); retryable otherwise, including every fault of the
/// infrastructure: authorization, unknown or invalid topics, a fatal producer (whether an
/// invalid topic is the record's fault is the pipeline's call: [`Undelivered`]).
///
/// A permanent delivery error may still be the fault of the request the message
/// travelled in (a whole request too large, a sibling's invalid record); the pipeline
/// retries such records alone before calling one poison.
pub(crate) fn classify(error: &KafkaError) -> RecordError {
    let message = format!("delivery failed: {error}");
    match error.rdkafka_error_code() {
        Some(code) if is_record_fault(code) => RecordError::permanent(Stage::Sink, message),
        _ => RecordError::retryable(Stage::Sink, message),
    }
}

/// Whether an error code blames the message (or the request it was in) rather than
/// the cluster, the grants or the configuration.
fn is_record_fault(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidDifferentRecord
            | RDKafkaErrorCode::MessageBatchTooLarge
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grants, topics and fatal producer states are the infrastructure's fault:
    /// retryable. Only a message's own bytes make it poison.
    #[test]
    fn infrastructure_faults_are_retryable() {
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::ClusterAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::UnknownTopic,
            RDKafkaErrorCode::InvalidTopic,
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
            RDKafkaErrorCode::UnknownProducerId,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::PurgeInflight,
        ] {
            let error = classify(&KafkaError::MessageProduction(code));
            assert!(error.is_retryable(), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::InvalidDifferentRecord,
        ] {
            assert!(
                !classify(&KafkaError::MessageProduction(code)).is_retryable(),
                "{code:?}"
            );
        }
    }

    /// A refused login is reported once per refusal: taking it forgets it, so a login
    /// refused once (and the secret fetched again, unchanged) does not have the secret
    /// fetched before every later batch; a refusal after that is seen again.
    #[test]
    fn a_refused_login_is_taken_once_per_refusal() {
        use rdkafka::client::ClientContext;
        let sink = Sink::connect_with("127.0.0.1:1", ClientAuth::None, &[]).expect("a sink");
        let refuse = || {
            sink.producer.context().error(
                KafkaError::Global(RDKafkaErrorCode::Authentication),
                "SASL authentication error: Authentication failed",
            )
        };
        assert!(!sink.take_login_refused());
        refuse();
        assert!(sink.login_refused());
        assert!(sink.take_login_refused());
        assert!(!sink.take_login_refused(), "taken, so forgotten");
        sink.producer.context().error(
            KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "connection refused",
        );
        assert!(!sink.take_login_refused(), "not a login refusal");
        refuse();
        assert!(sink.take_login_refused(), "refused again");
    }

    /// A refused topic name is flagged for the pipeline to blame; nothing else is.
    #[test]
    fn only_a_refused_topic_name_is_flagged() {
        let refused = Undelivered::from(&KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidTopic,
        ));
        assert!(refused.name_refused && refused.error.is_retryable());
        for code in [
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::MessageSizeTooLarge,
        ] {
            assert!(!Undelivered::from(&KafkaError::MessageProduction(code)).name_refused);
        }
    }
}
