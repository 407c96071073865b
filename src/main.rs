//! The `cdc-relay` binary: the Lambda bootstrap and the local tools.
//!
//! In Lambda (`AWS_LAMBDA_RUNTIME_API` set) it runs the runtime loop. Locally,
//! `cdc-relay invoke [EVENT]` runs one invocation through the same handler, against
//! `--brokers` or an embedded in-process Kafka.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use aws_lambda_events::event::kafka::KafkaEvent;
use clap::{Parser, Subcommand};
use lambda_runtime::LambdaEvent;
use tracing_subscriber::EnvFilter;

use cdc_relay::config::{ServeSettings, Settings};
use cdc_relay::dms::Decoder;
use cdc_relay::esm::{EsmOptions, Mapping};
use cdc_relay::generate::{generate, GenOptions, LAMBDA_PAYLOAD_LIMIT};
use cdc_relay::handler::Relay;
use cdc_relay::local::{self, EmbeddedKafka};
use cdc_relay::ops;
use cdc_relay::pipeline::{Pipeline, PipelineOptions};
use cdc_relay::serve::Server;
use cdc_relay::source::{self, MskEvent};
use cdc_relay::transform::{Routes, Transformer};

#[derive(Parser)]
#[command(
    name = "cdc-relay",
    version,
    about = "AWS DMS change records on MSK -> routed domain events"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one invocation over an MSK event file and print the function's response.
    Invoke {
        /// MSK event JSON; default: the embedded sample event.
        event: Option<PathBuf>,
        /// Downstream brokers (`host:port,...`); default: RELAY_BROKERS, else an embedded Kafka.
        #[arg(long)]
        brokers: Option<String>,
        /// Print every produced message, as read back from the broker, one JSON line each.
        #[arg(long)]
        print_messages: bool,
        /// Invocation deadline the handler sees, in milliseconds.
        #[arg(long, default_value_t = 60_000)]
        timeout_ms: u64,
    },
    /// Run MSK event files through the handler one after another, as warm invocations
    /// of one execution environment; print one JSON line of timings per invocation.
    Replay {
        /// Event files, invoked in this order.
        #[arg(required = true)]
        events: Vec<PathBuf>,
        /// Downstream brokers; default RELAY_BROKERS.
        #[arg(long)]
        brokers: Option<String>,
        /// Invoke the whole list this many times.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// Validate a routes file and, given an MSK event, print what each record becomes;
    /// with --against, what a change of routes does to each record instead.
    CheckRoutes {
        /// The routes file.
        routes: PathBuf,
        /// An MSK event to run through the routes (nothing is produced).
        event: Option<PathBuf>,
        /// The routes deployed now: print, per record, the messages the change adds,
        /// removes or changes (field by field).
        #[arg(long, requires = "event")]
        against: Option<PathBuf>,
    },
    /// Print, per output topic, the JSON Schema of the event values a routes file produces.
    Schema {
        /// The routes file.
        routes: PathBuf,
    },
    /// Run as a long-lived consumer: read the DMS topics with a consumer group, relay
    /// them through the same pipeline, commit what is done (configured by environment:
    /// RELAY_SOURCE_TOPICS, RELAY_GROUP_ID, RELAY_SOURCE_BROKERS, RELAY_EXACTLY_ONCE...).
    Serve,
    /// Exit 0 when a serving process's health endpoint answers 200 (the container
    /// health check; the image has no shell or curl).
    Health {
        /// The endpoint: /healthz (live) or /healthz/ready.
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    /// Run Lambda's Kafka event source mapping locally: poll the DMS topics and invoke a
    /// function endpoint (`cargo lambda watch`) with MSK events, honouring its answers.
    Esm {
        #[command(flatten)]
        options: EsmOptions,
    },
    /// Write a synthetic MSK event of DMS records (deterministic per seed).
    GenEvent {
        #[command(flatten)]
        options: GenOptions,
        /// Output file; default stdout.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let _log_guard = init_logging();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    match cli.command {
        Some(Command::Invoke {
            event,
            brokers,
            print_messages,
            timeout_ms,
        }) => runtime.block_on(invoke(event, brokers, print_messages, timeout_ms)),
        Some(Command::CheckRoutes {
            routes,
            event,
            against,
        }) => runtime.block_on(check_routes(routes, event, against)),
        Some(Command::Schema { routes }) => schema(routes),
        Some(Command::Replay {
            events,
            brokers,
            rounds,
        }) => runtime.block_on(replay(events, brokers, rounds)),
        Some(Command::GenEvent { options, out }) => gen_event(options, out),
        Some(Command::Serve) => runtime.block_on(serve()),
        Some(Command::Health { url }) => {
            let healthy = runtime.block_on(ops::probe(&url, Duration::from_secs(3)))?;
            anyhow::ensure!(healthy, "{url} is not healthy");
            Ok(())
        }
        Some(Command::Esm { options }) => runtime.block_on(async {
            Mapping::new(options)?.run(termination()).await?;
            anyhow::Ok(())
        }),
        None if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() => {
            runtime.block_on(run_lambda())
        }
        None => {
            use clap::CommandFactory;
            Cli::command().print_help()?;
            std::process::exit(2);
        }
    }
}

/// Logs go to stderr (stdout carries the response and the metrics) through a
/// non-blocking writer, so logging never stalls the runtime under load; JSON when
/// Lambda's advanced logging controls ask for it. Level: AWS_LAMBDA_LOG_LEVEL, then
/// RUST_LOG, then info. The guard flushes the writer when dropped.
fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|l| l.to_ascii_lowercase())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.with_ansi(false).init();
    }
    guard
}

