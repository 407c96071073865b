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
            let partitions = self.partitions_to_recover();
            // In each, the records after its first not done that are produced are done
            // only once produced again after it: should the round stop first (the
            // budget, no new producer), they are reported, not left before its new
            // copy. Marked before progress is counted.
            for &(start, end) in &partitions {
                if let Some(first) = (start..end).find(|i| !self.ledger.state(*i).is_done()) {
                    self.ledger.overtaken(first + 1..end);
                }
            }
            let done_before = self.ledger.done();
            for (start, end) in partitions {
                self.recover_partition(start, end, cluster, renew).await;
            }
            self.await_deliveries().await;
            if self.ledger.done() == done_before {
                return;
            }
        }
    }

    /// The source partitions (`start..end` in the batch) with a record rejected after
    /// sending.
    fn partitions_to_recover(&self) -> Vec<(usize, usize)> {
        let mut partitions = Vec::new();
        let mut start = 0;
        while start < self.records.len() {
            let partition = &self.records[start].batch_partition;
            let end = (start..self.records.len())
                .find(|i| self.records[*i].batch_partition != *partition)
                .unwrap_or(self.records.len());
            if (start..end).any(|i| self.ledger.is_rejected(i)) {
                partitions.push((start, end));
            }
            start = end;
        }
        partitions
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
                // Produced before the retried record (none after `overtaken`):
                // produced again after it.
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use super::super::{Ledger, Pipeline, PipelineOptions, Run};
    use super::*;
    use crate::dms::Decoder;
    use crate::error::Error;
    use crate::kafka::producer::Sink;
    use crate::kafka::ClientAuth;
    use crate::source::{EventOrigin, Payload, SourceRecord};
    use crate::transform::{Routes, Transformer};

    /// No new producer can be made.
    struct NoRenew;

    impl Renew for NoRenew {
        fn renew(&self, _: &Arc<Sink>) -> Result<Arc<Sink>, Error> {
            Err(Error::Producer("no new producer in this test".to_owned()))
        }
    }

    fn record(offset: i64, table: &str, id: i64) -> SourceRecord {
        let value = format!(
            r#"{{"data":{{"id":{id}}},"metadata":{{"record-type":"data","operation":"insert","schema-name":"public","table-name":"{table}"}}}}"#
        );
        SourceRecord {
            batch_partition: Arc::from("dms-0"),
            topic: Arc::from("dms"),
            partition: 0,
            offset,
            timestamp_ms: 0,
            key: None,
            value: Some(Payload::Bytes(value.into_bytes())),
            headers: Vec::new(),
        }
    }

    /// A recovery round that stops after it produced a record again leaves none of the
    /// later records of its partition counted done: each was produced before that
    /// record's new copy (the last copy of a key would be out of source order), so each
    /// is reported for retry. The round is stopped here by a record that no longer
    /// makes messages, the one stop a test can cause at will; the budget and a new
    /// producer that cannot be made stop it at the same point.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recovery_round_that_stops_early_leaves_no_later_record_done() {
        let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("out", 1, 1).expect("topic");
        let routes = Routes::parse(
            "[defaults]\nunrouted = \"skip\"\n[[route]]\ntable = \"public.orders\"\ntopic = \"out\"\nkey = [\"id\"]\n",
            "test",
        )
        .expect("routes");
        let pipeline = Pipeline::new(
            Decoder::default(),
            Transformer::new(routes),
            PipelineOptions::default(),
        );
        let sink = Sink::connect_with(&cluster.bootstrap_servers(), ClientAuth::None, &[])
            .expect("a sink");
        // The first record was rejected after sending; the three after it were produced
        // (as if), the second of them now skipped by the routes: the round stops there.
        let records: Arc<[SourceRecord]> = Arc::from(vec![
            record(10, "orders", 1),
            record(11, "orders", 1),
            record(12, "items", 1),
            record(13, "orders", 1),
        ]);
        let mut ledger = Ledger::new(records.len());
        ledger.push(RecordState::Rejected(crate::error::RecordError::permanent(
            Stage::Sink,
            "message too large",
        )));
        for _ in 1..records.len() {
            ledger.push(RecordState::Produced);
        }
        let origin = EventOrigin::default();
        let mut run = Run {
            pipeline: &pipeline,
            sink: Arc::new(sink),
            origin: &origin,
            settle_by: None,
            xray: None,
            first_enqueue: None,
            records: records.clone(),
            budget: None,
            ledger,
            tables: Vec::new(),
            log_values: false,
            in_flight: VecDeque::new(),
            most_in_flight: 0,
            deliveries: Vec::new(),
            purged: false,
        };
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            run.recover("cluster", &NoRenew),
        )
        .await
        .expect("the round ends");
        assert!(
            matches!(run.ledger.state(0), RecordState::Produced),
            "the rejected record produced again alone: {:?}",
            run.ledger.state(0)
        );
        assert!(
            matches!(run.ledger.state(1), RecordState::Produced),
            "produced again after it: {:?}",
            run.ledger.state(1)
        );
        for index in 2..4 {
            assert!(
                !run.ledger.state(index).is_done(),
                "record {index} is not done: {:?}",
                run.ledger.state(index)
            );
        }
        let outcome = run.ledger.summarise(&records, Vec::new(), Vec::new());
        assert_eq!(outcome.failures.get("dms-0"), Some(12));
    }
}
