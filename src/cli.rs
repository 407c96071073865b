//! The commands of the binary: the Lambda runtime loop, `serve`, and the local tools
//! (`invoke`, `replay`, `check-routes`, `schema`, `gen-event`). Each builds the one
//! [`Relay`] (through the mode it runs) and reports; `anyhow` only here, at the edge.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use lambda_runtime::LambdaEvent;

use cdc_relay::config::{Overrides, Settings};
use cdc_relay::dms::{Change, ChangeEvent, Decoder};
use cdc_relay::generate::{generate, GenOptions};
use cdc_relay::modes::lambda::payload::{Payloads, RawPayloadLayer};
use cdc_relay::modes::lambda::Function;
use cdc_relay::modes::local::{self, EmbeddedKafka};
use cdc_relay::modes::serve::{Server, SHUTDOWN_EPILOGUE};
use cdc_relay::ops;
use cdc_relay::relay::Relay;
use cdc_relay::source::{MskEvent, LAMBDA_PAYLOAD_LIMIT};
use cdc_relay::transform::tabledef::TableDef;
use cdc_relay::transform::Routes;

pub async fn run_lambda() -> anyhow::Result<()> {
    let function = Arc::new(Function::init(Settings::from_env()?).await?);
    let shutdown_function = function.clone();
    lambda_runtime::spawn_graceful_shutdown_handler(move || async move {
        if let Some(sink) = shutdown_function.relay().sink() {
            let _ = sink.flush(Duration::from_millis(500));
        }
    })
    .await;
    // The runtime's own tracing layer outermost, as `lambda_runtime::run` has it; the
    // payload taken as bytes inside it.
    let payloads = Payloads::default();
    let handler_payloads = payloads.clone();
    lambda_runtime::Runtime::new(lambda_runtime::service_fn(move |event: LambdaEvent<()>| {
        let (function, payloads) = (function.clone(), handler_payloads.clone());
        async move { function.handle_payload(event, &payloads).await }
    }))
    .layer(RawPayloadLayer::new(payloads))
    .layer(lambda_runtime::layers::TracingLayer::new())
    .run()
    .await
    .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}

pub async fn serve() -> anyhow::Result<()> {
    let (serve_settings, settings) = Server::settings_from(std::env::vars().collect())?;
    let http = serve_settings.http_addr;
    // The process ends within this of SIGTERM, whatever is still blocked in librdkafka.
    // Counted from the signal itself, watched from the start by a task of its own (the
    // loop may be inside a call that no timeout reaches when it comes).
    let bound = serve_settings.shutdown_timeout + SHUTDOWN_EPILOGUE + LAST_RESORT;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        termination().await;
        exit_after(bound);
        let _ = stop.send(true);
    });
    let relay = Arc::new(Relay::init(settings).await?);
    let server = Server::new(relay, serve_settings)?;
    if let Some(addr) = http {
        ops::listen(addr, server.metrics())
            .await
            .with_context(|| format!("cannot listen on {addr} (RELAY_HTTP_ADDR)"))?;
    }
    let mut stopped = stopped;
    server
        .run(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .await?;
    Ok(())
}

/// What the process may take past `serve`'s own bound (dropping the clients, the
/// runtime's shutdown) before [`exit_after`] ends it.
const LAST_RESORT: Duration = Duration::from_secs(2);

