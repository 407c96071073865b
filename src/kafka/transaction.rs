//! Exactly once: the transactional producer's protocol. `init_transactions` once per
//! producer (fencing its predecessors), then per batch: begin, the batch's messages,
//! `send_offsets_to_transaction` with the consumer group's metadata (so a member that
//! lost its partitions is fenced), commit; or abort. A commit that times out is retried
//! within [`COMMIT_BUDGET`]; one whose result stays unknown is reported as such, never
//! aborted. [`check_transaction_timeout`] makes sure a batch and its commit fit inside the
//! transaction timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::Error;
use crate::kafka::group::{Source, Span, CONSUMER_CALL_TIMEOUT};
use crate::kafka::producer::Sink;

/// How long a transactional call (init, send offsets, commit, abort) may block.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest sending the offsets and committing may take together, retries included.
/// A batch (`RELAY_BATCH_TIMEOUT_MS`) and this must end inside the transaction timeout:
/// past it the coordinator aborts the transaction, and a commit cannot land.
pub(crate) const COMMIT_BUDGET: Duration = Duration::from_secs(20);
/// The longest the loop may go after a batch under exactly once without polling the
/// consumer: the commit ([`COMMIT_BUDGET`]), then either the abort after one that failed
/// and, should the abort fail too, a new producer's init (which aborts what the old one
/// left open), or, after a commit whose outcome is unknown, a new producer's init and
/// the group's committed offsets (a consumer call). What
/// `max.poll.interval.ms` must outlast on top of a batch.
pub(crate) const AFTER_BATCH_UNPOLLED: Duration = Duration::from_secs(
    COMMIT_BUDGET.as_secs()
        + TRANSACTION_TIMEOUT.as_secs()
        + if TRANSACTION_TIMEOUT.as_secs() > CONSUMER_CALL_TIMEOUT.as_secs() {
            TRANSACTION_TIMEOUT.as_secs()
        } else {
            CONSUMER_CALL_TIMEOUT.as_secs()
        },
);
/// librdkafka's `transaction.timeout.ms` when the producer properties do not set it.
const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// The pause before a transactional call that failed with a retriable error is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Checks that a batch of at most `batch_timeout` and its commit ([`COMMIT_BUDGET`]) end
/// inside the producer's `transaction.timeout.ms` (from `producer_properties`, else
/// librdkafka's 60 s). Otherwise the coordinator would abort transactions the relay is
/// still committing, and every long batch would be produced again.
pub(crate) fn check_transaction_timeout(
    batch_timeout: Duration,
    producer_properties: &[(String, String)],
) -> Result<(), Error> {
    let timeout = crate::kafka::property_millis(
        producer_properties,
        "transaction.timeout.ms",
        "RELAY_PRODUCER_TRANSACTION_TIMEOUT_MS",
        DEFAULT_TRANSACTION_TIMEOUT,
    )
    .map_err(Error::Transaction)?;
    let longest = batch_timeout + COMMIT_BUDGET;
    if longest > timeout {
        return Err(Error::Transaction(format!(
            "a batch may take RELAY_BATCH_TIMEOUT_MS={} and its commit up to {} ms more, {} ms in \
             all, past the transaction timeout ({} ms, RELAY_PRODUCER_TRANSACTION_TIMEOUT_MS): \
             the coordinator would abort transactions still committing. Lower \
             RELAY_BATCH_TIMEOUT_MS to at most {} or raise the transaction timeout",
            batch_timeout.as_millis(),
            COMMIT_BUDGET.as_millis(),
            longest.as_millis(),
            timeout.as_millis(),
            timeout.saturating_sub(COMMIT_BUDGET).as_millis(),
        )));
    }
    Ok(())
}

/// The transactions of one serving process.
#[derive(Debug, Default)]
pub(crate) struct Transactions {
    /// The transactional producer `init_transactions` has run on.
    initialised: Option<Arc<Sink>>,
}

