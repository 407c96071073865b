//! What `serve` reads on top of the relay's settings: the source consumer group, how
//! it batches and how it commits.

use std::time::Duration;

use super::{boolean, invalid, millis, non_empty, positive};
use crate::error::ConfigError;

/// Prefix of the variables passed through to the source consumer (`serve`).
pub const CONSUMER_PREFIX: &str = "RELAY_CONSUMER_";

/// The batch window's default under exactly once: each batch is a transaction (two
/// round trips to its coordinator and a marker per partition written), so batches wait
/// this long to fill instead of committing a transaction per few records.
pub const EXACTLY_ONCE_BATCH_WINDOW: Duration = Duration::from_millis(20);

/// The shortest `RELAY_BATCH_TIMEOUT_MS` taken.
pub const MIN_BATCH_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// Longest wait for a batch to fill after its first record (`RELAY_BATCH_WINDOW_MS`;
    /// default 0 at least once: a batch is what has arrived, since offsets commit on
    /// their own interval; 20 exactly once, where every batch is a transaction).
    pub batch_window: Duration,
    /// At least once: how long offsets of records done may wait to be committed, so one
    /// commit covers the batches of that time (`RELAY_COMMIT_INTERVAL_MS`, default 500;
    /// 0 commits after every batch). A revocation and leaving the group commit at once;
    /// a member that dies without leaving has its partitions' records of up to that
    /// long produced again by their next owner. Exactly once commits in each batch's
    /// transaction.
    pub commit_interval: Duration,
    /// Most key, value and header bytes per batch (`RELAY_BATCH_MAX_BYTES`, default 6 MiB).
    pub batch_max_bytes: usize,
    /// A record larger than this (key, value and headers) is poison: dead-lettered cut to
    /// fit, with its size and SHA-256 (`RELAY_MAX_RECORD_BYTES`, default 8 MiB: above any
    /// record a 6 MB Lambda payload can carry, far below a task's memory).
    pub max_record_bytes: usize,
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
    /// How long the loop may go without progress (records done, or nothing left to read)
    /// before `/healthz` fails (`RELAY_LIVENESS_TIMEOUT_MS`; default 120,000, or more
    /// when a batch may take longer: see `serve`).
    pub liveness_timeout: Option<Duration>,
    /// Where `/healthz` and `/metrics` listen (`RELAY_HTTP_ADDR`, default
    /// `0.0.0.0:8080`; `off` for nowhere).
    pub http_addr: Option<std::net::SocketAddr>,
    /// `RELAY_CONSUMER_*` librdkafka properties for the source consumer.
    pub consumer_overrides: Vec<(String, String)>,
    /// Variables given that these settings ignore, each with why (serve warns at start).
    pub ignored: Vec<(&'static str, &'static str)>,
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
            batch_window: Duration::ZERO,
            commit_interval: Duration::from_millis(500),
            batch_max_bytes: 6 * 1024 * 1024,
            max_record_bytes: 8 * 1024 * 1024,
            batch_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(500),
            retry_backoff_max: Duration::from_secs(30),
            exactly_once: false,
            transactional_id: None,
            shutdown_timeout: Duration::from_secs(20),
            liveness_timeout: None,
            http_addr: Some(std::net::SocketAddr::from(([0, 0, 0, 0], 8080))),
            consumer_overrides: Vec::new(),
            ignored: Vec::new(),
        };
        let mut commit_interval_given = false;
        let mut brokers = None;
        let mut batch_window = None;
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
                "RELAY_BATCH_WINDOW_MS" => batch_window = Some(millis(&name, &value)?),
                "RELAY_COMMIT_INTERVAL_MS" => {
                    settings.commit_interval = millis(&name, &value)?;
                    commit_interval_given = true;
                }
                "RELAY_BATCH_MAX_BYTES" => settings.batch_max_bytes = positive(&name, &value)?,
                "RELAY_MAX_RECORD_BYTES" => settings.max_record_bytes = positive(&name, &value)?,
                "RELAY_BATCH_TIMEOUT_MS" => {
                    settings.batch_timeout = millis(&name, &value)?;
                    if settings.batch_timeout < MIN_BATCH_TIMEOUT {
                        return Err(invalid(
                            &name,
                            &value,
                            &format!(
                                "must be at least {} ms: a batch given less than its produce \
                                 round trips never finishes, and every retry writes its \
                                 records again",
                                MIN_BATCH_TIMEOUT.as_millis()
                            ),
                        ));
                    }
                }
                "RELAY_RETRY_BACKOFF_MS" => {
                    settings.retry_backoff = millis(&name, &value)?;
                    if settings.retry_backoff.is_zero() {
                        return Err(invalid(
                            &name,
                            &value,
                            "must be greater than 0: it doubles per failure in a row, and from \
                             0 a failing partition would be read again at once, for ever",
                        ));
                    }
                }
                "RELAY_RETRY_BACKOFF_MAX_MS" => settings.retry_backoff_max = millis(&name, &value)?,
                "RELAY_EXACTLY_ONCE" => settings.exactly_once = boolean(&name, &value)?,
                "RELAY_TRANSACTIONAL_ID" => settings.transactional_id = non_empty(&name, &value)?,
                "RELAY_SHUTDOWN_TIMEOUT_MS" => settings.shutdown_timeout = millis(&name, &value)?,
                "RELAY_LIVENESS_TIMEOUT_MS" => {
                    settings.liveness_timeout = Some(millis(&name, &value)?)
                }
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
                        if property == "group.instance.id" {
                            return Err(invalid(
                                &name,
                                &value,
                                "every task of a service shares its environment, so every \
                                 member would have this static id: each would fence the one \
                                 before it, and the group would never settle",
                            ));
                        }
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
        if settings.exactly_once && commit_interval_given {
            settings.ignored.push((
                "RELAY_COMMIT_INTERVAL_MS",
                "under exactly once each batch commits its offsets in its own transaction",
            ));
        }
        if settings.exactly_once {
            if let (Some(source), Some(downstream)) = (&settings.source_brokers, &brokers) {
                if !share_a_broker(source, downstream) {
                    return Err(invalid(
                        "RELAY_EXACTLY_ONCE",
                        "true",
                        &format!(
                            "RELAY_SOURCE_BROKERS ({source}) and RELAY_BROKERS ({downstream}) name no \
                             broker in common: Kafka transactions cannot span clusters (the source \
                             offsets commit through the downstream cluster's coordinator). Relay \
                             within one cluster, or turn exactly once off"
                        ),
                    ));
                }
            }
        }
        if settings.exactly_once {
            let level = settings
                .consumer_overrides
                .iter()
                .find(|(property, _)| property == "isolation.level");
            if let Some((_, level)) = level {
                if !level.eq_ignore_ascii_case("read_committed") {
                    return Err(invalid(
                        "RELAY_CONSUMER_ISOLATION_LEVEL",
                        level,
                        "exactly once needs read_committed: only then does the consumer ask \
                         the group for stable offsets, and a member taking over a partition \
                         could otherwise start before the last transaction's offsets and \
                         relay its records again",
                    ));
                }
            }
        }
        settings.batch_window = batch_window.unwrap_or(if settings.exactly_once {
            EXACTLY_ONCE_BATCH_WINDOW
        } else {
            Duration::ZERO
        });
        settings.source_brokers = settings.source_brokers.or(brokers);
        if settings.source_brokers.is_none() {
            return Err(invalid(
                "RELAY_SOURCE_BROKERS",
                "",
                "serve needs the source cluster (RELAY_SOURCE_BROKERS, or RELAY_BROKERS for both)",
            ));
        }
        settings.consumer_overrides.sort();
        Ok(settings)
    }
}

