//! Integration tests: the handler against librdkafka's mock cluster (a real Kafka
//! protocol peer in-process). One test binary keeps link time down.

mod util;

mod auth;
mod chaos;
mod delivery;
#[cfg(feature = "esm")]
mod esm;
mod events;
mod observability;
mod ordering;
mod reliability;
mod retry_loop;
mod serve;
mod transform;
mod trust;