impl Transactions {
    /// Runs `init_transactions` once per producer. The broker then fences any earlier
    /// producer with this `transactional.id` and aborts its open transaction, which
    /// would otherwise hold back read_committed readers, and the committed offsets of
    /// the partitions it had, until the transaction timeout.
    pub(crate) async fn initialise(&mut self, sink: &Arc<Sink>) -> Result<(), Error> {
        if self
            .initialised
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, sink))
        {
            return Ok(());
        }
        let txn = sink.transactions().clone();
        blocking(move || txn.init_transactions(TRANSACTION_TIMEOUT))
            .await?
            .map_err(|e| Error::Transaction(format!("init_transactions: {e}")))?;
        self.initialised = Some(sink.clone());
        Ok(())
    }

    /// Initialises the transactional producer if needed, then begins a transaction.
    pub(crate) async fn begin(&mut self, sink: &Arc<Sink>) -> Result<(), Error> {
        self.initialise(sink).await?;
        sink.transactions()
            .begin_transaction()
            .map_err(|e| Error::Transaction(format!("begin_transaction: {e}")))
    }

    /// Sends the batch's offsets to the transaction and commits it, both within
    /// [`COMMIT_BUDGET`]. A commit that times out is retried (librdkafka resumes it) while
    /// the budget lasts; one whose result is still unknown then is [`TxnEnd::Unknown`],
    /// never aborted: the commit may have happened.
    pub(crate) async fn commit(&self, sink: &Arc<Sink>, source: &Source, spans: &[Span]) -> TxnEnd {
        if source.assignment_lost() {
            return TxnEnd::Aborted(Error::Transaction(
                "the group took the partitions away during the batch".to_owned(),
            ));
        }
        let mut offsets = TopicPartitionList::new();
        for span in spans {
            if let Err(e) = offsets.add_partition_offset(
                &span.topic,
                span.partition,
                Offset::Offset(span.last + 1),
            ) {
                return TxnEnd::Aborted(Error::Transaction(format!("offset list: {e}")));
            }
        }
        let Some(group) = source.group_metadata() else {
            return TxnEnd::Aborted(Error::Transaction("no consumer group metadata".to_owned()));
        };
        let txn = sink.transactions().clone();
        let budget = Budget::new(COMMIT_BUDGET);
        let ended = blocking(move || {
            loop {
                match txn.send_offsets_to_transaction(&offsets, &group, budget.next_call()) {
                    Ok(()) => break,
                    Err(e) if retriable(&e) && budget.retry() => continue,
                    Err(e) => {
                        return TxnEnd::Aborted(Error::Transaction(format!(
                            "send_offsets_to_transaction: {e}"
                        )))
                    }
                }
            }
            loop {
                match txn.commit_transaction(budget.next_call()) {
                    Ok(()) => return TxnEnd::Committed,
                    Err(e) if retriable(&e) && budget.retry() => continue,
                    Err(e) if requires_abort(&e) => {
                        return TxnEnd::Aborted(Error::Transaction(format!(
                            "commit_transaction: {e}"
                        )))
                    }
                    Err(e) => {
                        return TxnEnd::Unknown(Error::Transaction(format!(
                            "commit_transaction: {e}"
                        )))
                    }
                }
            }
        })
        .await;
        ended.unwrap_or_else(TxnEnd::Unknown)
    }

    /// Aborts the open transaction. On failure the producer cannot go on: it is
    /// forgotten here, and the caller retires it.
    pub(crate) async fn abort(&mut self, sink: &Arc<Sink>) -> Result<(), Error> {
        let txn = sink.transactions().clone();
        let aborted = blocking(move || txn.abort_transaction(TRANSACTION_TIMEOUT))
            .await
            .and_then(|r| r.map_err(|e| Error::Transaction(format!("abort_transaction: {e}"))));
        if aborted.is_err() {
            self.initialised = None;
        }
        aborted
    }

    /// Whether `sink` is the producer transactions were initialised with.
    #[cfg(test)]
    pub(crate) fn initialised_with(&self, sink: &Arc<Sink>) -> bool {
        self.initialised
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, sink))
    }

    /// Forgets the producer (replaced): the next one is initialised again.
    pub(crate) fn forget(&mut self) {
        self.initialised = None;
    }
}

