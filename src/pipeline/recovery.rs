//! The recovery round (see the pipeline's module doc): records the broker rejected
//! after sending are produced again alone, in source order, and every later record of
//! their source partition again after them; records that failed retryably are produced
//! again too, with a new producer when the old one is fatal.

use super::ledger::RecordState;
use super::observe::traced;
use super::{Renew, Resend, Run};
use crate::error::Stage;
use crate::transform::{header, Transformed};

/// Recovery rounds per batch at most (each one resolves at least the first rejected
/// record of every partition, or stops).
const MAX_RECOVERY_ROUNDS: usize = 4;

impl Run<'_> {
    /// The recovery round (see the module doc): while records rejected after sending
    /// remain, budget remains and progress is made, go through every source partition
    /// that has one, taking a new producer first if the old one is fatal.
    pub(super) async fn recover(&mut self, cluster: &str, renew: &dyn Renew) {
        for _ in 0..MAX_RECOVERY_ROUNDS {
            if !self.ledger.any_rejected() || self.out_of_time() {
                return;
            }
            let done_before = self.ledger.done();
            let mut start = 0;
            while start < self.records.len() {
                let partition = self.records[start].batch_partition.clone();
                let end = (start..self.records.len())
                    .find(|i| self.records[*i].batch_partition != partition)
                    .unwrap_or(self.records.len());
                if (start..end).any(|i| self.ledger.is_rejected(i)) {
                    self.recover_partition(start, end, cluster, renew).await;
                }
                start = end;
            }
            self.await_deliveries().await;
            if self.ledger.done() == done_before {
                return;
            }
        }
    }

    /// Produces again, in source order, the records of one source partition
    /// (`start..end`) from its first record not done: that one's unacknowledged
    /// messages (alone when it was rejected), then every later record again, all its
    /// messages, already produced or not (a rejected one alone); stops at the first
    /// record that fails again.
    async fn recover_partition(
        &mut self,
        start: usize,
        end: usize,
        cluster: &str,
        renew: &dyn Renew,
    ) {
        let Some(first) = (start..end).find(|i| !self.ledger.state(*i).is_done()) else {
            return;
        };
        for index in first..end {
            if self.out_of_time() {
                return;
            }
            let (alone, own_resend) = match self.ledger.state(index) {
                RecordState::Skipped(_) | RecordState::DeadLettered => continue,
                // Produced before the retried record: produced again after it.
                RecordState::Produced => (false, Resend::All),
                RecordState::Rejected(_) => (true, Resend::Unacknowledged),
                RecordState::Failed(error) if error.stage == Stage::Sink => {
                    (false, Resend::Unacknowledged)
                }
                RecordState::Blocked | RecordState::Pending { .. } => {
                    (false, Resend::Unacknowledged)
                }
                // A failure before producing that producing again cannot cure.
                RecordState::Failed(_) => return,
            };
            // After the first record produced again, every later one sends all its
            // messages again: one acknowledged before (a fan-out's other topic) would
            // otherwise stay before the earlier record's new copy, its key's last copy
            // out of source order.
            let resend = if index == first {
                own_resend
            } else {
                Resend::All
            };
            if alone {
                // Everything before it is settled before it is sent.
                self.await_deliveries().await;
                if self.out_of_time() {
                    return;
                }
            }
            if self.sink.fatal_error().is_some() {
                self.await_deliveries().await;
                match renew.renew(&self.sink) {
                    Ok(sink) => {
                        let old = std::mem::replace(&mut self.sink, sink);
                        // librdkafka's teardown may block: not on an async worker.
                        tokio::task::spawn_blocking(move || drop(old));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "no new producer for the recovery round");
                        return;
                    }
                }
            }
            let record = &self.records[index];
            let messages = match traced(
                self.pipeline.process(record, cluster),
                record,
                self.xray.as_deref(),
            ) {
                Ok(Transformed::Messages(messages)) => messages,
                // Deterministic: the same record made messages in the first round.
                _ => return,
            };
            let state = self.produce(index, &messages, resend).await;
            self.ledger.set(index, state);
            if alone {
                // Nothing after it is sent before it is settled.
                self.await_deliveries().await;
                if self.ledger.is_rejected(index) && !self.out_of_time() {
                    if let RecordState::Rejected(mut error) = self.ledger.take(index) {
                        // The table's route decides (`on_poison`): a rejection after
                        // sending does not name it, the record's messages do.
                        if error.table.is_none() {
                            if let Some(table) =
                                messages.iter().find_map(|m| m.header(header::TABLE))
                            {
                                error = error.with_table(String::from_utf8_lossy(table));
                            }
                        }
                        let state = self.poison(index, error).await;
                        self.ledger.set(index, state);
                        self.await_deliveries().await;
                    }
                }
            }
            if matches!(
                self.ledger.state(index),
                RecordState::Failed(_) | RecordState::Rejected(_)
            ) {
                return;
            }
        }
    }
}
