//! Environment -> validated [`Settings`], read once at init.
//!
//! Every variable is parsed here and nowhere else; an invalid value is a
//! [`ConfigError`] naming the variable, so a misconfigured function fails at init
//! instead of on its first record. The routes file itself is parsed by
//! [`crate::transform::Routes`]; this module only finds it.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod auth;
mod serve;

use crate::error::ConfigError;
use auth::{AuthMode, AuthSettings, Secret};
pub use serve::{ServeSettings, CONSUMER_PREFIX};

/// The CloudWatch namespace of the metrics when `RELAY_METRICS_NAMESPACE` is unset.
pub(crate) const DEFAULT_NAMESPACE: &str = "cdc-relay";

/// Prefix of the librdkafka passthrough variables: `RELAY_PRODUCER_LINGER_MS=5` -> `linger.ms=5`.
pub(crate) const PRODUCER_PREFIX: &str = "RELAY_PRODUCER_";

/// Every `RELAY_*` variable a mode reads ([`Settings`] and [`ServeSettings`]), besides the
/// `RELAY_PRODUCER_*` and `RELAY_CONSUMER_*` properties: any other is named at start, so
/// a misspelt one (`RELAY_PARTIAL_BATCHES`) is not silently without effect.
const KNOWN_VARIABLES: &[&str] = &[
    "RELAY_AUTH",
    "RELAY_BATCH_MAX_BYTES",
    "RELAY_BATCH_SIZE",
    "RELAY_BATCH_TIMEOUT_MS",
    "RELAY_BATCH_WINDOW_MS",
    "RELAY_BEFORE_IMAGE_FIELD",
    "RELAY_BROKERS",
    "RELAY_CHUNK_SIZE",
    "RELAY_COMMIT_INTERVAL_MS",
    "RELAY_CONCURRENCY",
    "RELAY_DEADLINE_MARGIN_MS",
    "RELAY_DLQ_TOPIC",
    "RELAY_EXACTLY_ONCE",
    "RELAY_GROUP_ID",
    "RELAY_HASH_KEY",
    "RELAY_HASH_KEY_SECRET_ARN",
    "RELAY_HTTP_ADDR",
    "RELAY_LIVENESS_TIMEOUT_MS",
    "RELAY_LOG_VALUES",
    "RELAY_MAX_IN_FLIGHT",
    "RELAY_MAX_RECORD_BYTES",
    "RELAY_METRICS",
    "RELAY_METRICS_MAX_TABLES",
    "RELAY_METRICS_NAMESPACE",
    "RELAY_METRICS_PER_TABLE",
    "RELAY_PARTIAL_BATCH",
    "RELAY_RETRY_BACKOFF_MAX_MS",
    "RELAY_RETRY_BACKOFF_MS",
    "RELAY_ROUTES",
    "RELAY_SCRAM_PASSWORD",
    "RELAY_SCRAM_SECRET_ARN",
    "RELAY_SCRAM_USERNAME",
    "RELAY_SHUTDOWN_TIMEOUT_MS",
    "RELAY_SOURCE_BROKERS",
    "RELAY_SOURCE_CLUSTER_ARN",
    "RELAY_SOURCE_TOPICS",
    "RELAY_TLS_CA_FILE",
    "RELAY_TLS_CERT_FILE",
    "RELAY_TLS_CLIENT_CERT_SECRET_ARN",
    "RELAY_TLS_KEY_FILE",
    "RELAY_TLS_KEY_PASSWORD",
    "RELAY_TRANSACTIONAL_ID",
];

/// The smallest `RELAY_DEADLINE_MARGIN_MS` accepted: the time the relay keeps, after it
/// stops waiting for the broker, to purge the producer, settle the purged deliveries,
/// write metrics and post the answer to the runtime API.
pub(crate) const MIN_DEADLINE_MARGIN: Duration = Duration::from_millis(200);

/// Everything the relay reads from its environment, validated once and never changed
/// after: what a command sets on top of the environment goes through [`Overrides`]
/// before validation. `Debug` never shows secrets: they are held in [`Secret`], and the
/// values of `RELAY_PRODUCER_*` properties that are passwords or secrets are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// Downstream bootstrap servers (`RELAY_BROKERS`). `None`: use the event's
    /// `bootstrapServers`.
    pub brokers: Option<String>,
    /// librdkafka properties from `RELAY_PRODUCER_*`, applied last (they win).
    pub producer_overrides: Vec<(String, String)>,
    /// Authentication to the downstream cluster (`RELAY_AUTH` and friends).
    pub auth: AuthSettings,
    /// The routes file and what it needs.
    pub routes: RoutesSettings,
    /// How batches run.
    pub pipeline: PipelineSettings,
    /// CloudWatch metrics.
    pub metrics: MetricsSettings,
    /// `RELAY_*` variables given that no mode reads (misspelt, or from another
    /// product): logged at start.
    pub unknown: Vec<String>,
}

