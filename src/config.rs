//! Environment -> validated [`Settings`], read once at init.
//!
//! Every variable is parsed here and nowhere else; an invalid value is a
//! [`ConfigError`] naming the variable, so a misconfigured function fails at init
//! instead of on its first record. The routes file itself is parsed by
//! [`crate::transform::Routes`]; this module only finds it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::{AuthMode, AuthSettings, Secret};
use crate::error::ConfigError;

/// Prefix of the librdkafka passthrough variables: `RELAY_PRODUCER_LINGER_MS=5` -> `linger.ms=5`.
pub const PRODUCER_PREFIX: &str = "RELAY_PRODUCER_";

/// The smallest `RELAY_DEADLINE_MARGIN_MS` accepted: the time the relay keeps, after it
/// stops waiting for the broker, to purge the producer, settle the purged deliveries,
/// write metrics and post the answer to the runtime API.
pub const MIN_DEADLINE_MARGIN: Duration = Duration::from_millis(200);

/// Everything the relay reads from its environment. `Debug` never shows secrets: the
/// auth settings hold them in [`Secret`], and the values of `RELAY_PRODUCER_*`
/// properties that are passwords or secrets are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// Downstream bootstrap servers. `None`: use the event's `bootstrapServers`.
    pub brokers: Option<String>,
    /// Routes file named by `RELAY_ROUTES`; `None`: look beside the binary, then in the
    /// working directory.
    pub routes_path: Option<PathBuf>,
    /// Upper bound on transform tasks running at once (`RELAY_CONCURRENCY`).
    pub concurrency: usize,
    /// Records per transform task (`RELAY_CHUNK_SIZE`).
    pub chunk_size: usize,
    /// Answer failures with `batchItemFailures` instead of an error (`RELAY_PARTIAL_BATCH`).
    /// Off by default: Lambda ignores a partial response unless the mapping has
    /// `ReportBatchItemFailures`, which would silently drop the failed records.
    pub partial_batch: bool,
    /// Name of the DMS before-image field (`RELAY_BEFORE_IMAGE_FIELD`, DMS's `FieldName`).
    pub before_image_field: String,
    /// How long before the invocation deadline the relay stops waiting for the broker
    /// and answers (`RELAY_DEADLINE_MARGIN_MS`).
    pub deadline_margin: Duration,
    /// librdkafka properties from `RELAY_PRODUCER_*`, applied last (they win).
    pub producer_overrides: Vec<(String, String)>,
    /// Dead-letter topic (`RELAY_DLQ_TOPIC`), overriding the routes file's `dlq_topic`.
    pub dlq_topic: Option<String>,
    /// Write one EMF metrics record per invocation to stdout (`RELAY_METRICS`; default
    /// on inside Lambda, where stdout goes to CloudWatch Logs).
    pub metrics: bool,
    /// CloudWatch namespace of the metrics (`RELAY_METRICS_NAMESPACE`).
    pub metrics_namespace: String,
    /// The metrics' `FunctionName` dimension: `AWS_LAMBDA_FUNCTION_NAME`, else `cdc-relay`.
    pub function_name: String,
    /// Add per-table metrics records (`RELAY_METRICS_PER_TABLE`).
    pub metrics_per_table: bool,
    /// Most distinct table names per-table metrics use before folding the rest into
    /// `_other` (`RELAY_METRICS_MAX_TABLES`).
    pub metrics_max_tables: usize,
    /// Include the record's value in per-record problem logs (`RELAY_LOG_VALUES`). Off:
    /// row values are customer data.
    pub log_values: bool,
    /// Authentication to the downstream cluster (`RELAY_AUTH` and friends).
    pub auth: AuthSettings,
    /// The key of `hash` pseudonyms (`RELAY_HASH_KEY`).
    pub hash_key: Option<Secret>,
    /// The Secrets Manager secret holding the key of `hash` pseudonyms
    /// (`RELAY_HASH_KEY_SECRET_ARN`), read at init when a route hashes.
    pub hash_key_secret_arn: Option<String>,
    /// Without a hash key, use the published local one ([`crate::auth::LOCAL_HASH_KEY`]).
    /// Never read from the environment: set by the local commands that produce nowhere
    /// real (`check-routes`, `invoke` on the embedded cluster).
    pub local_hash_key: bool,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let overrides: Vec<(&str, &str)> = self
            .producer_overrides
            .iter()
            .map(|(name, value)| {
                let sensitive = ["password", "secret", "credential", "token"]
                    .iter()
                    .any(|word| name.contains(word));
                (
                    name.as_str(),
                    if sensitive {
                        "<redacted>"
                    } else {
                        value.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("Settings")
            .field("brokers", &self.brokers)
            .field("routes_path", &self.routes_path)
            .field("concurrency", &self.concurrency)
            .field("chunk_size", &self.chunk_size)
            .field("partial_batch", &self.partial_batch)
            .field("before_image_field", &self.before_image_field)
            .field("deadline_margin", &self.deadline_margin)
            .field("producer_overrides", &overrides)
            .field("dlq_topic", &self.dlq_topic)
            .field("metrics", &self.metrics)
            .field("metrics_namespace", &self.metrics_namespace)
            .field("function_name", &self.function_name)
            .field("metrics_per_table", &self.metrics_per_table)
            .field("metrics_max_tables", &self.metrics_max_tables)
            .field("log_values", &self.log_values)
            .field("auth", &self.auth)
            .field("hash_key", &self.hash_key)
            .field("hash_key_secret_arn", &self.hash_key_secret_arn)
            .field("local_hash_key", &self.local_hash_key)
            .finish()
    }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_vars(std::env::vars())
    }

    /// Reads settings from `(name, value)` pairs; the seam tests use.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let default_concurrency = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mut settings = Settings {
            brokers: None,
            routes_path: None,
            concurrency: default_concurrency,
            chunk_size: 256,
            partial_batch: false,
            before_image_field: "before-image".to_owned(),
            deadline_margin: Duration::from_millis(1000),
            producer_overrides: Vec::new(),
            dlq_topic: None,
            metrics: false,
            metrics_namespace: crate::metrics::DEFAULT_NAMESPACE.to_owned(),
            function_name: "cdc-relay".to_owned(),
            metrics_per_table: false,
            metrics_max_tables: 50,
            log_values: false,
            auth: AuthSettings::default(),
            hash_key: None,
            hash_key_secret_arn: None,
            local_hash_key: false,
        };
        let mut metrics: Option<bool> = None;
        let mut in_lambda = false;
        for (name, value) in vars {
            let (name, value): (String, String) = (name.into(), value.into());
            match name.as_str() {
                "RELAY_BROKERS" => settings.brokers = non_empty(&name, &value)?,
                "RELAY_ROUTES" => {
                    settings.routes_path = non_empty(&name, &value)?.map(PathBuf::from)
                }
                "RELAY_CONCURRENCY" => settings.concurrency = positive(&name, &value)?,
                "RELAY_CHUNK_SIZE" => settings.chunk_size = positive(&name, &value)?,
                "RELAY_PARTIAL_BATCH" => settings.partial_batch = boolean(&name, &value)?,
                "RELAY_DLQ_TOPIC" => settings.dlq_topic = non_empty(&name, &value)?,
                "RELAY_METRICS" => metrics = Some(boolean(&name, &value)?),
                "RELAY_METRICS_NAMESPACE" => {
                    settings.metrics_namespace = non_empty(&name, &value)?
                        .ok_or_else(|| invalid(&name, &value, "must not be empty"))?
                }
                "RELAY_METRICS_PER_TABLE" => settings.metrics_per_table = boolean(&name, &value)?,
                "RELAY_METRICS_MAX_TABLES" => {
                    settings.metrics_max_tables = positive(&name, &value)?
                }
                "RELAY_LOG_VALUES" => settings.log_values = boolean(&name, &value)?,
                "RELAY_AUTH" => {
                    settings.auth.mode = AuthMode::parse(&value)
                        .ok_or_else(|| invalid(&name, &value, "expected none, tls, scram or iam"))?
                }
                "RELAY_TLS_CA_FILE" => {
                    settings.auth.tls.ca_file = non_empty(&name, &value)?.map(PathBuf::from)
                }
                "RELAY_TLS_CERT_FILE" => {
                    settings.auth.tls.cert_file = non_empty(&name, &value)?.map(PathBuf::from)
                }
                "RELAY_TLS_KEY_FILE" => {
                    settings.auth.tls.key_file = non_empty(&name, &value)?.map(PathBuf::from)
                }
                "RELAY_TLS_KEY_PASSWORD" => {
                    settings.auth.tls.key_password = (!value.is_empty()).then(|| Secret::new(value))
                }
                "RELAY_SCRAM_SECRET_ARN" => {
                    settings.auth.scram_secret_arn = non_empty(&name, &value)?
                }
                "RELAY_SCRAM_USERNAME" => settings.auth.scram_username = non_empty(&name, &value)?,
                "RELAY_SCRAM_PASSWORD" => {
                    settings.auth.scram_password = (!value.is_empty()).then(|| Secret::new(value))
                }
                "RELAY_HASH_KEY" => {
                    if value.starts_with("arn:") {
                        // The message shows no value: it may be a key after all.
                        return Err(invalid(
                            &name,
                            "<redacted>",
                            "looks like an ARN: name a Secrets Manager secret with RELAY_HASH_KEY_SECRET_ARN",
                        ));
                    }
                    settings.hash_key = (!value.is_empty()).then(|| Secret::new(value))
                }
                "RELAY_HASH_KEY_SECRET_ARN" => {
                    settings.hash_key_secret_arn = non_empty(&name, &value)?;
                    if let Some(arn) = &settings.hash_key_secret_arn {
                        if crate::auth::secret_region(arn).is_none() {
                            return Err(invalid(
                                &name,
                                &value,
                                "expected a Secrets Manager secret ARN (arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME)",
                            ));
                        }
                    }
                }
                "AWS_REGION" => settings.auth.region = non_empty(&name, &value)?,
                "AWS_LAMBDA_FUNCTION_NAME" => {
                    in_lambda = true;
                    settings.function_name = value.clone();
                }
                "RELAY_BEFORE_IMAGE_FIELD" => {
                    settings.before_image_field = non_empty(&name, &value)?
                        .ok_or_else(|| invalid(&name, &value, "must not be empty"))?
                }
                "RELAY_DEADLINE_MARGIN_MS" => {
                    let ms: u64 = value.trim().parse().map_err(|_| {
                        invalid(&name, &value, "expected milliseconds (a whole number)")
                    })?;
                    if Duration::from_millis(ms) < MIN_DEADLINE_MARGIN {
                        return Err(invalid(
                            &name,
                            &value,
                            &format!(
                                "must be at least {} ms: the relay needs that long to purge, \
                                 settle and answer before Lambda's timeout",
                                MIN_DEADLINE_MARGIN.as_millis()
                            ),
                        ));
                    }
                    settings.deadline_margin = Duration::from_millis(ms);
                }
                _ => {
                    if let Some(suffix) = name.strip_prefix(PRODUCER_PREFIX) {
                        if suffix.is_empty() {
                            return Err(invalid(&name, &value, "names no librdkafka property"));
                        }
                        let property = suffix.to_ascii_lowercase().replace('_', ".");
                        if let Some(problem) = weakens_guarantees(&property, &value) {
                            return Err(invalid(&name, &value, &problem));
                        }
                        settings.producer_overrides.push((property, value));
                    }
                }
            }
        }
        settings.metrics = metrics.unwrap_or(in_lambda);
        settings.auth.in_lambda = in_lambda;
        // Environment order is arbitrary; sort so the producer config is deterministic.
        settings.producer_overrides.sort();
        Ok(settings)
    }

    /// The routes file to load: `RELAY_ROUTES`, else `routes.toml` beside the binary,
    /// else `routes.toml` in the working directory. `None` when none exists.
    pub fn locate_routes(&self) -> Option<PathBuf> {
        if let Some(path) = &self.routes_path {
            return Some(path.clone());
        }
        let beside_binary = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("routes.toml")));
        let candidates = beside_binary
            .into_iter()
            .chain([PathBuf::from("routes.toml")]);
        candidates.into_iter().find(|p| Path::new(p).is_file())
    }
}

