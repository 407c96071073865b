//! The rdkafka producer: enqueue every message, await every acknowledgement.
//!
//! One [`Sink`] per execution environment (never per invocation: creating a producer
//! and its connections costs on the order of 100 ms). It is idempotent with `acks=all`,
//! so librdkafka's internal retries neither duplicate nor reorder messages within a
//! partition, and it uses the Java client's `murmur2_random` partitioner so that
//! downstream consumers written in any client agree on which partition a key lands in.
//!
//! Delivery errors are classified here, once: oversized or invalid messages are
//! permanent (retrying the same bytes cannot help), everything else (broker down,
//! timeouts, leader changes, a purge at the deadline) is retryable.

use std::time::{Duration, Instant};

use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, PurgeConfig};

use crate::auth::{IamTokens, ProducerAuth, Redactor};
use crate::error::{Error, RecordError, Stage};
use crate::transform::OutMessage;

/// Where the broker put an acknowledged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition the message landed in.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// The downstream Kafka producer.
pub struct Sink {
    producer: FutureProducer<RelayContext>,
    brokers: String,
    auth: crate::auth::AuthMode,
    redactor: Redactor,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("brokers", &self.brokers)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// The producer's librdkafka context: logs through `tracing` with secrets redacted,
/// and answers librdkafka's OAUTHBEARER token requests in IAM mode.
///
/// librdkafka asks for a token on the producer's polling thread (or inside `flush`),
/// never on a tokio worker; [`IamTokens::token_blocking`] signs on a helper thread.
#[derive(Debug, Default)]
pub struct RelayContext {
    iam: Option<IamTokens>,
    redactor: Redactor,
}

impl RelayContext {
    /// The context for an authentication mode.
    pub fn new(auth: &ProducerAuth) -> RelayContext {
        RelayContext {
            iam: auth.iam().cloned(),
            redactor: Redactor::new(auth.secrets()),
        }
    }
}

impl ClientContext for RelayContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let message = self.redactor.redact(log_message);
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let error = error.to_string();
        tracing::error!(
            target: "librdkafka",
            error = %self.redactor.redact(&error),
            "{}",
            self.redactor.redact(reason)
        );
    }

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let tokens = self
            .iam
            .as_ref()
            .ok_or("OAUTHBEARER tokens are only made with RELAY_AUTH=iam")?;
        let token = tokens.token_blocking().inspect_err(|e| {
            tracing::error!(target: "librdkafka", error = %e, "MSK IAM token refresh failed");
        })?;
        tracing::debug!(
            expires_at_ms = token.expires_at_ms,
            "MSK IAM token refreshed"
        );
        Ok(OAuthToken {
            token: token.token,
            principal_name: String::new(),
            lifetime_ms: token.expires_at_ms,
        })
    }
}

/// The producer configuration the relay relies on, before authentication and user
/// overrides.
pub fn producer_config(brokers: &str, overrides: &[(String, String)]) -> ClientConfig {
    producer_config_with(brokers, &ProducerAuth::None, overrides)
}

/// The full producer configuration: the relay's defaults, then the authentication
/// mode's properties, then the user's `RELAY_PRODUCER_*` overrides (which win).
pub fn producer_config_with(
    brokers: &str,
    auth: &ProducerAuth,
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
        .set("queue.buffering.max.messages", "1000000");
    auth.apply(&mut config);
    for (name, value) in overrides {
        config.set(name, value);
    }
    config
}

impl Sink {
    /// Creates an unauthenticated (plaintext) producer. Does not contact the brokers;
    /// see [`Sink::warm_up`].
    pub fn connect(brokers: &str, overrides: &[(String, String)]) -> Result<Sink, Error> {
        Sink::connect_with(brokers, ProducerAuth::None, overrides)
    }

    /// Creates the producer for an authentication mode. Does not contact the brokers.
    pub fn connect_with(
        brokers: &str,
        auth: ProducerAuth,
        overrides: &[(String, String)],
    ) -> Result<Sink, Error> {
        let context = RelayContext::new(&auth);
        let redactor = Redactor::new(auth.secrets());
        let producer: FutureProducer<RelayContext> =
            producer_config_with(brokers, &auth, overrides)
                .create_with_context(context)
                .map_err(|e| {
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
        })
    }

    /// The bootstrap servers this sink produces to.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// Connects to the cluster by fetching metadata, so the connection and the
    /// idempotent producer id are settled before the first batch (at init, where
    /// Lambda does not bill the handler). Runs on tokio's blocking pool.
    pub async fn warm_up(&self, timeout: Duration) -> Result<(), Error> {
        let producer = self.producer.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(|_| ())
        })
        .await
        .map_err(|e| Error::Producer(format!("warm-up task failed: {e}")))?;
        fetched.map_err(|e| {
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
    pub async fn enqueue(
        &self,
        message: &OutMessage,
        budget: Option<Instant>,
    ) -> Result<DeliveryFuture, RecordError> {
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
        for (key, value) in &message.headers {
            headers = headers.insert(Header {
                key: key.as_ref(),
                value: Some(value.as_slice()),
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
    /// purge error, so their futures resolve now and a retried batch does not also
    /// deliver these stale copies later.
    pub fn purge(&self) {
        self.producer
            .purge(PurgeConfig::default().queue().inflight().non_blocking());
    }

    /// Waits until everything enqueued was acknowledged or failed, up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        self.producer
            .flush(timeout)
            .map_err(|e| Error::Producer(format!("flush: {e}")))
    }
}

/// Resolves a delivery future (or `&mut` one) into an acknowledgement or a classified error.
pub async fn delivered<F>(future: F) -> Result<Delivered, RecordError>
where
    F: std::future::Future<Output = <DeliveryFuture as std::future::Future>::Output>,
{
    match future.await {
        Ok(Ok(delivery)) => Ok(Delivered {
            partition: delivery.partition,
            offset: delivery.offset,
        }),
        Ok(Err((error, _message))) => Err(classify(&error)),
        Err(_canceled) => Err(RecordError::retryable(
            Stage::Sink,
            "producer dropped the message before acknowledging it",
        )),
    }
}

/// Permanent when the same bytes can never be accepted; retryable otherwise.
pub fn classify(error: &KafkaError) -> RecordError {
    let message = format!("delivery failed: {error}");
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed,
        ) => RecordError::permanent(Stage::Sink, message),
        _ => RecordError::retryable(Stage::Sink, message),
    }
}