/// The routes file and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutesSettings {
    /// Routes file named by `RELAY_ROUTES`; `None`: look beside the binary, then in the
    /// working directory.
    pub path: Option<PathBuf>,
    /// Dead-letter topic (`RELAY_DLQ_TOPIC`), overriding the routes file's `dlq_topic`.
    pub dlq_topic: Option<String>,
    /// Name of the DMS before-image field (`RELAY_BEFORE_IMAGE_FIELD`, DMS's `FieldName`).
    pub before_image_field: String,
    /// The key of `hash` pseudonyms (`RELAY_HASH_KEY`).
    pub hash_key: Option<Secret>,
    /// The Secrets Manager secret holding the key of `hash` pseudonyms
    /// (`RELAY_HASH_KEY_SECRET_ARN`), read at init when a route hashes.
    pub hash_key_secret_arn: Option<String>,
    /// Without a hash key, use the published local one
    /// (`LOCAL_HASH_KEY`). Never read from the environment: set
    /// through [`Overrides`] by the local commands that produce nowhere real
    /// (`check-routes`, `invoke` on the embedded cluster).
    pub local_hash_key: bool,
}

/// How batches run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineSettings {
    /// Upper bound on transform tasks running at once (`RELAY_CONCURRENCY`; default:
    /// the cores this process may use).
    pub concurrency: usize,
    /// Records per transform task (`RELAY_CHUNK_SIZE`).
    pub chunk_size: usize,
    /// Messages enqueued and not yet acknowledged, at most, before a batch waits for the
    /// oldest (`RELAY_MAX_IN_FLIGHT`; default: no bound of the relay's own).
    pub max_in_flight: Option<usize>,
    /// How long before the invocation deadline the relay stops waiting for the broker
    /// and answers (`RELAY_DEADLINE_MARGIN_MS`).
    pub deadline_margin: Duration,
    /// Answer failures with `batchItemFailures` instead of an error (`RELAY_PARTIAL_BATCH`).
    /// Off by default: Lambda ignores a partial response unless the mapping has
    /// `ReportBatchItemFailures`, which would silently drop the failed records.
    pub partial_batch: bool,
    /// Include the record's value in per-record problem logs (`RELAY_LOG_VALUES`). Off:
    /// row values are customer data.
    pub log_values: bool,
}

/// CloudWatch metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Write one EMF metrics record per invocation to stdout (`RELAY_METRICS`; default
    /// on inside Lambda, where stdout goes to CloudWatch Logs).
    pub enabled: bool,
    /// CloudWatch namespace of the metrics (`RELAY_METRICS_NAMESPACE`).
    pub namespace: String,
    /// The metrics' `FunctionName` dimension: `AWS_LAMBDA_FUNCTION_NAME`, else `cdc-relay`.
    pub function_name: String,
    /// Add per-table metrics records (`RELAY_METRICS_PER_TABLE`).
    pub per_table: bool,
    /// Most distinct table names per-table metrics use before folding the rest into
    /// `_other` (`RELAY_METRICS_MAX_TABLES`).
    pub max_tables: usize,
}

