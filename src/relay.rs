//! [`Relay`]: what every mode builds and shares: the validated settings, the compiled
//! routes in a [`Pipeline`], the credentials and the one producer. No mode's types here:
//! Lambda, `serve`, `invoke` and `replay` all run their
//! batches through one `Relay`.
//!
//! It is built once per process (Lambda: per execution environment, in the init phase).
//! It owns the one producer: created at init when `RELAY_BROKERS` is set (and connected
//! there, so the first batch does not pay for it), else on the first batch from its
//! origin's `bootstrapServers`, and again only when a batch names other brokers than
//! the last (a function fed by two clusters). A producer in a fatal state is retired
//! and the next batch gets a new one; a refused SCRAM login fetches the secret again.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;

use crate::config::auth::AuthMode;
use crate::config::Settings;
use crate::dms::Decoder;
use crate::error::Error;
use crate::kafka::producer::Sink;
use crate::kafka::{resolve_mode, ClientAuth};
use crate::pipeline::{BatchContext, BatchOutcome, Pipeline, PipelineOptions, Renew};
use crate::secrets::{
    fetch_scram_secret, resolve_hash_key_with, Credentials, SECRET_FETCH_TIMEOUT,
};
use crate::source::{EventOrigin, SourceRecord};
use crate::transform::{Routes, Transformer};

/// The repository's `routes.toml`, compiled in: what a deployed function uses when no
/// file is shipped beside it and `RELAY_ROUTES` is unset (`sam build` ships only the binary).
pub(crate) const BUILT_IN_ROUTES: &str = include_str!("../routes.toml");

/// How long init may take in all: Lambda allows 10 s for the init phase, and a function
/// that overruns it is restarted (and billed) with the first invocation.
const INIT_BUDGET: Duration = Duration::from_secs(8);

/// How often, at most, a refused SCRAM login fetches the secret again.
const SECRET_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Whether a secret fetched at `last` is younger than [`SECRET_REFETCH_INTERVAL`].
fn fetched_recently(last: Option<Instant>) -> bool {
    last.is_some_and(|at| at.elapsed() < SECRET_REFETCH_INTERVAL)
}

/// The longest init waits for the brokers when warming the producer up.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(5);

/// The relay: configuration, pipeline, credentials and producer, shared by every batch.
#[derive(Debug)]
pub struct Relay {
    settings: Settings,
    pipeline: Pipeline,
    /// The producer and the brokers and authentication it was made for; replaced after
    /// a fatal error (a producer in a fatal state fails every message until it is
    /// recreated), and when a batch names other brokers.
    sink: Mutex<Option<Producer>>,
    /// Credentials resolved at init (SCRAM secret, AWS configuration); the SCRAM secret
    /// is fetched again when the brokers refuse the login (a rotated secret).
    credentials: RwLock<Credentials>,
    /// When the SCRAM secret was last fetched again after a refused login.
    last_secret_fetch: Mutex<Option<Instant>>,
}

impl Relay {
    /// The routes file the settings name (else the built-in one), validated, without
    /// a hash key.
    pub(crate) fn read_routes(settings: &Settings) -> Result<Routes, Error> {
        Ok(match settings.locate_routes() {
            Some(path) => {
                let routes = Routes::load_with_dlq(&path, settings.routes.dlq_topic.clone())?;
                tracing::info!(routes = %path.display(), count = routes.routes.len(), "routes loaded");
                routes
            }
            None => {
                tracing::info!(
                    "no routes file found: using the routes.toml compiled into the binary"
                );
                Routes::parse_with_dlq(
                    BUILT_IN_ROUTES,
                    "<built-in routes.toml>",
                    settings.routes.dlq_topic.clone(),
                )?
            }
        })
    }

    /// [`Relay::read_routes`], with the hash key when a route hashes (resolved only
    /// then: a function whose routes never hash needs no key and makes no call for one).
    pub async fn load_routes(settings: &Settings) -> Result<Routes, Error> {
        Relay::load_routes_with(settings, None).await
    }

