//! Exactly once: the transactional producer's protocol. `init_transactions` once per
//! producer (fencing its predecessors), then per batch: begin, the batch's messages,
//! `send_offsets_to_transaction` with the consumer group's metadata (so a member that
//! lost its partitions is fenced), commit; or abort. A commit that times out is retried;
//! one whose result stays unknown is reported as such, never aborted.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::Error;
use crate::kafka::group::{Source, Span};
use crate::kafka::producer::Sink;

/// How long a transactional call (init, send offsets, commit, abort) may block.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

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
    pub(crate) fn initialise(&mut self, sink: &Arc<Sink>) -> Result<(), Error> {
        if self
            .initialised
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, sink))
        {
            return Ok(());
        }
        let txn = sink.transactions();
        tokio::task::block_in_place(|| txn.init_transactions(TRANSACTION_TIMEOUT))
            .map_err(|e| Error::Transaction(format!("init_transactions: {e}")))?;
        self.initialised = Some(sink.clone());
        Ok(())
    }

    /// Initialises the transactional producer if needed, then begins a transaction.
    pub(crate) fn begin(&mut self, sink: &Arc<Sink>) -> Result<(), Error> {
        self.initialise(sink)?;
        sink.transactions()
            .begin_transaction()
            .map_err(|e| Error::Transaction(format!("begin_transaction: {e}")))
    }

    /// Sends the batch's offsets to the transaction and commits it. A commit that
    /// times out is retried (librdkafka resumes it); one whose result is unknown after
    /// that is [`TxnEnd::Unknown`], never aborted: the commit may have happened.
    pub(crate) fn commit(&self, sink: &Arc<Sink>, source: &Source, spans: &[Span]) -> TxnEnd {
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
        let txn = sink.transactions();
        tokio::task::block_in_place(|| {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match txn.send_offsets_to_transaction(&offsets, &group, TRANSACTION_TIMEOUT) {
                    Ok(()) => break,
                    Err(e) if retriable(&e) && attempts < COMMIT_ATTEMPTS => continue,
                    Err(e) => {
                        return TxnEnd::Aborted(Error::Transaction(format!(
                            "send_offsets_to_transaction: {e}"
                        )))
                    }
                }
            }
            let mut attempts = 0;
            loop {
                attempts += 1;
                match txn.commit_transaction(TRANSACTION_TIMEOUT) {
                    Ok(()) => return TxnEnd::Committed,
                    Err(e) if retriable(&e) && attempts < COMMIT_ATTEMPTS => continue,
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
    }

    /// Aborts the open transaction. On failure the producer cannot go on: it is
    /// forgotten here, and the caller retires it.
    pub(crate) fn abort(&mut self, sink: &Arc<Sink>) -> Result<(), Error> {
        let txn = sink.transactions();
        tokio::task::block_in_place(|| txn.abort_transaction(TRANSACTION_TIMEOUT)).map_err(|e| {
            self.initialised = None;
            Error::Transaction(format!("abort_transaction: {e}"))
        })
    }

    /// Forgets the producer (replaced): the next one is initialised again.
    pub(crate) fn forget(&mut self) {
        self.initialised = None;
    }
}

/// How a transaction ended.
pub(crate) enum TxnEnd {
    Committed,
    /// Not committed: to be aborted.
    Aborted(Error),
    /// The commit's result is unknown.
    Unknown(Error),
}

/// Attempts at sending offsets and at committing while librdkafka says retry.
const COMMIT_ATTEMPTS: u32 = 3;

fn retriable(error: &KafkaError) -> bool {
    matches!(error, KafkaError::Transaction(e) if e.is_retriable())
}

fn requires_abort(error: &KafkaError) -> bool {
    matches!(error, KafkaError::Transaction(e) if e.txn_requires_abort())
}