/// Whether two bootstrap lists name at least one broker (`host:port`, case-insensitive)
/// in common: the one check of "the same cluster" that needs no connection (serve asks
/// both clusters for their ids at start as well).
fn share_a_broker(a: &str, b: &str) -> bool {
    let brokers = |list: &str| -> Vec<String> {
        list.split(',')
            .map(|broker| broker.trim().to_ascii_lowercase())
            .filter(|broker| !broker.is_empty())
            .collect()
    };
    let b = brokers(b);
    brokers(a).iter().any(|broker| b.contains(broker))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(vars: &[(&str, &str)]) -> Result<ServeSettings, ConfigError> {
        ServeSettings::from_vars(
            [("RELAY_SOURCE_TOPICS", "dms.cdc")]
                .iter()
                .chain(vars)
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    /// A batch waits for more records only under exactly once, where it is a
    /// transaction; at least once it is what has arrived, and offsets commit on their
    /// own interval. Either is the user's to set.
    #[test]
    fn the_batch_window_defaults_by_delivery_guarantee() {
        let at_least_once = serve(&[("RELAY_BROKERS", "b:9092")]).expect("settings");
        assert_eq!(at_least_once.batch_window, Duration::ZERO);
        assert_eq!(at_least_once.commit_interval, Duration::from_millis(500));
        let exactly_once = serve(&[("RELAY_BROKERS", "b:9092"), ("RELAY_EXACTLY_ONCE", "true")])
            .expect("settings");
        assert_eq!(exactly_once.batch_window, EXACTLY_ONCE_BATCH_WINDOW);
        let set = serve(&[
            ("RELAY_BATCH_WINDOW_MS", "7"),
            ("RELAY_BROKERS", "b:9092"),
            ("RELAY_EXACTLY_ONCE", "true"),
            ("RELAY_COMMIT_INTERVAL_MS", "0"),
        ])
        .expect("settings");
        assert_eq!(set.batch_window, Duration::from_millis(7));
        assert_eq!(set.commit_interval, Duration::ZERO);
    }

    /// Exactly once reads offsets as committed: a consumer override of the isolation
    /// level is refused then (unless it is read_committed), taken at least once.
    #[test]
    fn exactly_once_refuses_an_isolation_level_that_is_not_read_committed() {
        let level = |value: &str, exactly_once: &str| {
            serve(&[
                ("RELAY_BROKERS", "b:9092"),
                ("RELAY_CONSUMER_ISOLATION_LEVEL", value),
                ("RELAY_EXACTLY_ONCE", exactly_once),
            ])
        };
        let error = level("read_uncommitted", "true").expect_err("refused");
        assert!(
            error.to_string().contains("RELAY_CONSUMER_ISOLATION_LEVEL"),
            "{error}"
        );
        level("read_committed", "true").expect("the level exactly once sets itself");
        level("read_uncommitted", "false").expect("at least once reads either way");
    }

    /// A batch timeout under a second, and a retry backoff of 0, are refused.
    #[test]
    fn batch_timeout_and_retry_backoff_have_floors() {
        let with = |name: &str, value: &str| serve(&[("RELAY_BROKERS", "b:9092"), (name, value)]);
        for (name, value) in [
            ("RELAY_BATCH_TIMEOUT_MS", "999"),
            ("RELAY_BATCH_TIMEOUT_MS", "0"),
            ("RELAY_RETRY_BACKOFF_MS", "0"),
        ] {
            let error = with(name, value).expect_err(name).to_string();
            assert!(error.contains(name), "{error}");
        }
        let taken = with("RELAY_BATCH_TIMEOUT_MS", "1000").expect("1 s");
        assert_eq!(taken.batch_timeout, MIN_BATCH_TIMEOUT);
        with("RELAY_RETRY_BACKOFF_MS", "1").expect("1 ms");
    }

    /// A static group membership id would be every task's (they share the service's
    /// environment): refused, as the relay's own offset settings are.
    #[test]
    fn a_static_member_id_is_refused() {
        for name in [
            "RELAY_CONSUMER_GROUP_INSTANCE_ID",
            "RELAY_CONSUMER_ENABLE_AUTO_COMMIT",
            "RELAY_CONSUMER_GROUP_ID",
        ] {
            let error = serve(&[("RELAY_BROKERS", "b:9092"), (name, "x")])
                .expect_err(name)
                .to_string();
            assert!(error.contains(name), "{error}");
        }
        let other = serve(&[
            ("RELAY_BROKERS", "b:9092"),
            ("RELAY_CONSUMER_FETCH_WAIT_MAX_MS", "10"),
        ])
        .expect("settings");
        assert_eq!(
            other.consumer_overrides,
            vec![("fetch.wait.max.ms".to_owned(), "10".to_owned())]
        );
    }

    /// A commit interval given under exactly once is named as ignored (serve warns at
    /// start): each batch commits in its transaction. Nothing else is.
    #[test]
    fn a_commit_interval_under_exactly_once_is_named_as_ignored() {
        let given = ("RELAY_COMMIT_INTERVAL_MS", "100");
        let broker = ("RELAY_BROKERS", "b:9092");
        let exactly_once = ("RELAY_EXACTLY_ONCE", "true");
        let ignored = |vars: &[(&str, &str)]| {
            let settings = serve(vars).expect("settings");
            settings
                .ignored
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ignored(&[broker, exactly_once, given]),
            ["RELAY_COMMIT_INTERVAL_MS"]
        );
        assert!(ignored(&[broker, exactly_once]).is_empty());
        assert!(ignored(&[broker, given]).is_empty());
    }

    /// Exactly once with the downstream on another cluster is refused at start: the
    /// offsets would commit through a coordinator that does not know the group.
    #[test]
    fn exactly_once_refuses_two_clusters() {
        let two = [
            ("RELAY_SOURCE_BROKERS", "b-1.source:9098,b-2.source:9098"),
            ("RELAY_BROKERS", "b-1.other:9098"),
        ];
        let error = serve(&[two[0], two[1], ("RELAY_EXACTLY_ONCE", "true")])
            .expect_err("two clusters")
            .to_string();
        assert!(error.contains("cannot span clusters"), "{error}");
        // At least once may relay between clusters; one cluster named twice (another
        // subset of its brokers) may run exactly once.
        serve(&two).expect("at least once");
        serve(&[
            ("RELAY_SOURCE_BROKERS", "b-1.source:9098,b-2.source:9098"),
            ("RELAY_BROKERS", "B-2.source:9098, b-3.source:9098"),
            ("RELAY_EXACTLY_ONCE", "true"),
        ])
        .expect("one cluster");
        serve(&[
            ("RELAY_BROKERS", "b-1.source:9098"),
            ("RELAY_EXACTLY_ONCE", "true"),
        ])
        .expect("RELAY_BROKERS for both");
    }
}