/// Prefix of the variables passed through to the source consumer (`serve`).
pub const CONSUMER_PREFIX: &str = "RELAY_CONSUMER_";

/// What `cdc-relay serve` reads on top of [`Settings`]: the source consumer group, how
/// it batches, and how it commits.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The DMS topics to consume (`RELAY_SOURCE_TOPICS`, comma-separated; required).
    pub source_topics: Vec<String>,
    /// The source cluster (`RELAY_SOURCE_BROKERS`; default: `RELAY_BROKERS`).
    pub source_brokers: Option<String>,
    /// The source cluster's identity in event ids (`RELAY_SOURCE_CLUSTER_ARN`): the MSK
    /// cluster ARN gives the same ids as the Lambda function reading the same records.
    /// Default: the source brokers, sorted, as for self-managed Kafka.
    pub source_cluster_arn: Option<String>,
    /// Consumer group (`RELAY_GROUP_ID`, default `cdc-relay`).
    pub group_id: String,
    /// Most records per batch (`RELAY_BATCH_SIZE`, default 500).
    pub batch_size: usize,
    /// Longest wait for a batch to fill after its first record (`RELAY_BATCH_WINDOW_MS`,
    /// default 20).
    pub batch_window: Duration,
    /// Most key, value and header bytes per batch (`RELAY_BATCH_MAX_BYTES`, default 6 MiB).
    pub batch_max_bytes: usize,
    /// How long a batch may wait for the broker before its undelivered records are
    /// retried (`RELAY_BATCH_TIMEOUT_MS`, default 30,000).
    pub batch_timeout: Duration,
    /// First wait before a failed partition is read again (`RELAY_RETRY_BACKOFF_MS`,
    /// default 500); doubled per failure in a row, up to `RELAY_RETRY_BACKOFF_MAX_MS`
    /// (default 30,000).
    pub retry_backoff: Duration,
    /// The longest wait between retries.
    pub retry_backoff_max: Duration,
    /// Transactions: a batch's messages and its source offsets commit together
    /// (`RELAY_EXACTLY_ONCE`, default false).
    pub exactly_once: bool,
    /// The producer's `transactional.id` (`RELAY_TRANSACTIONAL_ID`). Default: the group
    /// id and a random suffix. A stable id per instance lets a restarted instance abort
    /// its predecessor's open transaction at once instead of after its timeout.
    pub transactional_id: Option<String>,
    /// Time SIGTERM gives the in-flight batch before it is abandoned
    /// (`RELAY_SHUTDOWN_TIMEOUT_MS`, default 20,000: containers get 30 s, and leaving the group and flushing take a few more).
    pub shutdown_timeout: Duration,
    /// Where `/healthz` and `/metrics` listen (`RELAY_HTTP_ADDR`, default
    /// `0.0.0.0:8080`; `off` for nowhere).
    pub http_addr: Option<std::net::SocketAddr>,
    /// `RELAY_CONSUMER_*` librdkafka properties for the source consumer.
    pub consumer_overrides: Vec<(String, String)>,
}