/// Ends the process `bound` from now if it has not ended by then: the last resort when a
/// call that no timeout reaches (closing a client, a broker that never answers) would
/// keep it past the container's stop timeout, where SIGKILL would end it anyway.
fn exit_after(bound: Duration) {
    let spawned = std::thread::Builder::new()
        .name("shutdown-bound".to_owned())
        .spawn(move || {
            std::thread::sleep(bound);
            eprintln!(
                "error: shutdown took longer than {} ms: exiting with calls to the brokers still blocked",
                bound.as_millis()
            );
            std::process::exit(1);
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no shutdown bound: cannot start its thread");
    }
}

/// SIGTERM (what a container runtime sends) or Ctrl-C.
pub async fn termination() {
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

/// librdkafka's mock cluster until standard input ends; its bootstrap servers on
/// stdout's first line. Each line read is a topic to create with `partitions` partitions
/// (the mock cluster does not answer Kafka's CreateTopics; others are created on first
/// use with its default of four).
pub fn mock_cluster(brokers: i32, topics: Vec<String>, partitions: i32) -> anyhow::Result<()> {
    use std::io::{BufRead as _, Write as _};
    let kafka = EmbeddedKafka::start(brokers)?;
    let create = |topic: &str| {
        kafka
            .cluster()
            .create_topic(topic, partitions, 1)
            .with_context(|| format!("cannot create topic {topic}"))
    };
    for topic in &topics {
        create(topic)?;
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", kafka.bootstrap_servers())?;
    stdout.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let topic = line.trim();
        if !topic.is_empty() {
            create(topic)?;
            writeln!(stdout, "created {topic}")?;
            stdout.flush()?;
        }
    }
    Ok(())
}

fn read_event(path: Option<&PathBuf>) -> anyhow::Result<MskEvent> {
    let bytes = match path {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read event file {}", path.display()))?,
        None => local::SAMPLE_EVENT.as_bytes().to_vec(),
    };
    let name = path.map_or_else(|| "<sample event>".to_owned(), |p| p.display().to_string());
    MskEvent::parse(bytes).with_context(|| format!("{name} is not an MSK event"))
}

pub async fn check_routes(
    routes_path: PathBuf,
    event: Option<PathBuf>,
    against: Option<PathBuf>,
) -> anyhow::Result<()> {
    let relay_for = |path: PathBuf| {
        // Nothing is produced: without a key, `hash` may use the published local one.
        let settings = Settings::from_env_with(Overrides {
            routes_path: Some(path.clone()),
            local_hash_key: true,
            ..Overrides::default()
        });
        async move {
            let settings = settings?;
            let routes = Relay::load_routes(&settings).await?;
            eprintln!(
                "{}: valid, {} route(s)",
                path.display(),
                routes.routes.len()
            );
            anyhow::Ok(Relay::with_routes(settings, routes))
        }
    };
    let relay = relay_for(routes_path).await?;
    let old = match against {
        Some(path) => Some(relay_for(path).await?),
        None => None,
    };
    let Some(event) = event else {
        return Ok(());
    };
    let MskEvent { origin, records } = read_event(Some(&event))?;
    let new = local::dry_run(relay.pipeline(), &origin, &records);
    let Some(old) = old else {
        for line in new {
            println!("{line}");
        }
        return Ok(());
    };
    let old = local::dry_run(old.pipeline(), &origin, &records);
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

pub fn schema(routes_path: PathBuf) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let routes = Routes::load_with_dlq(&routes_path, settings.routes.dlq_topic.clone())?;
    let schemas = cdc_relay::transform::schema::schemas(&routes);
    println!("{}", serde_json::to_string_pretty(&schemas)?);
    Ok(())
}

/// `[route.types]` from the table definitions of the control records in `event`: the
/// latest definition of each table (by DMS's timestamp), in the order the tables first
/// appear, each suggested type tried on the table's data records in the event. A record
/// that is not DMS's or a control record whose definition is malformed is skipped with
/// a warning.
pub fn types(event: PathBuf, routes: Option<PathBuf>) -> anyhow::Result<()> {
    let routes = routes.map(|path| Routes::load(&path)).transpose()?;
    let records = read_event(Some(&event))?.records;
    let decoder = Decoder::default();
    let values: Vec<(String, Vec<u8>)> = records
        .iter()
        .filter_map(|record| {
            let at = format!(
                "{}-{} offset {}",
                record.topic, record.partition, record.offset
            );
            match record.decode() {
                Ok(decoded) => decoded.value.map(|value| (at, value)),
                Err(error) => {
                    eprintln!("{at}: skipped: {error}");
                    None
                }
            }
        })
        .collect();
    // Each value decoded once; `check-routes` says what is wrong with one not DMS's.
    let changes: Vec<(&str, ChangeEvent<'_>)> = values
        .iter()
        .filter_map(|(at, value)| Some((at.as_str(), decoder.decode(value).ok()?)))
        .collect();
    let mut defs: Vec<TableDef> = Vec::new();
    for (at, change) in &changes {
        let def = match TableDef::of(change) {
            Ok(Some(def)) => def,
            Ok(None) => continue,
            Err(error) => {
                eprintln!("{at}: skipped: {error}");
                continue;
            }
        };
        match defs.iter_mut().find(|d| d.qualified() == def.qualified()) {
            Some(known) if known.timestamp > def.timestamp => {}
            Some(known) => *known = def,
            None => defs.push(def),
        }
    }
    anyhow::ensure!(
        !defs.is_empty(),
        "{} holds no table definition: DMS sends one in control records when the \
         endpoint sets IncludeControlDetails",
        event.display()
    );
    for (_, change) in &changes {
        let Change::Data { data, .. } = &change.change else {
            continue;
        };
        let qualified = format!("{}.{}", change.schema, change.table);
        if let Some(def) = defs.iter_mut().find(|d| d.qualified() == qualified) {
            def.try_on(data);
        }
    }
    for def in &defs {
        // Only a `[[route]]` of the file: the unrouted policy has none to add types to.
        let route = routes.as_ref().and_then(|r| {
            r.routes
                .iter()
                .find(|route| route.matches(&def.qualified()))
        });
        if routes.is_some() && route.is_none() {
            println!("# no [[route]] takes {}", def.qualified().escape_debug());
        }
        println!("{}", def.route_types(route));
    }
    Ok(())
}

pub async fn invoke(
    event: Option<PathBuf>,
    brokers: Option<String>,
    print_messages: bool,
    timeout_ms: u64,
) -> anyhow::Result<()> {
    let payload = read_event(event.as_ref())?;

    // The embedded cluster must outlive the producer: it lives until this function returns.
    let mut embedded = None;
    let mut overrides = Overrides {
        brokers,
        ..Overrides::default()
    };
    let no_brokers = std::env::var("RELAY_BROKERS").map_or(true, |b| b.trim().is_empty());
    if overrides.brokers.is_none() && no_brokers {
        let kafka = EmbeddedKafka::start(1)?;
        overrides.brokers = Some(kafka.bootstrap_servers());
        embedded = Some(kafka);
        // Only the in-process cluster sees these messages: without a key, `hash` may
        // use the published local one.
        overrides.local_hash_key = true;
    }
    let settings = Settings::from_env_with(overrides)?;
    let brokers = settings.brokers.clone().unwrap_or_default();
    let function = Function::init(settings).await?;
    // The same entry point Lambda calls: span, cold-start flag, metrics, answer.
    let invocation = function
        .invoke(LambdaEvent::new(
            payload,
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
    drop(function);
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

pub fn gen_event(options: GenOptions, out: Option<PathBuf>) -> anyhow::Result<()> {
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
pub async fn replay(
    events: Vec<PathBuf>,
    brokers: Option<String>,
    rounds: usize,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let settings = Settings::from_env_with(Overrides {
        brokers,
        ..Overrides::default()
    })?;
    anyhow::ensure!(
        settings.brokers.is_some(),
        "replay needs --brokers or RELAY_BROKERS"
    );
    let function = Function::init(settings).await?;
    println!(
        "{}",
        serde_json::json!({"init_ms": started.elapsed().as_secs_f64() * 1e3})
    );
    for round in 0..rounds {
        for path in &events {
            let t = std::time::Instant::now();
            let text =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            // As in Lambda, the event is parsed from the payload's bytes, its records'
            // keys and values slices of them.
            let event = MskEvent::parse(text)
                .with_context(|| format!("{} is not an MSK event", path.display()))?;
            let parse_ms = t.elapsed().as_secs_f64() * 1e3;
            let invocation = function
                .invoke(LambdaEvent::new(event, local_context("replay", 60_000)))
                .await;
            let outcome = invocation.outcome.unwrap_or_default();
            println!(
                "{}",
                serde_json::json!({
                    "round": round, "event": path.display().to_string(), "ms": t.elapsed().as_secs_f64() * 1e3,
                    "parse_ms": parse_ms, "transform_ms": outcome.transform_ms, "produce_ms": outcome.produce_ms,
                    "records": outcome.records, "messages": outcome.messages, "most_in_flight": outcome.most_in_flight,
                    "ok": invocation.response.is_ok(),
                })
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the copy of this test binary that [`exit_after`] runs in.
    const CHILD: &str = "CDC_RELAY_EXIT_AFTER_CHILD";

    /// The last resort ends the process (status 1, saying why) at its bound, whatever
    /// the process is doing: the test runs itself again as a child that sets a bound of
    /// 300 ms and then blocks for 20 s, as a call no timeout reaches would.
    #[test]
    fn the_last_resort_ends_the_process_at_its_bound() {
        if std::env::var_os(CHILD).is_some() {
            exit_after(Duration::from_millis(300));
            std::thread::sleep(Duration::from_secs(20));
            return;
        }
        let started = std::time::Instant::now();
        let output = std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "--exact",
                "cli::tests::the_last_resort_ends_the_process_at_its_bound",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .expect("the child runs");
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("shutdown took longer than 300 ms"),
            "{stderr}"
        );
        assert!(
            took < Duration::from_secs(10),
            "the child ended after {took:?}"
        );
    }
}
