//! The invocation's payload as bytes: a layer over the Lambda runtime that takes each
//! invocation's body before the runtime would deserialise it.
//!
//! The runtime reads a payload through `serde_path_to_error`, which allocates a string
//! per map key it passes (about 50,000 for a 6,000-record event), into owned types that
//! copy every base64 value. [`RawPayloadLayer`] hands the runtime `null` instead and keeps
//! the bytes, by request id, in [`Payloads`]; the handler takes them from there and
//! parses them itself ([`crate::source::MskEvent::parse`]: one pass, each key and value
//! a slice of the payload).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::LambdaInvocation;

/// What the runtime deserialises in place of a payload: the handler's event is `()`.
const PLACEHOLDER: &[u8] = b"null";

/// At most this many payloads are kept: the runtime runs one invocation at a time, so a
/// payload whose handler never ran (the runtime failed before it) is dropped once this
/// many later ones have come, not kept for the life of the execution environment.
const KEPT: usize = 8;

/// The payloads of the invocations under way, by request id.
#[derive(Debug, Clone, Default)]
pub struct Payloads(Arc<Mutex<VecDeque<(String, Bytes)>>>);

impl Payloads {
    fn put(&self, request_id: String, body: Bytes) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // A request id delivered again (the runtime retrying) replaces its payload.
        kept.retain(|(id, _)| *id != request_id);
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back((request_id, body));
    }

    /// The payload of `request_id`, once: `None` if none was kept.
    pub fn take(&self, request_id: &str) -> Option<Bytes> {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let at = kept.iter().position(|(id, _)| id == request_id)?;
        kept.remove(at).map(|(_, body)| body)
    }
}

/// Keeps each invocation's body in [`Payloads`] and passes `null` on.
#[derive(Debug, Clone)]
pub struct RawPayloadLayer(Payloads);

impl RawPayloadLayer {
    /// A layer that keeps payloads in `payloads`.
    pub fn new(payloads: Payloads) -> RawPayloadLayer {
        RawPayloadLayer(payloads)
    }
}

impl<S> Layer<S> for RawPayloadLayer {
    type Service = RawPayload<S>;

    fn layer(&self, inner: S) -> RawPayload<S> {
        RawPayload {
            inner,
            payloads: self.0.clone(),
        }
    }
}

/// The service [`RawPayloadLayer`] makes.
#[derive(Debug, Clone)]
pub struct RawPayload<S> {
    inner: S,
    payloads: Payloads,
}

impl<S: Service<LambdaInvocation>> Service<LambdaInvocation> for RawPayload<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> S::Future {
        let body = std::mem::replace(&mut invocation.body, Bytes::from_static(PLACEHOLDER));
        self.payloads
            .put(invocation.context.request_id.clone(), body);
        self.inner.call(invocation)
    }
}