/// Runs a blocking transactional call on tokio's blocking threads. The call ends within
/// its own timeout; awaiting it through a join handle lets a caller with less time (the
/// shutdown) stop waiting before that.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| Error::Transaction(format!("transactional call: {e}")))
}

/// How a transaction ended.
pub(crate) enum TxnEnd {
    Committed,
    /// Not committed: to be aborted.
    Aborted(Error),
    /// The commit's result is unknown.
    Unknown(Error),
}

/// What is left of [`COMMIT_BUDGET`]: each call gets at most [`TRANSACTION_TIMEOUT`] of
/// it, and none is retried once it is spent.
struct Budget {
    until: Instant,
}

impl Budget {
    fn new(budget: Duration) -> Budget {
        Budget {
            until: Instant::now() + budget,
        }
    }

    /// The next call's timeout (at least 1 ms: librdkafka reads 0 as "do not wait").
    fn next_call(&self) -> Duration {
        self.until
            .saturating_duration_since(Instant::now())
            .min(TRANSACTION_TIMEOUT)
            .max(Duration::from_millis(1))
    }

    /// Whether a retriable failure may be tried again: after a short pause, if the
    /// budget is not spent.
    fn retry(&self) -> bool {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(RETRY_PAUSE));
        Instant::now() < self.until
    }
}

fn retriable(error: &KafkaError) -> bool {
    matches!(error, KafkaError::Transaction(e) if e.is_retriable())
}

fn requires_abort(error: &KafkaError) -> bool {
    matches!(error, KafkaError::Transaction(e) if e.txn_requires_abort())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout_ms(ms: &str) -> Vec<(String, String)> {
        vec![
            ("linger.ms".to_owned(), "5".to_owned()),
            ("transaction.timeout.ms".to_owned(), ms.to_owned()),
        ]
    }

    /// A batch and its commit must fit inside the transaction timeout the producer
    /// really has: librdkafka's 60 s, or the one the properties set.
    #[test]
    fn a_batch_and_its_commit_fit_inside_the_transaction_timeout() {
        let secs = Duration::from_secs;
        check_transaction_timeout(secs(40), &[]).expect("40 + 20 s inside 60 s");
        let error = check_transaction_timeout(secs(41), &[])
            .expect_err("41 + 20 s past 60 s")
            .to_string();
        assert!(error.contains("at most 40000"), "{error}");
        // A longer transaction timeout allows longer batches; a shorter one refuses the
        // default batch timeout.
        check_transaction_timeout(secs(100), &timeout_ms("120000")).expect("100 + 20 s");
        let error = check_transaction_timeout(secs(30), &timeout_ms("45000"))
            .expect_err("30 + 20 s past 45 s")
            .to_string();
        assert!(error.contains("(45000 ms"), "{error}");
        assert!(error.contains("at most 25000"), "{error}");
        assert!(check_transaction_timeout(secs(1), &timeout_ms("soon")).is_err());
    }

    /// Each call gets what is left of the budget, never more than one call's timeout,
    /// and nothing is retried once the budget is spent.
    #[test]
    fn the_commit_budget_bounds_every_call_and_retry() {
        let budget = Budget::new(Duration::from_secs(25));
        assert_eq!(budget.next_call(), TRANSACTION_TIMEOUT);
        let short = Budget::new(Duration::from_secs(2));
        assert!(short.retry(), "a pause, then more than a second left");
        assert!(short.next_call() <= Duration::from_millis(1_900));
        let spent = Budget::new(Duration::ZERO);
        assert!(!spent.retry(), "spent");
        assert_eq!(spent.next_call(), Duration::from_millis(1));
    }
}