impl ServeSettings {
    /// Reads the process environment.
    pub fn from_env() -> Result<ServeSettings, ConfigError> {
        ServeSettings::from_vars(std::env::vars())
    }

    /// Reads settings from `(name, value)` pairs.
    pub fn from_vars<I, K, V>(vars: I) -> Result<ServeSettings, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut settings = ServeSettings {
            source_topics: Vec::new(),
            source_brokers: None,
            source_cluster_arn: None,
            group_id: "cdc-relay".to_owned(),
            batch_size: 500,
            batch_window: Duration::from_millis(20),
            batch_max_bytes: 6 * 1024 * 1024,
            batch_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(500),
            retry_backoff_max: Duration::from_secs(30),
            exactly_once: false,
            transactional_id: None,
            shutdown_timeout: Duration::from_secs(20),
            http_addr: Some(std::net::SocketAddr::from(([0, 0, 0, 0], 8080))),
            consumer_overrides: Vec::new(),
        };
        let mut brokers = None;
        for (name, value) in vars {
            let (name, value): (String, String) = (name.into(), value.into());
            match name.as_str() {
                "RELAY_SOURCE_TOPICS" => {
                    settings.source_topics = value
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                "RELAY_SOURCE_BROKERS" => settings.source_brokers = non_empty(&name, &value)?,
                "RELAY_BROKERS" => brokers = non_empty(&name, &value)?,
                "RELAY_SOURCE_CLUSTER_ARN" => {
                    settings.source_cluster_arn = non_empty(&name, &value)?
                }
                "RELAY_GROUP_ID" => {
                    settings.group_id = non_empty(&name, &value)?
                        .ok_or_else(|| invalid(&name, &value, "must not be empty"))?
                }
                "RELAY_BATCH_SIZE" => settings.batch_size = positive(&name, &value)?,
                "RELAY_BATCH_WINDOW_MS" => settings.batch_window = millis(&name, &value)?,
                "RELAY_BATCH_MAX_BYTES" => settings.batch_max_bytes = positive(&name, &value)?,
                "RELAY_BATCH_TIMEOUT_MS" => {
                    settings.batch_timeout = millis(&name, &value)?;
                    if settings.batch_timeout.is_zero() {
                        return Err(invalid(&name, &value, "must be greater than 0"));
                    }
                }
                "RELAY_RETRY_BACKOFF_MS" => settings.retry_backoff = millis(&name, &value)?,
                "RELAY_RETRY_BACKOFF_MAX_MS" => settings.retry_backoff_max = millis(&name, &value)?,
                "RELAY_EXACTLY_ONCE" => settings.exactly_once = boolean(&name, &value)?,
                "RELAY_TRANSACTIONAL_ID" => settings.transactional_id = non_empty(&name, &value)?,
                "RELAY_SHUTDOWN_TIMEOUT_MS" => settings.shutdown_timeout = millis(&name, &value)?,
                "RELAY_HTTP_ADDR" => {
                    let trimmed = value.trim();
                    settings.http_addr = if trimmed.is_empty() || trimmed == "off" {
                        None
                    } else {
                        Some(trimmed.parse().map_err(|_| {
                            invalid(&name, &value, "expected HOST:PORT (an IP address) or off")
                        })?)
                    }
                }
                _ => {
                    if let Some(suffix) = name.strip_prefix(CONSUMER_PREFIX) {
                        if suffix.is_empty() {
                            return Err(invalid(&name, &value, "names no librdkafka property"));
                        }
                        let property = suffix.to_ascii_lowercase().replace('_', ".");
                        if matches!(
                            property.as_str(),
                            "enable.auto.commit" | "enable.auto.offset.store" | "group.id"
                        ) {
                            return Err(invalid(
                                &name,
                                &value,
                                "the relay commits offsets itself, only for records that are done \
                                 (set the group with RELAY_GROUP_ID)",
                            ));
                        }
                        settings.consumer_overrides.push((property, value));
                    }
                }
            }
        }
        if settings.source_topics.is_empty() {
            return Err(invalid(
                "RELAY_SOURCE_TOPICS",
                "",
                "serve needs the DMS topics to consume (comma-separated)",
            ));
        }
        settings.source_brokers = settings.source_brokers.or(brokers);
        if settings.source_brokers.is_none() {
            return Err(invalid(
                "RELAY_SOURCE_BROKERS",
                "",
                "serve needs the source cluster (RELAY_SOURCE_BROKERS, or RELAY_BROKERS for both)",
            ));
        }
        if settings.exactly_once && settings.batch_timeout > Duration::from_secs(30) {
            return Err(invalid(
                "RELAY_BATCH_TIMEOUT_MS",
                &settings.batch_timeout.as_millis().to_string(),
                "with RELAY_EXACTLY_ONCE a batch, its offsets and its commit must end well inside \
                 the transaction timeout (librdkafka's 60 s): at most 30000",
            ));
        }
        settings.consumer_overrides.sort();
        Ok(settings)
    }
}

