//! `serve`'s operations endpoints: `/healthz` and Prometheus `/metrics`.
//!
//! - `GET /healthz` (liveness): 200 while the loop makes progress, 503 once it has made
//!   none for `RELAY_LIVENESS_TIMEOUT_MS`. Progress is a batch that got records done
//!   (exactly once: committed), or nothing left to read: the group is joined and every
//!   assigned partition was fetched to its end from a leader that is up. A batch in
//!   flight for longer than the bound is no progress either. The JSON body says whether
//!   the process is ready and how long ago it last made progress.
//! - `GET /healthz/ready` (readiness): 200 when partitions are assigned, the producer
//!   has reached a broker and the loop is live, else 503.
//! - `GET /metrics`: the counters below in the Prometheus text format.
//!
//! At the connection cap, the oldest connection is closed for the new one: idle
//! connections cannot keep the container's own health check out.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

/// Connections served at once; past it, the oldest is closed for the new one.
const MAX_CONNECTIONS: usize = 32;

/// How long a client has to send its request headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The connections open, oldest first: an id and what closes it.
type Open = VecDeque<(u64, Arc<Notify>)>;

/// How long the loop may go without progress before `/healthz` fails, unless
/// `RELAY_LIVENESS_TIMEOUT_MS` says otherwise.
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(120);

/// A source partition, as a metric label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
}

/// What a serving process counts, and whether it is ready.
pub struct Metrics {
    registry: Registry,
    /// Source records processed (each attempt counts).
    pub records: Counter,
    /// Records whose messages were all acknowledged (exactly once: and committed).
    pub produced: Counter,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: Counter,
    /// Records the routes skip.
    pub skipped: Counter,
    /// Records not done in their batch, read again after a backoff.
    pub failed: Counter,
    /// Transactions aborted (exactly once).
    pub aborted: Counter,
    /// Seconds from a batch's processing start to its commit.
    pub batch_seconds: Histogram,
    /// Consumer lag per assigned partition, from librdkafka's statistics.
    pub lag: Family<PartitionLabel, Gauge>,
    /// Partitions assigned to this member.
    pub assigned: Gauge,
    /// Whether the producer has reached a broker.
    pub producer_ready: AtomicBool,
    /// When the loop last made progress, and whether a batch is in flight.
    liveness: Liveness,
}

/// Progress, in milliseconds since the metrics were made.
struct Liveness {
    start: Instant,
    /// The last progress.
    progress_ms: AtomicU64,
    /// When the batch in flight started, plus one (0: none in flight).
    batch_ms: AtomicU64,
    /// How long the loop may go without progress.
    bound_ms: AtomicU64,
}

