//! The `cdc-relay` binary: parses the command line and dispatches; the commands live
//! in [`cli`].
//!
//! In Lambda (`AWS_LAMBDA_RUNTIME_API` set) it runs the runtime loop. Locally,
//! `cdc-relay invoke [EVENT]` runs one invocation through the same function, against
//! `--brokers` or an embedded in-process Kafka.

mod cli;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use cdc_relay::generate::GenOptions;
#[cfg(feature = "esm")]
use cdc_relay::modes::esm::{EsmOptions, Mapping};
use cdc_relay::ops;

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
    /// Print `[route.types]` for every table whose DMS table definition an MSK event
    /// holds (control records, with the endpoint's IncludeControlDetails); with
    /// --routes, what the table's route does not declare yet.
    Types {
        /// An MSK event holding DMS control records.
        event: PathBuf,
        /// The routes file the types are for.
        #[arg(long)]
        routes: Option<PathBuf>,
    },
    /// Run as a long-lived consumer: read the DMS topics with a consumer group, relay
    /// them through the same pipeline, commit what is done (configured by environment:
    /// RELAY_SOURCE_TOPICS, RELAY_GROUP_ID, RELAY_SOURCE_BROKERS, RELAY_EXACTLY_ONCE...).
    Serve,
    /// Exit 0 when a serving process's health endpoint answers 200 (the container
    /// health check; the image has no shell or curl).
    Health {
        /// The endpoint: /healthz (live) or /healthz/ready. Default: /healthz at
        /// RELAY_HTTP_ADDR (loopback for 0.0.0.0), else http://127.0.0.1:8080/healthz.
        #[arg(long)]
        url: Option<String>,
    },
    /// Run Lambda's Kafka event source mapping locally: poll the DMS topics and invoke a
    /// function endpoint (`cargo lambda watch`) with MSK events, honouring its answers.
    #[cfg(feature = "esm")]
    Esm {
        #[command(flatten)]
        options: EsmOptions,
    },
    /// Run librdkafka's mock cluster on loopback until standard input ends, printing its
    /// bootstrap servers on the first line; each line read names a topic to create. A
    /// Kafka-protocol broker (groups and transactions included) kept in memory, for
    /// benchmarks (bench/lag.py --broker mock, which states its limits). Not a broker to
    /// keep data in: it keeps the last 5 MiB of each partition.
    MockCluster {
        /// Brokers in the cluster.
        #[arg(long, default_value_t = 1)]
        brokers: i32,
        /// Topics to create first (`a,b,...`); others are created on first use.
        #[arg(long, value_delimiter = ',')]
        topics: Vec<String>,
        /// Partitions of each topic created first.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
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
    let (log_guard, log_dropped) = init_logging();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let result = match cli.command {
        Some(Command::Invoke {
            event,
            brokers,
            print_messages,
            timeout_ms,
        }) => runtime.block_on(cli::invoke(event, brokers, print_messages, timeout_ms)),
        Some(Command::CheckRoutes {
            routes,
            event,
            against,
        }) => runtime.block_on(cli::check_routes(routes, event, against)),
        Some(Command::Schema { routes }) => cli::schema(routes),
        Some(Command::Types { event, routes }) => cli::types(event, routes),
        Some(Command::Replay {
            events,
            brokers,
            rounds,
        }) => runtime.block_on(cli::replay(events, brokers, rounds)),
        Some(Command::GenEvent { options, out }) => cli::gen_event(options, out),
        Some(Command::MockCluster {
            brokers,
            topics,
            partitions,
        }) => cli::mock_cluster(brokers, topics, partitions),
        Some(Command::Serve) => runtime.block_on(cli::serve()),
        Some(Command::Health { url }) => {
            let url = match url {
                Some(url) => url,
                None => ops::health_url(std::env::var("RELAY_HTTP_ADDR").ok().as_deref())
                    .map_err(anyhow::Error::msg)?,
            };
            let healthy = runtime.block_on(ops::probe(&url, Duration::from_secs(3)))?;
            anyhow::ensure!(healthy, "{url} is not healthy");
            Ok(())
        }
        #[cfg(feature = "esm")]
        Some(Command::Esm { options }) => runtime.block_on(async {
            Mapping::new(options)?.run(cli::termination()).await?;
            anyhow::Ok(())
        }),
        None if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() => {
            runtime.block_on(cli::run_lambda())
        }
        None => {
            use clap::CommandFactory;
            Cli::command().print_help()?;
            std::process::exit(2);
        }
    };
    // Calls into librdkafka abandoned at a bounded shutdown may still block tokio's
    // blocking threads: the process does not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(500));
    drop(log_guard);
    let dropped = log_dropped.dropped_lines();
    if dropped > 0 {
        eprintln!("cdc-relay: {dropped} log lines were dropped: stderr did not keep up");
    }
    result
}

/// Log lines the writer holds while stderr catches up; more are dropped (counted by the
/// appender, and said at exit), never waited for. Above Lambda's largest batch (10,000 records), so a batch
/// whose every record fails logs each of them. The buffer is allocated and written in
/// full at start: the appender's default (128,000 lines) is 4 MB of resident memory in
/// every process, 10% of the peak of a 6,000-record invocation.
const LOG_LINES_BUFFERED: usize = 16_384;

/// Logs go to stderr (stdout carries the response and the metrics) through a
/// non-blocking writer, so logging never stalls the runtime under load; JSON when
/// Lambda's advanced logging controls ask for it. Level: AWS_LAMBDA_LOG_LEVEL, then
/// RUST_LOG, then info. The guard flushes the writer when dropped; the counter counts
/// the lines dropped.
fn init_logging() -> (
    tracing_appender::non_blocking::WorkerGuard,
    tracing_appender::non_blocking::ErrorCounter,
) {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|l| l.to_ascii_lowercase())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_LINES_BUFFERED)
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
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
    (guard, dropped)
}
