//! Environment -> validated [`Settings`], read once at init.
//!
//! Every variable is parsed here and nowhere else; an invalid value is a
//! [`ConfigError`] naming the variable, so a misconfigured function fails at init
//! instead of on its first record. The routes file itself is parsed by
//! [`crate::transform::Routes`]; this module only finds it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ConfigError;

/// Prefix of the librdkafka passthrough variables: `RELAY_PRODUCER_LINGER_MS=5` -> `linger.ms=5`.
pub const PRODUCER_PREFIX: &str = "RELAY_PRODUCER_";

/// Everything the relay reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
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
                    settings.deadline_margin = Duration::from_millis(ms);
                }
                _ => {
                    if let Some(suffix) = name.strip_prefix(PRODUCER_PREFIX) {
                        if suffix.is_empty() {
                            return Err(invalid(&name, &value, "names no librdkafka property"));
                        }
                        let property = suffix.to_ascii_lowercase().replace('_', ".");
                        settings.producer_overrides.push((property, value));
                    }
                }
            }
        }
        settings.metrics = metrics.unwrap_or(in_lambda);
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

    /// Invalid values name the variable and the problem.
    #[test]
    fn invalid_values_are_named() {
        for (name, value) in [
            ("RELAY_CONCURRENCY", "0"),
            ("RELAY_CHUNK_SIZE", "many"),
            ("RELAY_PARTIAL_BATCH", "perhaps"),
            ("RELAY_DEADLINE_MARGIN_MS", "-1"),
        ] {
            let err = Settings::from_vars([(name, value)]).expect_err("must be rejected");
            let text = err.to_string();
            assert!(text.contains(name) && text.contains(value), "{text}");
        }
    }
}
