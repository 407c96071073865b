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
//! Each message's delivery report is written into a [`Book`] under the message's ticket
//! (its delivery opaque, a number), where the pipeline takes it: no channel, boxed
//! sender or allocation per message, and waiting tasks are woken only when a report
//! one of them waits for comes in.
//!
//! Before the first message to a topic, the sink asks the cluster about it once
//! ([`Sink::check_topic`]): a topic that does not exist, or that the relay may not
//! describe, fails its records at once (retryable) instead of after librdkafka's 30 s of
//! metadata waits.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::statistics::Statistics;
use tokio::sync::Notify;

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
    producer: ThreadedProducer<SinkContext>,
    /// Where the delivery reports of this producer's messages are written.
    book: Arc<Book>,
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
        let book = Arc::new(Book::default());
        let context = SinkContext {
            relay: RelayContext::new(&auth),
            book: book.clone(),
        };
        let login_refused = context.relay.auth_refused.clone();
        let redactor = Redactor::new(auth.secrets());
        let config = producer_config_with(brokers, &auth, overrides);
        let message_max_bytes = config
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
        let producer: ThreadedProducer<SinkContext> =
            config.create_with_context(context).map_err(|e| {
                let e = e.to_string();
                Error::Producer(format!(
                    "cannot create producer for {brokers}: {}",
                    redactor.redact(&e)
                ))
            })?;
        Ok(Sink {
            producer,
            book,
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
    pub(crate) fn transactions(&self) -> &ThreadedProducer<SinkContext> {
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

    /// The producer's fatal error when it is one that no new producer cures: the
    /// brokers refuse the transaction timeout (above their `transaction.max.timeout.ms`)
    /// or do not support what the producer needs.
    pub(crate) fn refused_for_good(&self) -> Option<String> {
        match self.producer.client().fatal_error() {
            Some((
                code @ (RDKafkaErrorCode::InvalidTransactionTimeout
                | RDKafkaErrorCode::UnsupportedFeature
                | RDKafkaErrorCode::UnsupportedVersion),
                reason,
            )) => Some(format!("{code:?}: {}", self.redactor.redact(&reason))),
            _ => None,
        }
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
                        sibling: false,
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

    /// Hands a message to librdkafka and returns the ticket of its delivery report.
    /// When the local queue is full, waits for room until `budget` (if any).
    pub(crate) async fn enqueue(
        &self,
        message: &OutMessage,
        budget: Option<Instant>,
    ) -> Result<Ticket, RecordError> {
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
        for (key, value) in message.headers.iter() {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        // Issued first: the report may come before `send` returns. A message that is
        // never sent drops its ticket, which frees the slot.
        let ticket = Book::issue(&self.book);
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&message.topic, ticket.number).headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &message.value {
            record = record.payload(value.as_slice());
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(ticket),
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
    /// purge error, so their reports come now instead of outliving the invocation.
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
    /// The broker refused another record of the request the message travelled in, not
    /// this one (librdkafka's `_INVALID_DIFFERENT_RECORD`, beside the `INVALID_RECORD`
    /// of the record it names).
    pub(crate) sibling: bool,
}

impl From<RecordError> for Undelivered {
    fn from(error: RecordError) -> Self {
        Undelivered {
            error,
            name_refused: false,
            sibling: false,
        }
    }
}

impl From<&KafkaError> for Undelivered {
    fn from(error: &KafkaError) -> Self {
        let code = error.rdkafka_error_code();
        Undelivered {
            error: classify(error),
            name_refused: code == Some(RDKafkaErrorCode::InvalidTopic),
            sibling: code == Some(RDKafkaErrorCode::InvalidDifferentRecord),
        }
    }
}

/// The producer's context: the relay's (logs, tokens, refused logins), and the book
/// each delivery report is written into.
pub(crate) struct SinkContext {
    relay: RelayContext,
    book: Arc<Book>,
}

impl ClientContext for SinkContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = RelayContext::ENABLE_REFRESH_OAUTH_TOKEN;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.relay.log(level, fac, log_message);
    }

    fn stats(&self, statistics: Statistics) {
        self.relay.stats(statistics);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.relay.stats_raw(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.relay.error(error, reason);
    }

    fn generate_oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.relay.generate_oauth_token(oauthbearer_config)
    }
}

impl ProducerContext for SinkContext {
    /// The message's ticket in the book.
    type DeliveryOpaque = usize;

    /// On the producer's polling thread (or inside a flush).
    fn delivery(&self, result: &DeliveryResult<'_>, ticket: usize) {
        let outcome = match result {
            Ok(message) => Ok(Delivered {
                partition: message.partition(),
                offset: message.offset(),
            }),
            Err((error, _message)) => Err(Undelivered::from(error)),
        };
        self.book.report(ticket, outcome);
    }
}

impl Drop for SinkContext {
    /// The producer is gone (its queue was purged and flushed as it went): a report
    /// still missing will never come.
    fn drop(&mut self) {
        self.book.close();
    }
}

/// What became of a message.
type Outcome = Result<Delivered, Undelivered>;

/// The delivery reports of one producer's messages, by ticket. Tickets are issued in
/// order and slots freed from the front, so a report is found by subtraction; a report
/// whose ticket was given up (its batch ended or was cancelled) is dropped.
#[derive(Default)]
pub(crate) struct Book {
    slots: Mutex<Slots>,
    /// Woken when an awaited ticket is reported, or the book closes.
    reported: Notify,
}

#[derive(Default)]
struct Slots {
    /// The ticket of `slots[0]`.
    first: usize,
    slots: VecDeque<Slot>,
    /// Tickets a task is waiting for.
    awaited: Vec<usize>,
    /// No report will come any more.
    closed: bool,
}

enum Slot {
    /// Sent, not reported yet.
    Waiting,
    Reported(Outcome),
    /// Taken, or given up.
    Free,
}

impl Slots {
    fn slot(&mut self, ticket: usize) -> Option<&mut Slot> {
        let index = ticket.checked_sub(self.first)?;
        self.slots.get_mut(index)
    }

    /// Frees a ticket's slot; drops the free slots at the front.
    fn free(&mut self, ticket: usize) {
        if let Some(slot) = self.slot(ticket) {
            *slot = Slot::Free;
        }
        while matches!(self.slots.front(), Some(Slot::Free)) {
            self.slots.pop_front();
            self.first += 1;
        }
    }
}

impl Book {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Nothing here panics while holding the lock; if something did, the slots are
        // still consistent (each change is one assignment).
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A ticket for a message about to be sent.
    fn issue(book: &Arc<Book>) -> Ticket {
        let mut slots = book.lock();
        let number = slots.first + slots.slots.len();
        let slot = if slots.closed {
            Slot::Reported(Err(dropped()))
        } else {
            Slot::Waiting
        };
        slots.slots.push_back(slot);
        Ticket {
            book: book.clone(),
            number,
            taken: false,
        }
    }

    /// Writes a report; wakes the task waiting for it, if one is.
    fn report(&self, ticket: usize, outcome: Outcome) {
        let wake = {
            let mut slots = self.lock();
            match slots.slot(ticket) {
                Some(slot @ Slot::Waiting) => *slot = Slot::Reported(outcome),
                _ => return,
            }
            match slots.awaited.iter().position(|&t| t == ticket) {
                Some(at) => {
                    slots.awaited.swap_remove(at);
                    true
                }
                None => false,
            }
        };
        if wake {
            self.reported.notify_waiters();
        }
    }

    /// The producer is gone: every report still missing fails, retryable.
    fn close(&self) {
        {
            let mut slots = self.lock();
            slots.closed = true;
            for slot in &mut slots.slots {
                if matches!(slot, Slot::Waiting) {
                    *slot = Slot::Reported(Err(dropped()));
                }
            }
            slots.awaited.clear();
        }
        self.reported.notify_waiters();
    }
}

fn dropped() -> Undelivered {
    RecordError::retryable(
        Stage::Sink,
        "producer dropped the message before acknowledging it",
    )
    .into()
}

/// A message handed to the producer: where its delivery report will be. Dropping the
/// ticket gives the report up.
pub(crate) struct Ticket {
    book: Arc<Book>,
    number: usize,
    /// The report was taken (its slot is free already).
    taken: bool,
}

impl Ticket {
    /// Waits for the message's report: an acknowledgement or a classified error. Safe
    /// to cancel (the report stays for the next call) and to call again after it
    /// answered (the same answer is not kept: it then fails as given up).
    pub(crate) async fn delivered(&mut self) -> Outcome {
        let Ticket {
            book,
            number,
            taken,
        } = self;
        loop {
            // Most reports are in by the time their message's turn comes: one look.
            if let Some(outcome) = take(taken, *number, &mut book.lock()) {
                return outcome;
            }
            let reported = book.reported.notified();
            tokio::pin!(reported);
            // Registered before looking again, so a report written after that look
            // wakes this wait.
            reported.as_mut().enable();
            {
                let mut slots = book.lock();
                if let Some(outcome) = take(taken, *number, &mut slots) {
                    return outcome;
                }
                if !slots.awaited.contains(number) {
                    slots.awaited.push(*number);
                }
            }
            reported.await;
        }
    }
}

/// Ticket `number`'s report, if it is in (its slot freed, `taken` set); `None` while
/// it is awaited.
fn take(taken: &mut bool, number: usize, slots: &mut Slots) -> Option<Outcome> {
    if *taken {
        // Taken before (the pipeline takes each report once).
        return Some(Err(RecordError::retryable(
            Stage::Sink,
            "this message's delivery report was already taken",
        )
        .into()));
    }
    let outcome = match slots.slot(number) {
        Some(Slot::Waiting) => return None,
        Some(slot) => match std::mem::replace(slot, Slot::Free) {
            Slot::Reported(outcome) => outcome,
            _ => Err(dropped()),
        },
        None => Err(dropped()),
    };
    *taken = true;
    slots.free(number);
    Some(outcome)
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.taken {
            let mut slots = self.book.lock();
            slots.awaited.retain(|&t| t != self.number);
            slots.free(self.number);
        }
    }
}

/// A message to `topic` with key `k` and value `v`, no headers (tests).
#[cfg(test)]
pub(crate) fn test_message(topic: &str) -> OutMessage {
    OutMessage {
        topic: Arc::from(topic),
        key: Some(b"k".to_vec()),
        value: Some(b"v".to_vec()),
        headers: Default::default(),
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

    fn acked(offset: i64) -> Outcome {
        Ok(Delivered {
            partition: 0,
            offset,
        })
    }

    fn offset(outcome: Outcome) -> Option<i64> {
        outcome.ok().map(|d| d.offset)
    }

    fn pending(book: &Book) -> (usize, usize) {
        let slots = book.lock();
        (slots.first, slots.slots.len())
    }

    /// Each report reaches its own ticket, whether it came before the wait or during
    /// it, and in any order; taken reports free their slots, so the book holds only what
    /// is still under way.
    #[tokio::test]
    async fn reports_reach_their_tickets_in_any_order() {
        let book = Arc::new(Book::default());
        let mut tickets: Vec<Ticket> = (0..3).map(|_| Book::issue(&book)).collect();
        book.report(tickets[2].number, acked(12));
        book.report(tickets[0].number, acked(10));
        assert_eq!(offset(tickets[0].delivered().await), Some(10));
        let waiter = {
            let book = book.clone();
            let number = tickets[1].number;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                book.report(number, acked(11));
            })
        };
        let second = tokio::time::timeout(Duration::from_secs(5), tickets[1].delivered()).await;
        assert_eq!(offset(second.expect("woken by its report")), Some(11));
        waiter.await.expect("reporter");
        assert_eq!(offset(tickets[2].delivered().await), Some(12));
        assert_eq!(pending(&book), (3, 0), "every slot freed");
    }

    /// A wait given up (the budget passed) keeps the report for the next wait; a
    /// ticket dropped unanswered frees its slot, and its late report is ignored.
    #[tokio::test]
    async fn a_cancelled_wait_keeps_the_report_and_a_dropped_ticket_frees_its_slot() {
        let book = Arc::new(Book::default());
        let mut first = Book::issue(&book);
        let second = Book::issue(&book);
        let waited = tokio::time::timeout(Duration::from_millis(20), first.delivered()).await;
        assert!(waited.is_err(), "nothing reported yet");
        book.report(first.number, acked(1));
        assert_eq!(offset(first.delivered().await), Some(1));
        let mut second = second;
        let waited = tokio::time::timeout(Duration::from_millis(20), second.delivered()).await;
        assert!(waited.is_err(), "nothing reported yet");
        assert_eq!(
            book.lock().awaited,
            [second.number],
            "its wait was registered"
        );
        let number = second.number;
        drop(second);
        book.report(number, acked(2));
        assert_eq!(pending(&book), (2, 0), "the dropped ticket's slot is gone");
        assert!(
            book.lock().awaited.is_empty(),
            "a dropped ticket is awaited no more"
        );
    }

    /// When the producer goes, every ticket still waiting fails, retryable: nothing
    /// waits forever for a report that cannot come.
    #[tokio::test]
    async fn a_closed_book_fails_the_waiting_tickets() {
        let book = Arc::new(Book::default());
        let mut ticket = Book::issue(&book);
        let closer = {
            let book = book.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                book.close();
            })
        };
        let outcome = tokio::time::timeout(Duration::from_secs(5), ticket.delivered())
            .await
            .expect("woken by the close");
        let error = outcome.expect_err("not delivered").error;
        assert!(error.is_retryable() && error.message.contains("dropped"));
        closer.await.expect("closer");
        let mut late = Book::issue(&book);
        assert!(late.delivered().await.is_err(), "issued after the close");
    }

    /// A producer dropped with a message it could not deliver (no broker answers) fails
    /// the message's ticket, retryable: its batch does not wait for a report that
    /// cannot come.
    #[tokio::test]
    async fn a_dropped_producer_fails_its_undelivered_messages() {
        let sink = Sink::connect_with("127.0.0.1:1", ClientAuth::None, &[]).expect("a sink");
        let message = test_message("out");
        let mut ticket = sink.enqueue(&message, None).await.expect("enqueued");
        tokio::task::spawn_blocking(move || drop(sink))
            .await
            .expect("dropped");
        let outcome = tokio::time::timeout(Duration::from_secs(10), ticket.delivered())
            .await
            .expect("answered once the producer is gone");
        let error = outcome.expect_err("never delivered").error;
        assert!(error.is_retryable(), "{error:?}");
    }

    /// Through a real producer: every message's report reaches its ticket (the
    /// delivery opaque), with the partition and offset the cluster gave it.
    #[tokio::test]
    async fn the_producer_reports_each_message_to_its_ticket() {
        let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("out", 1, 1).expect("topic");
        let sink = Sink::connect_with(&cluster.bootstrap_servers(), ClientAuth::None, &[])
            .expect("a sink");
        let message = |n: usize| OutMessage {
            topic: Arc::from("out"),
            key: Some(format!("k{n}").into_bytes()),
            value: Some(format!("v{n}").into_bytes()),
            headers: Default::default(),
        };
        let mut tickets = Vec::new();
        for n in 0..50 {
            tickets.push(sink.enqueue(&message(n), None).await.expect("enqueued"));
        }
        // Waited for in reverse: each answer is its own message's.
        for (n, ticket) in tickets.iter_mut().enumerate().rev() {
            let delivered = tokio::time::timeout(Duration::from_secs(10), ticket.delivered())
                .await
                .expect("reported")
                .expect("acknowledged");
            assert_eq!(delivered.offset, i64::try_from(n).expect("small"));
        }
        assert_eq!(pending(&sink.book).1, 0);
    }

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