async fn run_lambda() -> anyhow::Result<()> {
    let relay = Arc::new(Relay::init(Settings::from_env()?).await?);
    let shutdown_relay = relay.clone();
    lambda_runtime::spawn_graceful_shutdown_handler(move || async move {
        if let Some(sink) = shutdown_relay.sink() {
            let _ = sink.flush(Duration::from_millis(500));
        }
    })
    .await;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        let relay = relay.clone();
        async move { relay.handle(event).await }
    }))
    .await
    .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}

async fn serve() -> anyhow::Result<()> {
    let serve_settings = ServeSettings::from_env()?;
    let mut settings = Settings::from_env()?;
    settings
        .producer_overrides
        .extend(Server::producer_overrides(&serve_settings));
    let http = serve_settings.http_addr;
    let relay = Arc::new(Relay::init(settings).await?);
    let server = Server::new(relay, serve_settings)?;
    if let Some(addr) = http {
        ops::listen(addr, server.metrics())
            .await
            .with_context(|| format!("cannot listen on {addr} (RELAY_HTTP_ADDR)"))?;
    }
    server.run(termination()).await?;
    Ok(())
}

/// SIGTERM (what a container runtime sends) or Ctrl-C.
async fn termination() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
    }
}

fn read_event(path: Option<&PathBuf>) -> anyhow::Result<KafkaEvent> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read event file {}", path.display()))?,
        None => local::SAMPLE_EVENT.to_owned(),
    };
    let name = path.map_or_else(|| "<sample event>".to_owned(), |p| p.display().to_string());
    serde_json::from_str::<source::MskEvent>(&text)
        .map(|e| e.0)
        .with_context(|| format!("{name} is not an MSK event"))
}

async fn check_routes(
    routes_path: PathBuf,
    event: Option<PathBuf>,
    against: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut settings = Settings::from_env()?;
    // Nothing is produced: without a key, `hash` may use the published local one.
    settings.local_hash_key = true;
    let pipeline_for = |path: PathBuf| {
        let mut settings = settings.clone();
        settings.routes_path = Some(path.clone());
        async move {
            let routes = Relay::load_routes(&settings).await?;
            eprintln!(
                "{}: valid, {} route(s)",
                path.display(),
                routes.routes.len()
            );
            anyhow::Ok(Pipeline::new(
                Decoder::new(settings.before_image_field.clone()),
                Transformer::new(routes),
                PipelineOptions {
                    concurrency: 1,
                    chunk_size: settings.chunk_size,
                    ..PipelineOptions::default()
                },
            ))
        }
    };
    let pipeline = pipeline_for(routes_path).await?;
    let old = match against {
        Some(path) => Some(pipeline_for(path).await?),
        None => None,
    };
    let Some(event) = event else {
        return Ok(());
    };
    let (origin, records) = source::records(read_event(Some(&event))?);
    let new = local::dry_run(&pipeline, &origin, &records);
    let Some(old) = old else {
        for line in new {
            println!("{line}");
        }
        return Ok(());
    };
    let old = local::dry_run(&old, &origin, &records);
    let report = local::compare_runs(&old, &new);
    for line in &report.lines {
        println!("{line}");
    }
    eprintln!(
        "{} record(s): {} unchanged, {} changed ({} message(s) added, {} removed, {} changed)",
        records.len(),
        records.len() - report.changed_records,
        report.changed_records,
        report.added,
        report.removed,
        report.changed,
    );
    Ok(())
}