    /// [`Relay::load_routes`], calling Secrets Manager with `aws` when given (else the
    /// configuration loaded from the environment).
    pub async fn load_routes_with(
        settings: &Settings,
        aws: Option<&SdkConfig>,
    ) -> Result<Routes, Error> {
        let mut routes = Relay::read_routes(settings)?;
        if routes.hashing_routes().is_empty() {
            return Ok(routes);
        }
        let key = resolve_hash_key_with(settings, aws).await?;
        if key.is_some()
            && settings.routes.hash_key.is_none()
            && settings.routes.hash_key_secret_arn.is_none()
        {
            tracing::warn!(
                "no hash key is set: `hash` uses the published local key, so its pseudonyms hide nothing (set RELAY_HASH_KEY or RELAY_HASH_KEY_SECRET_ARN)"
            );
        }
        routes.set_hash_key(key)?;
        Ok(routes)
    }

    /// Builds the relay over already validated routes.
    pub fn with_routes(settings: Settings, routes: Routes) -> Relay {
        let pipeline = Pipeline::new(
            Decoder::new(settings.routes.before_image_field.clone()),
            Transformer::new(routes),
            PipelineOptions {
                concurrency: settings.pipeline.concurrency,
                chunk_size: settings.pipeline.chunk_size,
                per_table: settings.metrics.enabled && settings.metrics.per_table,
                log_values: settings.pipeline.log_values,
                max_in_flight: settings.pipeline.max_in_flight.unwrap_or(usize::MAX),
            },
        );
        Relay {
            settings,
            pipeline,
            sink: Mutex::new(None),
            credentials: RwLock::new(Credentials::default()),
            last_secret_fetch: Mutex::new(None),
        }
    }

    /// Init-phase work: resolve credentials (the SCRAM secret and the hash key are
    /// fetched here, once),
    /// and when `RELAY_BROKERS` is set, create the producer and connect it. A broker
    /// that is not reachable yet is logged, not fatal: librdkafka keeps trying.
    ///
    /// Every network call here has a timeout, and together they end within
    /// [`INIT_BUDGET`], inside Lambda's 10 s init phase.
    pub async fn init(settings: Settings) -> Result<Relay, Error> {
        let started = Instant::now();
        for name in &settings.unknown {
            tracing::warn!(
                variable = %name,
                "no mode of the relay reads this variable (misspelt?): it has no effect"
            );
        }
        // Side by side: each has its own timeouts, so init waits only for the slower.
        let (credentials, routes) = tokio::join!(
            Credentials::resolve(&settings.auth),
            Relay::load_routes(&settings)
        );
        let (credentials, routes) = (credentials?, routes?);
        let relay = Relay::with_routes(settings, routes).with_credentials(credentials);
        if let Some(brokers) = relay.settings.brokers.clone() {
            let sink = relay.sink_for(&brokers, None)?;
            let left = INIT_BUDGET.saturating_sub(started.elapsed());
            if let Err(e) = sink.warm_up(left.min(WARM_UP_TIMEOUT)).await {
                tracing::warn!(error = %e, "producer warm-up failed; will retry on first batch");
            }
        }
        Ok(relay)
    }

    /// The same relay with these credentials (what [`Relay::init`] resolves).
    pub fn with_credentials(mut self, credentials: Credentials) -> Relay {
        self.credentials = RwLock::new(credentials);
        self
    }

    /// The settings in use.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The pipeline in use.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The producer for `brokers`, created on first use, authenticating as `RELAY_AUTH`
    /// says (or, when unset, as [`resolve_mode`] decides from the brokers and the event's
    /// source ARN). Without `RELAY_BROKERS` each event names its cluster: a batch from
    /// another cluster than the last (two event source mappings) gets a producer of its
    /// own, never the last one's, which would write its changes to the wrong cluster.
    fn sink_for(&self, brokers: &str, event_source_arn: Option<&str>) -> Result<Arc<Sink>, Error> {
        let mut slot = self
            .sink
            .lock()
            .map_err(|_| Error::Producer("producer slot poisoned by a panic".to_owned()))?;
        let mode = self.mode_for(brokers, event_source_arn);
        if let Some(current) = slot.as_ref() {
            if current.brokers == brokers && current.mode == mode {
                return Ok(current.sink.clone());
            }
        }
        if let Some(last) = slot.take() {
            tracing::info!(
                last = last.brokers,
                brokers,
                "this batch names other brokers than the last: a producer of their own"
            );
            // Every message of the last batch was settled before it answered.
            tokio::task::spawn_blocking(move || drop(last));
        }
        let auth = self.auth_in(mode)?;
        tracing::info!(
            brokers,
            auth = auth.mode().as_str(),
            "creating the producer"
        );
        let sink = Arc::new(Sink::connect_with(
            brokers,
            auth,
            &self.settings.producer_overrides,
        )?);
        *slot = Some(Producer {
            sink: sink.clone(),
            brokers: brokers.to_owned(),
            mode,
        });
        Ok(sink)
    }