/// What a command sets on top of the environment, applied while the settings are read,
/// so a relay is built from settings nobody changes afterwards. A blank `brokers` is no
/// override (as a blank `RELAY_BROKERS` is no setting).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Downstream brokers (`--brokers`, or the embedded cluster's) instead of `RELAY_BROKERS`.
    pub brokers: Option<String>,
    /// The routes file instead of `RELAY_ROUTES`.
    pub routes_path: Option<PathBuf>,
    /// Allow the published local hash key ([`RoutesSettings::local_hash_key`]).
    pub local_hash_key: bool,
    /// Producer properties the relay manages itself (serve's `transactional.id`), added
    /// after the user's `RELAY_PRODUCER_*` properties were checked.
    pub managed_producer: Vec<(String, String)>,
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
            .field("producer_overrides", &overrides)
            .field("auth", &self.auth)
            .field("routes", &self.routes)
            .field("pipeline", &self.pipeline)
            .field("metrics", &self.metrics)
            .field("unknown", &self.unknown)
            .finish()
    }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_vars(std::env::vars())
    }

    /// Reads the process environment, with a command's overrides.
    pub fn from_env_with(overrides: Overrides) -> Result<Settings, ConfigError> {
        Settings::from_vars_with(std::env::vars(), overrides)
    }

    /// Reads settings from `(name, value)` pairs; the seam tests use.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Settings::from_vars_with(vars, Overrides::default())
    }

    /// Reads settings from `(name, value)` pairs, with a command's overrides.
    pub fn from_vars_with<I, K, V>(vars: I, overrides: Overrides) -> Result<Settings, ConfigError>
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
            producer_overrides: Vec::new(),
            auth: AuthSettings::default(),
            routes: RoutesSettings {
                path: None,
                dlq_topic: None,
                before_image_field: "before-image".to_owned(),
                hash_key: None,
                hash_key_secret_arn: None,
                local_hash_key: false,
            },
            pipeline: PipelineSettings {
                concurrency: default_concurrency,
                chunk_size: 256,
                max_in_flight: None,
                deadline_margin: Duration::from_millis(1000),
                partial_batch: false,
                log_values: false,
            },
            metrics: MetricsSettings {
                enabled: false,
                namespace: DEFAULT_NAMESPACE.to_owned(),
                function_name: "cdc-relay".to_owned(),
                per_table: false,
                max_tables: 50,
            },
            unknown: Vec::new(),
        };
        let mut metrics: Option<bool> = None;
        let mut in_lambda = false;
        for (name, value) in vars {
            let (name, value): (String, String) = (name.into(), value.into());
            if name.starts_with("RELAY_")
                && !KNOWN_VARIABLES.contains(&name.as_str())
                && !name.starts_with(PRODUCER_PREFIX)
                && !name.starts_with(CONSUMER_PREFIX)
            {
                settings.unknown.push(name.clone());
            }
            match name.as_str() {
                "RELAY_BROKERS" => settings.brokers = non_empty(&name, &value)?,
                "RELAY_ROUTES" => {
                    settings.routes.path = non_empty(&name, &value)?.map(PathBuf::from)
                }
                "RELAY_CONCURRENCY" => settings.pipeline.concurrency = positive(&name, &value)?,
                "RELAY_CHUNK_SIZE" => settings.pipeline.chunk_size = positive(&name, &value)?,
                "RELAY_MAX_IN_FLIGHT" => {
                    settings.pipeline.max_in_flight = Some(positive(&name, &value)?);
                }
                "RELAY_PARTIAL_BATCH" => settings.pipeline.partial_batch = boolean(&name, &value)?,
                "RELAY_DLQ_TOPIC" => settings.routes.dlq_topic = non_empty(&name, &value)?,
                // Blank is unset (a cleared console value): Lambda's default stays.
                "RELAY_METRICS" => {
                    metrics = (!value.trim().is_empty())
                        .then(|| boolean(&name, &value))
                        .transpose()?
                }
                "RELAY_METRICS_NAMESPACE" => {
                    settings.metrics.namespace = non_empty(&name, &value)?
                        .ok_or_else(|| invalid(&name, &value, "must not be empty"))?
                }
                "RELAY_METRICS_PER_TABLE" => settings.metrics.per_table = boolean(&name, &value)?,
                "RELAY_METRICS_MAX_TABLES" => {
                    settings.metrics.max_tables = positive(&name, &value)?
                }
                "RELAY_LOG_VALUES" => settings.pipeline.log_values = boolean(&name, &value)?,
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
                "RELAY_TLS_CLIENT_CERT_SECRET_ARN" => {
                    settings.auth.client_cert_secret_arn = non_empty(&name, &value)?;
                    if settings
                        .auth
                        .client_cert_secret_arn
                        .as_deref()
                        .is_some_and(|arn| auth::secret_region(arn).is_none())
                    {
                        return Err(invalid(
                            &name,
                            &value,
                            "expected a Secrets Manager secret ARN (arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME)",
                        ));
                    }
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
                    settings.routes.hash_key = (!value.is_empty()).then(|| Secret::new(value))
                }
                "RELAY_HASH_KEY_SECRET_ARN" => {
                    settings.routes.hash_key_secret_arn = non_empty(&name, &value)?;
                    if let Some(arn) = &settings.routes.hash_key_secret_arn {
                        if auth::secret_region(arn).is_none() {
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
                    settings.metrics.function_name = value.clone();
                }
                "RELAY_BEFORE_IMAGE_FIELD" => {
                    settings.routes.before_image_field = non_empty(&name, &value)?
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
                    settings.pipeline.deadline_margin = Duration::from_millis(ms);
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
        settings.metrics.enabled = metrics.unwrap_or(in_lambda);
        if settings.routes.hash_key.is_some() && settings.routes.hash_key_secret_arn.is_some() {
            // As for SCRAM: one source of a secret, never one silently over the other
            // (the templates set the ARN; a key added beside it would win unseen).
            return Err(invalid(
                "RELAY_HASH_KEY",
                "<redacted>",
                "RELAY_HASH_KEY_SECRET_ARN is set too: give the key one way, not both",
            ));
        }
        settings.auth.in_lambda = in_lambda;
        // Environment order is arbitrary; sort so the producer config is deterministic.
        settings.producer_overrides.sort();
        if let Some(brokers) = overrides.brokers.filter(|b| !b.trim().is_empty()) {
            settings.brokers = Some(brokers.trim().to_owned());
        }
        if let Some(path) = overrides.routes_path {
            settings.routes.path = Some(path);
        }
        settings.routes.local_hash_key |= overrides.local_hash_key;
        settings
            .producer_overrides
            .extend(overrides.managed_producer);
        Ok(settings)
    }

    /// The routes file to load: `RELAY_ROUTES`, else `routes.toml` beside the binary,
    /// else `routes.toml` in the working directory. `None` when none exists.
    pub(crate) fn locate_routes(&self) -> Option<PathBuf> {
        if let Some(path) = &self.routes.path {
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

/// Why a librdkafka override would weaken delivery or per-key order, if it would.
///
/// The relay's promises rest on four producer settings: idempotence (librdkafka's own
/// retries neither duplicate nor reorder), `acks=all` (an acknowledged message survives
/// a broker loss), at most 5 requests in flight (the most idempotence keeps in order),
/// and the Java client's partitioner (every consumer agrees where a key lives).
pub(crate) fn weakens_guarantees(property: &str, value: &str) -> Option<String> {
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

    /// A `RELAY_*` name no mode reads is named (a misspelt variable would otherwise be
    /// silently without effect); every name a mode reads, and the property prefixes, are
    /// not. The list of known names is the one the parsers match on.
    #[test]
    fn variables_no_mode_reads_are_named() {
        let s = Settings::from_vars([
            ("RELAY_PARTIAL_BATCHES", "true"),
            ("RELAY_BROKERS", "b:9092"),
            ("RELAY_SOURCE_TOPICS", "dms.cdc"),
            ("RELAY_CONSUMER_FETCH_WAIT_MAX_MS", "10"),
            ("RELAY_PRODUCER_LINGER_MS", "5"),
            ("OTHER_PRODUCT_SETTING", "x"),
        ])
        .expect("valid");
        assert_eq!(s.unknown, vec!["RELAY_PARTIAL_BATCHES".to_owned()]);
        // The parsers' text: each file before its tests, without the list itself.
        let code = |source: &'static str| source.split("#[cfg(test)]").next().unwrap_or_default();
        let module = code(include_str!("mod.rs"));
        let (before, list) = module
            .split_once("const KNOWN_VARIABLES")
            .expect("the list");
        let after = list.split_once("];").map_or("", |(_, rest)| rest);
        let mut matched: Vec<&str> = [before, after, code(include_str!("serve.rs"))]
            .iter()
            .flat_map(|source| {
                source
                    .match_indices("\"RELAY_")
                    .filter_map(|(at, _)| source[at + 1..].split('"').next())
            })
            .filter(|text| {
                text.len() > "RELAY_".len()
                    && text.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                    && !text.starts_with(PRODUCER_PREFIX)
                    && !text.starts_with(CONSUMER_PREFIX)
            })
            .collect();
        matched.sort_unstable();
        matched.dedup();
        let mut known = KNOWN_VARIABLES.to_vec();
        known.sort_unstable();
        for name in &matched {
            assert!(known.contains(name), "{name} is read but not known");
        }
        for name in &known {
            assert!(
                matched.contains(name),
                "{name} is known but no parser reads it"
            );
        }
    }

    /// Unset variables give the documented defaults.
    #[test]
    fn defaults() {
        let s = Settings::from_vars(Vec::<(String, String)>::new()).expect("empty env is valid");
        assert_eq!(s.brokers, None);
        assert!(!s.pipeline.partial_batch);
        assert_eq!(s.pipeline.chunk_size, 256);
        assert_eq!(s.pipeline.max_in_flight, None);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(s.pipeline.concurrency, cores);
        assert_eq!(s.routes.before_image_field, "before-image");
        assert_eq!(s.pipeline.deadline_margin, Duration::from_millis(1000));
        assert!(!s.metrics.enabled);
        assert_eq!(s.metrics.namespace, DEFAULT_NAMESPACE);
    }

    /// In Lambda metrics default to on, and a blank `RELAY_METRICS` (a cleared console
    /// value) leaves that default; only a value turns them off.
    #[test]
    fn blank_metrics_setting_keeps_lambdas_default() {
        let lambda = ("AWS_LAMBDA_FUNCTION_NAME", "f");
        for blank in ["", " "] {
            let s = Settings::from_vars([lambda, ("RELAY_METRICS", blank)]).expect("valid");
            assert!(s.metrics.enabled, "{blank:?}");
        }
        let s = Settings::from_vars([lambda, ("RELAY_METRICS", "false")]).expect("valid");
        assert!(!s.metrics.enabled);
    }

    /// The client certificate comes one way: its secret holds the key and the key's
    /// password too, so no file setting may stay beside it.
    #[test]
    fn a_client_certificate_secret_takes_no_file_settings() {
        let arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:client-cert-AbCdEf";
        let alone = Settings::from_vars([
            ("RELAY_AUTH", "tls"),
            ("RELAY_TLS_CLIENT_CERT_SECRET_ARN", arn),
        ])
        .expect("valid");
        alone.auth.validate().expect("the secret alone");
        for files in [
            &[("RELAY_TLS_KEY_PASSWORD", "pw-5a1f")][..],
            &[
                ("RELAY_TLS_CERT_FILE", "Cargo.toml"),
                ("RELAY_TLS_KEY_FILE", "Cargo.toml"),
            ],
        ] {
            let mut vars = vec![
                ("RELAY_AUTH", "tls"),
                ("RELAY_TLS_CLIENT_CERT_SECRET_ARN", arn),
            ];
            vars.extend_from_slice(files);
            let both = Settings::from_vars(vars).expect("parsed");
            let error = both.auth.validate().expect_err(files[0].0).to_string();
            assert!(
                error.contains("RELAY_TLS_CLIENT_CERT_SECRET_ARN"),
                "{error}"
            );
        }
        assert!(
            Settings::from_vars([("RELAY_TLS_CLIENT_CERT_SECRET_ARN", "client-cert")]).is_err()
        );
    }

    /// The hash key comes one way: a key beside the templates' secret would win unseen.
    #[test]
    fn a_hash_key_and_its_secret_together_are_refused() {
        let arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:hash-AbCdEf";
        let error = Settings::from_vars([
            ("RELAY_HASH_KEY", "0123456789abcdef0123"),
            ("RELAY_HASH_KEY_SECRET_ARN", arn),
        ])
        .expect_err("both")
        .to_string();
        assert!(
            error.contains("RELAY_HASH_KEY_SECRET_ARN is set too"),
            "{error}"
        );
        assert!(!error.contains("0123456789abcdef0123"), "{error}");
        Settings::from_vars([("RELAY_HASH_KEY_SECRET_ARN", arn)]).expect("the secret alone");
        Settings::from_vars([("RELAY_HASH_KEY", "0123456789abcdef0123")]).expect("the key alone");
    }

    /// A command's overrides replace the environment's values before validation;
    /// managed producer properties join the user's after their check.
    #[test]
    fn overrides_apply_before_validation() {
        let s = Settings::from_vars_with(
            [("RELAY_BROKERS", "env:9092"), ("RELAY_ROUTES", "env.toml")],
            Overrides {
                brokers: Some("cli:9092".to_owned()),
                routes_path: Some(PathBuf::from("cli.toml")),
                local_hash_key: true,
                managed_producer: vec![("transactional.id".to_owned(), "g-1".to_owned())],
            },
        )
        .expect("valid");
        assert_eq!(s.brokers.as_deref(), Some("cli:9092"));
        assert_eq!(s.routes.path, Some(PathBuf::from("cli.toml")));
        assert!(s.routes.local_hash_key);
        assert_eq!(
            s.producer_overrides,
            vec![("transactional.id".to_owned(), "g-1".to_owned())]
        );
        // The same property from the environment is refused: the relay manages it.
        assert!(Settings::from_vars([("RELAY_PRODUCER_TRANSACTIONAL_ID", "x")]).is_err());
        // Without overrides, the environment's values stand.
        let s = Settings::from_vars([("RELAY_BROKERS", "env:9092")]).expect("valid");
        assert_eq!(s.brokers.as_deref(), Some("env:9092"));
        assert!(!s.routes.local_hash_key);
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
        assert_eq!(s.pipeline.deadline_margin, MIN_DEADLINE_MARGIN);
    }

    /// Invalid values name the variable and the problem.
    #[test]
    fn invalid_values_are_named() {
        for (name, value) in [
            ("RELAY_CONCURRENCY", "0"),
            ("RELAY_CHUNK_SIZE", "many"),
            ("RELAY_MAX_IN_FLIGHT", "0"),
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