/// Why a librdkafka override would weaken delivery or per-key order, if it would.
///
/// The relay's promises rest on four producer settings: idempotence (librdkafka's own
/// retries neither duplicate nor reorder), `acks=all` (an acknowledged message survives
/// a broker loss), at most 5 requests in flight (the most idempotence keeps in order),
/// and the Java client's partitioner (every consumer agrees where a key lives).
pub fn weakens_guarantees(property: &str, value: &str) -> Option<String> {
    let value = value.trim().to_ascii_lowercase();
    match property {
        "enable.idempotence" if value != "true" => Some(
            "the relay requires the idempotent producer (retries must neither duplicate nor reorder)"
                .to_owned(),
        ),
        "acks" | "request.required.acks" if value != "all" && value != "-1" => Some(
            "the relay requires acks=all (a message counts as delivered only when every in-sync replica has it)"
                .to_owned(),
        ),
        "max.in.flight.requests.per.connection" | "max.in.flight" => match value.parse::<u32>() {
            Ok(n) if (1..=5).contains(&n) => None,
            _ => Some(
                "must be 1 to 5: the idempotent producer keeps order only up to 5 requests in flight"
                    .to_owned(),
            ),
        },
        "partitioner" if value != "murmur2_random" => Some(
            "the relay uses murmur2_random (the Java client's partitioner), so that consumers in any client agree which partition holds a key"
                .to_owned(),
        ),
        "partitioner.cb" | "enable.gapless.guarantee" | "transactional.id" => Some(
            "cannot be set: the relay manages this producer property itself".to_owned(),
        ),
        _ => None,
    }
}