    /// The security settings of a Kafka client of `brokers`: the producer's, and in
    /// `serve` the source consumer's too (one `RELAY_AUTH` for both).
    pub(crate) fn client_auth(
        &self,
        brokers: &str,
        event_source_arn: Option<&str>,
    ) -> Result<ClientAuth, Error> {
        self.auth_in(self.mode_for(brokers, event_source_arn))
    }

    /// The authentication mode for `brokers`: `RELAY_AUTH`, or when unset what
    /// [`resolve_mode`] decides from the brokers and the event's source ARN.
    fn mode_for(&self, brokers: &str, event_source_arn: Option<&str>) -> AuthMode {
        let from_event = self.settings.brokers.is_none();
        resolve_mode(&self.settings.auth, brokers, from_event, event_source_arn)
    }

    /// The security settings of a client in `mode`, with the credentials resolved at init.
    fn auth_in(&self, mode: AuthMode) -> Result<ClientAuth, Error> {
        let credentials = self
            .credentials
            .read()
            .map_err(|_| Error::Producer("credentials lock poisoned by a panic".to_owned()))?;
        Ok(ClientAuth::for_mode(
            mode,
            &self.settings.auth,
            &credentials,
        )?)
    }

    /// The producer for `brokers`, created on first use (the one [`Relay::run`] uses).
    pub(crate) fn producer(&self, brokers: &str) -> Result<Arc<Sink>, Error> {
        self.sink_for(brokers, None)
    }

    /// What gives a batch on `brokers` a new producer when its own turns fatal.
    pub(crate) fn renewal<'a>(&'a self, brokers: &'a str) -> impl Renew + 'a {
        Renewal {
            relay: self,
            brokers,
            event_source_arn: None,
        }
    }

    /// Drops `sink` as the producer (after a fatal error): the next batch creates a new
    /// one. librdkafka's teardown may block, so it runs off the async workers.
    pub(crate) fn retire(&self, sink: Arc<Sink>) {
        if let Ok(mut slot) = self.sink.lock() {
            if slot.as_ref().is_some_and(|p| Arc::ptr_eq(&p.sink, &sink)) {
                *slot = None;
            }
        }
        tokio::task::spawn_blocking(move || drop(sink));
    }