fn schema(routes_path: PathBuf) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let routes = Routes::load_with_dlq(&routes_path, settings.dlq_topic.clone())?;
    let schemas = cdc_relay::transform::schema::schemas(&routes);
    println!("{}", serde_json::to_string_pretty(&schemas)?);
    Ok(())
}

async fn invoke(
    event: Option<PathBuf>,
    brokers: Option<String>,
    print_messages: bool,
    timeout_ms: u64,
) -> anyhow::Result<()> {
    let payload = read_event(event.as_ref())?;

    let mut settings = Settings::from_env()?;
    // The embedded cluster must outlive the producer: it lives until this function returns.
    let mut embedded = None;
    if let Some(brokers) = brokers {
        settings.brokers = Some(brokers);
    } else if settings.brokers.is_none() {
        let kafka = EmbeddedKafka::start(1)?;
        settings.brokers = Some(kafka.bootstrap_servers());
        embedded = Some(kafka);
        // Only the in-process cluster sees these messages: without a key, `hash` may
        // use the published local one.
        settings.local_hash_key = true;
    }
    let brokers = settings.brokers.clone().unwrap_or_default();
    let relay = Relay::init(settings).await?;
    // The same entry point Lambda calls: span, cold-start flag, metrics, answer.
    let invocation = relay
        .invoke(LambdaEvent::new(
            MskEvent(payload),
            local_context("local-invoke", timeout_ms),
        ))
        .await;
    if print_messages {
        let deliveries = invocation
            .outcome
            .as_ref()
            .map_or(&[][..], |o| o.deliveries.as_slice());
        for message in local::read_back(&brokers, deliveries, Duration::from_secs(30))? {
            println!("{}", message.to_json());
        }
    }
    let result = invocation.response;
    drop(relay);
    drop(embedded);
    match result {
        Ok(response) => {
            println!("{}", serde_json::to_string(&response)?);
            Ok(())
        }
        Err(error) => {
            let diagnostic = lambda_runtime::Diagnostic::from(error);
            println!(
                "{}",
                serde_json::json!({"errorType": diagnostic.error_type, "errorMessage": diagnostic.error_message})
            );
            std::process::exit(1);
        }
    }
}

/// A Lambda context for a local invocation: a request id and a deadline `timeout_ms`
/// from now.
fn local_context(request_id: &str, timeout_ms: u64) -> lambda_runtime::Context {
    let deadline = SystemTime::now() + Duration::from_millis(timeout_ms);
    let mut context = lambda_runtime::Context::default();
    context.request_id = request_id.to_owned();
    context.deadline = deadline
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    context
}

fn gen_event(options: GenOptions, out: Option<PathBuf>) -> anyhow::Result<()> {
    let text = serde_json::to_string(&generate(&options))?;
    if text.len() > LAMBDA_PAYLOAD_LIMIT {
        eprintln!(
            "note: the event is {} bytes, over Lambda's {} byte invocation payload limit; \
             Lambda would never deliver a batch this large",
            text.len(),
            LAMBDA_PAYLOAD_LIMIT
        );
    }
    match out {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => println!("{text}"),
    }
    Ok(())
}

/// Init (timed), then each event as one invocation: read + parse + handle, timed.
async fn replay(
    events: Vec<PathBuf>,
    brokers: Option<String>,
    rounds: usize,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut settings = Settings::from_env()?;
    if brokers.is_some() {
        settings.brokers = brokers;
    }
    anyhow::ensure!(
        settings.brokers.is_some(),
        "replay needs --brokers or RELAY_BROKERS"
    );
    let relay = Relay::init(settings).await?;
    println!(
        "{}",
        serde_json::json!({"init_ms": started.elapsed().as_secs_f64() * 1e3})
    );
    for round in 0..rounds {
        for path in &events {
            let t = std::time::Instant::now();
            let text =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let event: source::MskEvent = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not an MSK event", path.display()))?;
            // As in Lambda, the payload's bytes are gone once the event is parsed.
            drop(text);
            let parse_ms = t.elapsed().as_secs_f64() * 1e3;
            let invocation = relay
                .invoke(LambdaEvent::new(event, local_context("replay", 60_000)))
                .await;
            let outcome = invocation.outcome.unwrap_or_default();
            println!(
                "{}",
                serde_json::json!({
                    "round": round, "event": path.display().to_string(), "ms": t.elapsed().as_secs_f64() * 1e3,
                    "parse_ms": parse_ms, "transform_ms": outcome.transform_ms, "produce_ms": outcome.produce_ms,
                    "records": outcome.records, "messages": outcome.messages, "ok": invocation.response.is_ok(),
                })
            );
        }
    }
    Ok(())
}