impl Liveness {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// The metrics, registered under the `cdc_relay` prefix.
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cdc_relay");
        let metrics = Metrics {
            records: Counter::default(),
            produced: Counter::default(),
            dead_lettered: Counter::default(),
            skipped: Counter::default(),
            failed: Counter::default(),
            aborted: Counter::default(),
            // 1 ms to about 33 s.
            batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            lag: Family::default(),
            assigned: Gauge::default(),
            producer_ready: AtomicBool::new(false),
            liveness: Liveness {
                start: Instant::now(),
                progress_ms: AtomicU64::new(0),
                batch_ms: AtomicU64::new(0),
                bound_ms: AtomicU64::new(LIVENESS_TIMEOUT.as_millis() as u64),
            },
            registry: Registry::default(),
        };
        let counters: [(&str, &str, &Counter); 6] = [
            (
                "records",
                "Source records processed (retries count again)",
                &metrics.records,
            ),
            (
                "records_produced",
                "Records whose messages the broker acknowledged",
                &metrics.produced,
            ),
            (
                "records_dead_lettered",
                "Records sent to the dead-letter topic",
                &metrics.dead_lettered,
            ),
            (
                "records_skipped",
                "Records the routes skip",
                &metrics.skipped,
            ),
            (
                "records_failed",
                "Records not done in their batch, read again after a backoff",
                &metrics.failed,
            ),
            (
                "transactions_aborted",
                "Transactions aborted (exactly once)",
                &metrics.aborted,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "batch_seconds",
            "Seconds from a batch's start to its commit",
            metrics.batch_seconds.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records between the committed offset and the end of each assigned source partition",
            metrics.lag.clone(),
        );
        registry.register(
            "assigned_partitions",
            "Source partitions assigned to this member",
            metrics.assigned.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Ready: partitions are assigned, the producer has reached a broker and the loop
    /// is live.
    pub(crate) fn ready(&self) -> bool {
        self.assigned.get() > 0 && self.producer_ready.load(Ordering::Relaxed) && self.live()
    }

    /// How long the loop may go without progress before it is no longer live.
    pub(crate) fn set_liveness_timeout(&self, bound: Duration) {
        self.liveness
            .bound_ms
            .store(bound.as_millis() as u64, Ordering::Relaxed);
    }

    /// The loop made progress: records done, or nothing left to read.
    pub(crate) fn progress(&self) {
        let now = self.liveness.now_ms();
        self.liveness.progress_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// A batch starts (`true`) or ends (`false`).
    pub(crate) fn in_flight(&self, started: bool) {
        let at = if started {
            self.liveness.now_ms().saturating_add(1)
        } else {
            0
        };
        self.liveness.batch_ms.store(at, Ordering::Relaxed);
    }

    /// How long ago the loop last made progress (a batch in flight for longer counts
    /// from its start).
    pub fn since_progress(&self) -> Duration {
        let live = &self.liveness;
        let now = live.now_ms();
        let since = now.saturating_sub(live.progress_ms.load(Ordering::Relaxed));
        let batch = match live.batch_ms.load(Ordering::Relaxed) {
            0 => 0,
            started => now.saturating_sub(started - 1),
        };
        Duration::from_millis(since.max(batch))
    }

    /// Live: progress within the bound.
    pub fn live(&self) -> bool {
        self.since_progress().as_millis() as u64 <= self.liveness.bound_ms.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Serves `/healthz`, `/healthz/ready` and `/metrics` on `addr` until the process ends.
/// Returns once the listener is bound (the address in use, for port 0).
pub async fn listen(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "serving /healthz and /metrics");
    // At most this many connections at once, each with a few seconds to send its
    // request: a slow or hostile client cannot take the descriptors librdkafka needs.
    // Past the cap the oldest connection is closed, so idle ones cannot keep a health
    // check out.
    let open: Arc<Mutex<Open>> = Arc::default();
    tokio::spawn(async move {
        let mut next = 0u64;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors, for example: wait instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection on the metrics listener");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (id, close) = (next, Arc::new(Notify::new()));
            next = next.wrapping_add(1);
            if let Ok(mut open) = open.lock() {
                if open.len() >= MAX_CONNECTIONS {
                    if let Some((_, oldest)) = open.pop_front() {
                        // A permit: the connection ends even if it is not waiting yet.
                        oldest.notify_one();
                    }
                }
                open.push_back((id, close.clone()));
            }
            let (metrics, open) = (metrics.clone(), open.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, Infallible>(respond(&request, &metrics)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(REQUEST_TIMEOUT)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::select! {
                    _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection) => {}
                    () = close.notified() => {}
                }
                if let Ok(mut open) = open.lock() {
                    open.retain(|(other, _)| *other != id);
                }
            });
        }
    });
    Ok(bound)
}

/// The health endpoint of the serving process beside this one (the container health
/// check runs in its container, with its environment), from its `RELAY_HTTP_ADDR`:
/// unset, serve's default port 8080; an address that listens everywhere (`0.0.0.0`,
/// `::`) is asked on loopback. `Err` when serve listens nowhere (`off`).
pub fn health_url(http_addr: Option<&str>) -> Result<String, String> {
    let addr: std::net::SocketAddr = match http_addr.map(str::trim) {
        None => return Ok("http://127.0.0.1:8080/healthz".to_owned()),
        Some("" | "off") => {
            return Err("RELAY_HTTP_ADDR is off: serve answers no health probe".to_owned())
        }
        Some(text) => text
            .parse()
            .map_err(|_| format!("RELAY_HTTP_ADDR={text:?} is not HOST:PORT"))?,
    };
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    Ok(format!(
        "http://{}/healthz",
        std::net::SocketAddr::new(ip, addr.port())
    ))
}

/// Asks a serving process's `/healthz` (the container health check: the image has no
/// shell or curl). `Ok(true)` on 200.
pub async fn probe(url: &str, timeout: std::time::Duration) -> Result<bool, crate::Error> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| crate::Error::Invoke(format!("{url}: {e}")))?;
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let request = hyper::Request::get(uri)
        .body(Full::new(Bytes::new()))
        .map_err(|e| crate::Error::Invoke(e.to_string()))?;
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) => Ok(response.status() == StatusCode::OK),
        Ok(Err(e)) => Err(crate::Error::Invoke(format!("{url}: {e}"))),
        Err(_) => Err(crate::Error::Invoke(format!(
            "{url}: no answer within {timeout:?}"
        ))),
    }
}

fn respond<B>(request: &Request<B>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method().as_str(), request.uri().path()) {
        ("GET", "/healthz") => (
            if metrics.live() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            "application/json",
            format!(
                r#"{{"live":{},"ready":{},"assigned_partitions":{},"since_progress_ms":{}}}"#,
                metrics.live(),
                metrics.ready(),
                metrics.assigned.get(),
                metrics.since_progress().as_millis()
            ),
        ),
        ("GET", "/healthz/ready") if metrics.ready() => {
            (StatusCode::OK, "text/plain", "ready\n".to_owned())
        }
        ("GET", "/healthz/ready") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready: no partitions assigned, no broker reached yet, or no progress\n".to_owned(),
        ),
        ("GET", "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The health check asks where serve listens: its RELAY_HTTP_ADDR, on loopback when
    /// that is every address; it refuses to guess when serve listens nowhere.
    #[test]
    fn the_health_check_asks_where_serve_listens() {
        let url = |addr: Option<&str>| health_url(addr);
        assert_eq!(url(None).as_deref(), Ok("http://127.0.0.1:8080/healthz"));
        assert_eq!(
            url(Some("0.0.0.0:9090")).as_deref(),
            Ok("http://127.0.0.1:9090/healthz")
        );
        assert_eq!(
            url(Some("[::]:9090")).as_deref(),
            Ok("http://[::1]:9090/healthz")
        );
        assert_eq!(
            url(Some(" 10.0.0.7:8081 ")).as_deref(),
            Ok("http://10.0.0.7:8081/healthz")
        );
        assert!(url(Some("off")).is_err_and(|e| e.contains("off")));
        assert!(url(Some("localhost")).is_err());
    }
}