    /// The producer if it exists (for flushing at shutdown).
    pub fn sink(&self) -> Option<Arc<Sink>> {
        self.sink
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(|p| p.sink.clone()))
    }

    /// Runs one batch from `origin` through the pipeline, producing to `RELAY_BROKERS`
    /// (else the origin's `bootstrapServers`). `deadline` is when the batch must have
    /// answered: the relay stops waiting `RELAY_DEADLINE_MARGIN_MS` before it.
    /// `xray_trace_id` is added to every message. What every mode with a deadline calls.
    pub(crate) async fn run(
        &self,
        origin: EventOrigin,
        records: Vec<SourceRecord>,
        deadline: Option<SystemTime>,
        xray_trace_id: Option<String>,
    ) -> Result<BatchOutcome, Error> {
        let started = Instant::now();
        let remaining_ms = deadline.map(|d| {
            d.duration_since(SystemTime::now())
                .map_or(0, |r| r.as_millis() as u64)
        });
        let brokers = match (&self.settings.brokers, &origin.bootstrap_servers) {
            (Some(b), _) => b.clone(),
            (None, Some(b)) if !b.trim().is_empty() => b.clone(),
            _ => {
                if records.is_empty() {
                    return Ok(BatchOutcome::default());
                }
                return Err(Error::NoBrokers);
            }
        };
        let margin = self.settings.pipeline.deadline_margin;
        if self.scram_refetch_due() && self.sink().is_some_and(|sink| sink.take_login_refused()) {
            let budget = deadline.map(|d| budget_instant(d, margin));
            self.refetch_scram_secret(budget).await;
        }
        let sink = self.sink_for(&brokers, origin.event_source_arn.as_deref())?;
        let context = BatchContext {
            origin,
            budget: deadline.map(|d| budget_instant(d, margin)),
            settle_by: deadline.map(|d| budget_instant(d, margin / 2)),
            xray_trace_id,
            // Lambda's payload limit bounds a record already.
            max_record_bytes: None,
            condemned: Default::default(),
        };
        let renewal = Renewal {
            relay: self,
            brokers: &brokers,
            event_source_arn: context.origin.event_source_arn.as_deref(),
        };
        let outcome = self.pipeline.run(sink, &renewal, &context, records).await;
        if let Some(sink) = self.sink() {
            if let Some(fatal) = sink.fatal_error() {
                tracing::warn!(
                    error = %fatal,
                    "the producer is in a fatal state: records not acknowledged are reported, \
                     and the next batch gets a new producer"
                );
                self.retire(sink);
            }
        }
        tracing::info!(
            records = outcome.records,
            produced = outcome.produced,
            messages = outcome.messages,
            dead_lettered = outcome.dead_lettered,
            skipped = outcome.skipped_total(),
            not_done = outcome.not_done,
            elapsed_ms = started.elapsed().as_millis() as u64,
            deadline_in_ms = remaining_ms,
            "batch finished"
        );
        Ok(outcome)
    }

    /// Whether [`Relay::refetch_scram_secret`] may fetch now (the last fetch is at least
    /// [`SECRET_REFETCH_INTERVAL`] old): a login refusal is taken only then, so that one
    /// seen within the interval waits for it instead of being forgotten.
    pub(crate) fn scram_refetch_due(&self) -> bool {
        self.last_secret_fetch
            .lock()
            .map_or(true, |last| !fetched_recently(*last))
    }

    /// Before a batch, when the brokers refused a client's login: with
    /// `RELAY_AUTH=scram` and a secret in Secrets Manager, fetches the secret again (it
    /// may have been rotated), at most once per [`SECRET_REFETCH_INTERVAL`] and within a
    /// quarter of the batch's budget; when it changed, the producer is retired so this
    /// batch logs in with the new one. Whether it changed (`serve` then makes its
    /// consumer again).
    pub(crate) async fn refetch_scram_secret(&self, budget: Option<Instant>) -> bool {
        let (Some(arn), AuthMode::Scram) = (
            self.settings.auth.scram_secret_arn.as_deref(),
            self.settings.auth.mode,
        ) else {
            return false;
        };
        let Some(aws) = self.credentials.read().ok().and_then(|c| c.aws.clone()) else {
            return false;
        };
        if let Ok(mut last) = self.last_secret_fetch.lock() {
            if fetched_recently(*last) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let left = budget.map_or(SECRET_FETCH_TIMEOUT, |b| {
            b.saturating_duration_since(Instant::now()) / 4
        });
        let fetched = tokio::time::timeout(left, fetch_scram_secret(&aws, arn)).await;
        let fresh = match fetched {
            Ok(Ok(fresh)) => fresh,
            Ok(Err(error)) => {
                tracing::warn!(%error, "login refused; fetching the SCRAM secret again failed");
                return false;
            }
            Err(_) => {
                tracing::warn!("login refused; no time left in this invocation to fetch the SCRAM secret again");
                return false;
            }
        };
        let Ok(mut credentials) = self.credentials.write() else {
            return false;
        };
        if credentials.scram.as_ref() == Some(&fresh) {
            tracing::warn!("login refused with the current SCRAM secret; it has not changed");
            return false;
        }
        tracing::info!("login refused: the SCRAM secret changed; the next batch uses the new one");
        credentials.scram = Some(fresh);
        drop(credentials);
        if let Some(sink) = self.sink() {
            self.retire(sink);
        }
        true
    }
}

/// Gives the pipeline's recovery round a new producer: the fatal one is retired and the
/// next is made as the first was.
struct Renewal<'a> {
    relay: &'a Relay,
    brokers: &'a str,
    event_source_arn: Option<&'a str>,
}

impl Renew for Renewal<'_> {
    fn renew(&self, failed: &Arc<Sink>) -> Result<Arc<Sink>, Error> {
        if let Some(fatal) = failed.fatal_error() {
            tracing::warn!(error = %fatal, "the producer is in a fatal state: replacing it");
        }
        self.relay.retire(failed.clone());
        self.relay.sink_for(self.brokers, self.event_source_arn)
    }
}

/// The producer of a relay, with what it was made for.
#[derive(Debug)]
struct Producer {
    sink: Arc<Sink>,
    brokers: String,
    mode: AuthMode,
}

/// The instant `margin` before a wall-clock deadline (now, if that has passed).
pub(crate) fn budget_instant(deadline: SystemTime, margin: Duration) -> Instant {
    let remaining = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(margin);
    Instant::now() + remaining
}