fn invalid(name: &str, value: &str, problem: &str) -> ConfigError {
    ConfigError::Env {
        name: name.to_owned(),
        value: value.to_owned(),
        problem: problem.to_owned(),
    }
}

fn non_empty(_name: &str, value: &str) -> Result<Option<String>, ConfigError> {
    let trimmed = value.trim();
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

fn positive(name: &str, value: &str) -> Result<usize, ConfigError> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(
            name,
            value,
            "expected a whole number greater than 0",
        )),
    }
}

fn millis(name: &str, value: &str) -> Result<Duration, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| invalid(name, value, "expected milliseconds (a whole number)"))
}

fn boolean(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        _ => Err(invalid(name, value, "expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unset variables give the documented defaults.
    #[test]
    fn defaults() {
        let s = Settings::from_vars(Vec::<(String, String)>::new()).expect("empty env is valid");
        assert_eq!(s.brokers, None);
        assert!(!s.partial_batch);
        assert_eq!(s.chunk_size, 256);
        assert!(s.concurrency >= 1);
        assert_eq!(s.before_image_field, "before-image");
        assert_eq!(s.deadline_margin, Duration::from_millis(1000));
    }

    /// `RELAY_PRODUCER_*` maps to dotted lower-case librdkafka names.
    #[test]
    fn producer_passthrough() {
        let s = Settings::from_vars([
            ("RELAY_PRODUCER_LINGER_MS", "5"),
            ("RELAY_PRODUCER_COMPRESSION_TYPE", "zstd"),
            ("UNRELATED", "x"),
        ])
        .expect("valid");
        assert_eq!(
            s.producer_overrides,
            vec![
                ("compression.type".to_owned(), "zstd".to_owned()),
                ("linger.ms".to_owned(), "5".to_owned())
            ]
        );
    }

    /// Secrets set through the environment never show in `Debug` output.
    #[test]
    fn debug_output_has_no_secrets() {
        let s = Settings::from_vars([
            ("RELAY_AUTH", "scram"),
            ("RELAY_SCRAM_USERNAME", "relay"),
            ("RELAY_SCRAM_PASSWORD", "pw-from-env-8d1f"),
            ("RELAY_TLS_KEY_PASSWORD", "key-pw-77ab"),
            ("RELAY_PRODUCER_SASL_PASSWORD", "override-pw-3c9e"),
            ("RELAY_PRODUCER_LINGER_MS", "7"),
        ])
        .expect("valid");
        assert_eq!(s.auth.mode, AuthMode::Scram);
        assert_eq!(
            s.auth.scram_password.as_ref().map(Secret::expose),
            Some("pw-from-env-8d1f")
        );
        let text = format!("{s:?} {:#?}", s);
        for secret in ["pw-from-env-8d1f", "key-pw-77ab", "override-pw-3c9e"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            text.contains("relay") && text.contains("linger.ms"),
            "{text}"
        );
    }

    /// Overrides that keep the guarantees are accepted as they are.
    #[test]
    fn overrides_that_keep_the_guarantees_are_accepted() {
        let s = Settings::from_vars([
            ("RELAY_PRODUCER_ENABLE_IDEMPOTENCE", "true"),
            ("RELAY_PRODUCER_ACKS", "all"),
            ("RELAY_PRODUCER_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION", "5"),
            ("RELAY_PRODUCER_PARTITIONER", "murmur2_random"),
            ("RELAY_DEADLINE_MARGIN_MS", "200"),
        ])
        .expect("valid");
        assert_eq!(s.producer_overrides.len(), 4);
        assert_eq!(s.deadline_margin, MIN_DEADLINE_MARGIN);
    }

    /// Invalid values name the variable and the problem.
    #[test]
    fn invalid_values_are_named() {
        for (name, value) in [
            ("RELAY_CONCURRENCY", "0"),
            ("RELAY_CHUNK_SIZE", "many"),
            ("RELAY_PARTIAL_BATCH", "perhaps"),
            ("RELAY_DEADLINE_MARGIN_MS", "-1"),
            ("RELAY_DEADLINE_MARGIN_MS", "50"),
            ("RELAY_PRODUCER_ENABLE_IDEMPOTENCE", "false"),
            ("RELAY_PRODUCER_ACKS", "1"),
            ("RELAY_PRODUCER_REQUEST_REQUIRED_ACKS", "0"),
            ("RELAY_PRODUCER_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION", "6"),
            ("RELAY_PRODUCER_MAX_IN_FLIGHT", "1000000"),
            ("RELAY_PRODUCER_PARTITIONER", "consistent_random"),
            ("RELAY_AUTH", "kerberos"),
            ("RELAY_METRICS_PER_TABLE", "sometimes"),
        ] {
            let err = Settings::from_vars([(name, value)]).expect_err("must be rejected");
            let text = err.to_string();
            assert!(text.contains(name) && text.contains(value), "{text}");
        }
    }
}
