//! The ledger of a batch: where each record stands, and what the batch comes to. Pure:
//! no producer, no clock, no runtime; the pipeline tells it what happened (a record's
//! messages enqueued, a message acknowledged or failed) and asks it what is done.
//!
//! Every record ends in exactly one [`RecordState`]: produced, dead-lettered or skipped
//! (all "done"), or not done. A record is produced when every message made from it was
//! acknowledged; dead-lettered when its dead letter was. Per source partition, the first
//! record not done and everything after it are not done ([`Ledger::summarise`]): that
//! first record is what Lambda's partial batch response names and where `serve`
//! commits up to.

use std::sync::Arc;

use crate::error::{RecordError, Stage};
use crate::source::{NotDone, SourceRecord};
use crate::transform::SkipReason;

/// What happened to one source table's records in a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableCounts {
    /// `schema.table`, or [`UNDECODED_TABLE`] for records that never decoded.
    pub table: Arc<str>,
    /// Records of the table in the batch.
    pub records: usize,
    /// Records whose messages were all acknowledged.
    pub produced: usize,
    /// Records whose dead letter was acknowledged.
    pub dead_lettered: usize,
    /// Records skipped by configuration.
    pub skipped: usize,
    /// Records not done.
    pub failed: usize,
}

/// The table name of records that failed before their table was known.
pub const UNDECODED_TABLE: &str = "_undecoded";

/// An acknowledged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Topic written to.
    pub topic: Arc<str>,
    /// Partition written to.
    pub partition: i32,
    /// Offset written at.
    pub offset: i64,
}

/// What happened to a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    /// Records in the batch.
    pub records: usize,
    /// Records whose messages were all acknowledged.
    pub produced: usize,
    /// Records whose dead letter was acknowledged.
    pub dead_lettered: usize,
    /// Messages acknowledged (dead letters included).
    pub messages: usize,
    /// Records skipped by configuration, by reason.
    pub skipped: Vec<(SkipReason, usize)>,
    /// Records not done (failed, or after a failure in their partition).
    pub not_done: usize,
    /// Per source partition with a record not done: the lowest such offset, and why.
    pub failures: NotDone,
    /// Every acknowledged message, in the order they were enqueued.
    pub deliveries: Vec<DeliveryRecord>,
    /// Wall time until every record was decoded and transformed, milliseconds.
    pub transform_ms: f64,
    /// Wall time from the first enqueue to the last acknowledgement, milliseconds.
    pub produce_ms: f64,
    /// Timestamp of the oldest record, epoch milliseconds (for replication lag).
    pub oldest_timestamp_ms: Option<i64>,
    /// Per source table, in order of first appearance (with `per_table` only).
    pub tables: Vec<TableCounts>,
    /// Records a message of which the broker rejected permanently, whether they were
    /// then dead-lettered or not: exactly once isolates them (an aborted transaction
    /// cannot dead-letter anything).
    pub rejected: Vec<Rejection>,
    /// The most messages that were in flight (enqueued, not reported) at once: at most
    /// about [`super::PipelineOptions::max_in_flight`].
    pub most_in_flight: usize,
}

/// A record a message of which the broker rejected permanently.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Its batch partition (`topic-partition`).
    pub partition: Arc<str>,
    /// Its offset.
    pub offset: i64,
    /// The rejection.
    pub error: RecordError,
    /// Only for another record of the request its messages travelled in (every
    /// rejection of its messages said so): this record's own bytes were not refused.
    pub sibling: bool,
}

impl BatchOutcome {
    /// Records skipped for `reason`.
    pub(crate) fn skipped(&self, reason: SkipReason) -> usize {
        self.skipped
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Records skipped for any reason.
    pub fn skipped_total(&self) -> usize {
        self.skipped.iter().map(|(_, n)| n).sum()
    }
}

/// Where a record stands.
#[derive(Debug)]
pub(crate) enum RecordState {
    /// Waiting for this many acknowledgements; `dead_letter`: of its dead letter.
    Pending { remaining: usize, dead_letter: bool },
    /// All messages acknowledged.
    Produced,
    /// Its dead letter was acknowledged.
    DeadLettered,
    /// Skipped by configuration.
    Skipped(SkipReason),
    /// Failed; reported to Lambda.
    Failed(RecordError),
    /// A message was rejected permanently after it was sent; the record is produced
    /// again alone in the second round before it is called poison.
    Rejected(RecordError),
    /// Not attempted because an earlier record of its partition failed.
    Blocked,
}

impl RecordState {
    /// Produced, dead-lettered or skipped.
    pub(crate) fn is_done(&self) -> bool {
        matches!(
            self,
            RecordState::Produced | RecordState::DeadLettered | RecordState::Skipped(_)
        )
    }
}

/// Each record's state, in source order, and which of its messages were acknowledged.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    states: Vec<RecordState>,
    /// Per record, which of its first 64 messages the broker acknowledged (bit i:
    /// message i), so a record produced again sends only the rest.
    acked: Vec<u64>,
    /// Records a message of which the broker rejected permanently, with the rejection
    /// and whether it was only for a sibling, whatever they came to after (a
    /// transaction cannot dead-letter them: it aborts).
    rejections: Vec<(usize, RecordError, bool)>,
}

impl Ledger {
    /// A ledger for a batch of `records` records, none entered yet.
    pub(crate) fn new(records: usize) -> Ledger {
        Ledger {
            states: Vec::with_capacity(records),
            acked: vec![0; records],
            rejections: Vec::new(),
        }
    }

    /// Records entered so far.
    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// Enters the next record's state (records are entered in source order).
    pub(crate) fn push(&mut self, state: RecordState) {
        self.states.push(state);
    }

    /// Where record `index` stands.
    pub(crate) fn state(&self, index: usize) -> &RecordState {
        &self.states[index]
    }

    /// Sets record `index`'s state (after it was produced again).
    pub(crate) fn set(&mut self, index: usize, state: RecordState) {
        self.states[index] = state;
    }

    /// Records `range` of one source partition, after an earlier record of it is about
    /// to be produced again: each one produced (acknowledged) before it is no longer
    /// done, since its key's last copy would then come before the earlier record's new
    /// copy, out of source order. It is done again once produced again after it; a
    /// recovery round that stops first leaves it reported for retry.
    pub(crate) fn overtaken(&mut self, range: std::ops::Range<usize>) {
        let end = range.end.min(self.states.len());
        for index in range.start..end {
            if matches!(self.states[index], RecordState::Produced) {
                // Its acknowledgements no longer stand for its last copies: produced
                // again, it sends every message.
                self.acked[index] = 0;
                self.states[index] = RecordState::Failed(RecordError::retryable(
                    Stage::Sink,
                    "produced before an earlier record of its partition that was produced \
                     again, and not produced again after it",
                ));
            }
        }
    }

    /// Record `index`'s state, leaving it [`RecordState::Blocked`] until set again.
    pub(crate) fn take(&mut self, index: usize) -> RecordState {
        std::mem::replace(&mut self.states[index], RecordState::Blocked)
    }

    /// Whether the broker acknowledged message `message` of record `index` (only the
    /// first 64 messages of a record are remembered; the rest are sent again).
    pub(crate) fn is_acknowledged(&self, index: usize, message: usize) -> bool {
        message < 64 && self.acked[index] & (1 << message) != 0
    }

    /// Record `index` is produced again whole: its acknowledgements from before no
    /// longer stand for its last copies (a later round that sends only what is not
    /// acknowledged must send again what fails this time).
    pub(crate) fn forget_acknowledged(&mut self, index: usize) {
        self.acked[index] = 0;
    }

    /// The broker acknowledged message `message` of record `index` (`dead_letter`: its
    /// dead letter). A record waiting for its messages is produced once the last one is
    /// acknowledged, dead-lettered once its dead letter is; an acknowledgement of the
    /// other kind (a routed message still in flight when the record turned poison)
    /// changes nothing.
    pub(crate) fn acknowledged(&mut self, index: usize, message: usize, dead_letter: bool) {
        if !dead_letter && message < 64 {
            self.acked[index] |= 1 << message;
        }
        let state = &mut self.states[index];
        if let RecordState::Pending {
            remaining,
            dead_letter: waiting_for_dead_letter,
        } = state
        {
            if *waiting_for_dead_letter != dead_letter {
                return;
            }
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                *state = if dead_letter {
                    RecordState::DeadLettered
                } else {
                    RecordState::Produced
                };
            }
        }
    }

    /// [`Ledger::failed_blaming`] for a rejection of the record's own bytes, of the
    /// message the record waits for (its dead letter once it has one).
    #[cfg(test)]
    pub(crate) fn failed(&mut self, index: usize, error: RecordError) -> bool {
        let dead_letter = matches!(
            self.states[index],
            RecordState::Pending {
                dead_letter: true,
                ..
            }
        );
        self.failed_blaming(index, error, false, dead_letter)
    }

    /// A message of record `index` failed (one of its own or its dead letter). A message
    /// of its own rejected permanently makes the record [`RecordState::Rejected`] (produced
    /// again alone before it is called poison); a retryable failure outranks a sibling's
    /// rejection (the record is reported, never dead-lettered while it might still
    /// succeed); a refused dead letter is reported, never dropped. Returns whether the
    /// record now failed (for the problem log).
    ///
    /// `sibling`: the rejection was only for another record of the request the message
    /// travelled in. Every rejection of a message of the record's own is remembered for
    /// exactly once (the summary's `rejected`), also one that comes after a retryable
    /// failure (which the record's state keeps); one for its own bytes outranks a
    /// sibling's.
    ///
    /// `dead_letter`: the failed message is a dead letter. Once the record waits for its
    /// dead letter, a failure of one of its own messages still in flight (enqueued before
    /// another was refused) leaves its state alone: the dead letter decides, as its
    /// acknowledgement does in [`Ledger::acknowledged`]. A rejection of it is still
    /// remembered: under exactly once it aborted the transaction, and the record must go
    /// alone next.
    pub(crate) fn failed_blaming(
        &mut self,
        index: usize,
        error: RecordError,
        sibling: bool,
        dead_letter: bool,
    ) -> bool {
        let waits_for_dead_letter = matches!(
            self.states[index],
            RecordState::Pending {
                dead_letter: true,
                ..
            }
        );
        if !error.is_retryable() && !dead_letter && !self.states[index].is_done() {
            match self.rejections.iter_mut().find(|(i, ..)| *i == index) {
                Some(entry) if entry.2 && !sibling => *entry = (index, error.clone(), false),
                Some(_) => {}
                None => self.rejections.push((index, error.clone(), sibling)),
            }
        }
        if waits_for_dead_letter && !dead_letter {
            return false;
        }
        let next = match &self.states[index] {
            RecordState::Pending {
                dead_letter: false, ..
            } if !error.is_retryable() => RecordState::Rejected(error),
            RecordState::Pending { .. } | RecordState::Rejected(_) if error.is_retryable() => {
                RecordState::Failed(error)
            }
            RecordState::Pending {
                dead_letter: true, ..
            } => RecordState::Failed(RecordError {
                retryable: true,
                message: format!("dead letter: {}", error.message),
                ..error
            }),
            _ => return false,
        };
        let failed = matches!(next, RecordState::Failed(_));
        self.states[index] = next;
        failed
    }

    /// Whether a record waits to be produced again alone.
    pub(crate) fn any_rejected(&self) -> bool {
        self.states
            .iter()
            .any(|s| matches!(s, RecordState::Rejected(_)))
    }

    /// Whether record `index` waits to be produced again alone.
    pub(crate) fn is_rejected(&self, index: usize) -> bool {
        matches!(self.states[index], RecordState::Rejected(_))
    }

    /// Records done so far.
    pub(crate) fn done(&self) -> usize {
        self.states.iter().filter(|s| s.is_done()).count()
    }

    /// What the batch came to: `records` are the batch's records (source order), `tables`
    /// each one's table (empty unless counted per table), `deliveries` every
    /// acknowledged message. Per partition, everything from the first record not done
    /// onwards is not done.
    pub(crate) fn summarise(
        self,
        records: &[SourceRecord],
        record_tables: Vec<Option<Arc<str>>>,
        deliveries: Vec<DeliveryRecord>,
    ) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            records: records.len(),
            messages: deliveries.len(),
            deliveries,
            ..BatchOutcome::default()
        };
        outcome.rejected = self
            .rejections
            .iter()
            .map(|(index, error, sibling)| {
                let record = &records[*index];
                Rejection {
                    partition: record.batch_partition.clone(),
                    offset: record.offset,
                    error: error.clone(),
                    sibling: *sibling,
                }
            })
            .collect();
        let mut tables = TableTally::default();
        let mut failed_partition: Option<&Arc<str>> = None;
        for (index, (record, state)) in records.iter().zip(self.states).enumerate() {
            let table = record_tables.get(index).cloned().flatten();
            let counts = table.map(|t| tables.entry(t));
            if failed_partition == Some(&record.batch_partition) {
                outcome.not_done += 1;
                if let Some(c) = counts {
                    c.failed += 1;
                }
                continue;
            }
            let error = match state {
                RecordState::Produced => {
                    outcome.produced += 1;
                    if let Some(c) = counts {
                        c.produced += 1;
                    }
                    continue;
                }
                RecordState::DeadLettered => {
                    outcome.dead_lettered += 1;
                    if let Some(c) = counts {
                        c.dead_lettered += 1;
                    }
                    continue;
                }
                RecordState::Skipped(reason) => {
                    match outcome.skipped.iter_mut().find(|(r, _)| *r == reason) {
                        Some((_, n)) => *n += 1,
                        None => outcome.skipped.push((reason, 1)),
                    }
                    if let Some(c) = counts {
                        c.skipped += 1;
                    }
                    continue;
                }
                RecordState::Failed(error) => error,
                RecordState::Rejected(error) => RecordError::retryable(
                    Stage::Sink,
                    format!(
                        "{}; not produced again alone before the deadline",
                        error.message
                    ),
                ),
                RecordState::Pending { .. } | RecordState::Blocked => {
                    RecordError::retryable(Stage::Sink, "not acknowledged before the deadline")
                }
            };
            outcome.not_done += 1;
            if let Some(c) = counts {
                c.failed += 1;
            }
            outcome
                .failures
                .mark(record.batch_partition.clone(), record.offset, Some(error));
            failed_partition = Some(&record.batch_partition);
        }
        outcome.tables = tables.0;
        outcome
    }
}

/// Per-table counts in order of first appearance (a batch holds few tables, so a
/// linear search beats hashing every record).
#[derive(Default)]
struct TableTally(Vec<TableCounts>);

impl TableTally {
    fn entry(&mut self, table: Arc<str>) -> &mut TableCounts {
        let index = match self.0.iter().rposition(|c| c.table == table) {
            Some(i) => i,
            None => {
                self.0.push(TableCounts {
                    table,
                    ..TableCounts::default()
                });
                self.0.len() - 1
            }
        };
        let counts = &mut self.0[index];
        counts.records += 1;
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(remaining: usize) -> RecordState {
        RecordState::Pending {
            remaining,
            dead_letter: false,
        }
    }

    fn dead_letter_pending() -> RecordState {
        RecordState::Pending {
            remaining: 1,
            dead_letter: true,
        }
    }

    fn rejected() -> RecordError {
        RecordError::permanent(Stage::Sink, "message too large")
    }

    fn broker_down() -> RecordError {
        RecordError::retryable(Stage::Sink, "broker down")
    }

    fn record(partition: &str, offset: i64) -> SourceRecord {
        SourceRecord {
            batch_partition: Arc::from(partition),
            topic: Arc::from("dms"),
            partition: 0,
            offset,
            timestamp_ms: 0,
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }

    fn ledger(states: Vec<RecordState>) -> Ledger {
        let mut ledger = Ledger::new(states.len());
        for state in states {
            ledger.push(state);
        }
        ledger
    }

    /// A record is produced only once every one of its messages is acknowledged, and
    /// each acknowledgement is remembered (a record produced again skips it).
    #[test]
    fn acknowledged_when_every_message_is() {
        let mut ledger = ledger(vec![pending(2)]);
        ledger.acknowledged(0, 1, false);
        assert!(matches!(
            ledger.state(0),
            RecordState::Pending { remaining: 1, .. }
        ));
        assert!(!ledger.state(0).is_done());
        assert!(ledger.is_acknowledged(0, 1));
        assert!(!ledger.is_acknowledged(0, 0));
        ledger.acknowledged(0, 0, false);
        assert!(matches!(ledger.state(0), RecordState::Produced));
        assert_eq!(ledger.done(), 1);
    }

    /// Only the first 64 messages of a record are remembered as acknowledged; the
    /// record still counts every acknowledgement.
    #[test]
    fn acknowledgements_past_64_messages_count_but_are_not_remembered() {
        let mut ledger = ledger(vec![pending(2)]);
        ledger.acknowledged(0, 64, false);
        assert!(!ledger.is_acknowledged(0, 64));
        ledger.acknowledged(0, 63, false);
        assert!(ledger.is_acknowledged(0, 63));
        assert!(matches!(ledger.state(0), RecordState::Produced));
    }

    /// A poison record waits for its dead letter: an acknowledgement of one of its
    /// routed messages still in flight does not make it done.
    #[test]
    fn dead_lettered_only_by_its_dead_letter() {
        let mut ledger = ledger(vec![dead_letter_pending()]);
        ledger.acknowledged(0, 0, false);
        assert!(matches!(
            ledger.state(0),
            RecordState::Pending {
                remaining: 1,
                dead_letter: true
            }
        ));
        ledger.acknowledged(0, 0, true);
        assert!(matches!(ledger.state(0), RecordState::DeadLettered));
    }

    /// A message rejected permanently makes its record rejected (produced again alone
    /// before it is called poison), not failed and not done.
    #[test]
    fn rejected_message_waits_for_the_recovery_round() {
        let mut ledger = ledger(vec![pending(1), RecordState::Produced]);
        assert!(!ledger.failed(0, rejected()));
        assert!(ledger.is_rejected(0));
        assert!(ledger.any_rejected());
        assert!(!ledger.is_rejected(1));
        assert_eq!(ledger.done(), 1);
    }

    /// A retryable failure outranks a sibling's rejection: the record is reported and
    /// never dead-lettered while it might still succeed.
    #[test]
    fn retryable_failure_outranks_a_rejection() {
        let mut ledger = ledger(vec![pending(2)]);
        ledger.failed(0, rejected());
        assert!(ledger.failed(0, broker_down()));
        match ledger.state(0) {
            RecordState::Failed(error) => assert!(error.is_retryable()),
            other => panic!("expected failed, got {other:?}"),
        }
        assert!(!ledger.any_rejected());
        // A rejection after that changes nothing.
        assert!(!ledger.failed(0, rejected()));
        assert!(matches!(ledger.state(0), RecordState::Failed(_)));
    }

    /// A rejection is remembered whatever the record comes to after it (under exactly
    /// once, a `_STATE` failure of the aborted transaction), once per record, and the
    /// summary names the record.
    #[test]
    fn rejections_outlive_later_failures() {
        let records = [record("dms-0", 10), record("dms-0", 11)];
        let mut two = ledger(vec![RecordState::Produced, pending(2)]);
        two.failed(1, rejected());
        two.failed(1, broker_down());
        two.failed(1, rejected());
        let outcome = two.summarise(&records, Vec::new(), Vec::new());
        assert_eq!(
            outcome.rejected,
            vec![Rejection {
                partition: Arc::from("dms-0"),
                offset: 11,
                error: rejected(),
                sibling: false
            }]
        );
        assert_eq!(outcome.failures.get("dms-0"), Some(11));
        let clean = ledger(vec![RecordState::Produced]);
        assert!(clean
            .summarise(&records[..1], Vec::new(), Vec::new())
            .rejected
            .is_empty());
    }

    /// A rejection that comes after a retryable failure of the same record (a sibling
    /// message purged when the transaction turned abortable) is still remembered for
    /// exactly once, while the state stays failed (reported, not dead-lettered); a
    /// rejection for the record's own bytes outranks one only for a sibling's, and a
    /// record with sibling rejections alone says so.
    #[test]
    fn rejections_after_a_failure_are_remembered_and_own_ones_win() {
        let records = [record("dms-0", 10), record("dms-0", 11)];
        let mut ledger = ledger(vec![pending(2), pending(3)]);
        assert!(ledger.failed(0, broker_down()));
        ledger.failed_blaming(0, rejected(), false, false);
        assert!(matches!(ledger.state(0), RecordState::Failed(_)));
        ledger.failed_blaming(1, rejected(), true, false);
        ledger.failed_blaming(1, rejected(), true, false);
        let outcome = ledger.summarise(&records, Vec::new(), Vec::new());
        let seen: Vec<(i64, bool)> = outcome
            .rejected
            .iter()
            .map(|r| (r.offset, r.sibling))
            .collect();
        assert_eq!(seen, vec![(10, false), (11, true)]);
        let mut upgraded = self::ledger(vec![pending(2)]);
        upgraded.failed_blaming(0, rejected(), true, false);
        upgraded.failed_blaming(0, rejected(), false, false);
        upgraded.failed_blaming(0, rejected(), true, false);
        let outcome = upgraded.summarise(&records[..1], Vec::new(), Vec::new());
        assert_eq!(outcome.rejected.len(), 1);
        assert!(!outcome.rejected[0].sibling, "its own rejection wins");
    }

    /// A refused dead letter is reported for retry, never dropped.
    #[test]
    fn refused_dead_letter_is_reported() {
        let mut ledger = ledger(vec![dead_letter_pending()]);
        assert!(ledger.failed(0, rejected()));
        match ledger.state(0) {
            RecordState::Failed(error) => {
                assert!(error.is_retryable());
                assert_eq!(error.message, "dead letter: message too large");
            }
            other => panic!("expected failed, got {other:?}"),
        }
    }

    /// While a record waits for its dead letter, a failure of one of its own messages
    /// still in flight (enqueued before another of its messages was refused) does not
    /// fail it: its dead letter decides. It was reported as a failed dead letter, so the
    /// record was dead-lettered again on every retry. A rejection is still remembered
    /// for exactly once.
    #[test]
    fn a_routed_failure_does_not_fail_a_dead_letter_on_its_way() {
        for error in [rejected(), broker_down()] {
            let mut ledger = ledger(vec![dead_letter_pending()]);
            assert!(!ledger.failed_blaming(0, error.clone(), false, false));
            assert!(!ledger.failed_blaming(0, error, true, false));
            assert!(matches!(
                ledger.state(0),
                RecordState::Pending {
                    dead_letter: true,
                    ..
                }
            ));
            ledger.acknowledged(0, 0, true);
            assert!(matches!(ledger.state(0), RecordState::DeadLettered));
        }
        let mut refused = ledger(vec![dead_letter_pending()]);
        assert!(refused.failed_blaming(0, broker_down(), false, true));
        assert!(matches!(refused.state(0), RecordState::Failed(_)));
        // Under exactly once the rejection aborted the transaction: it is remembered, so
        // the record goes alone next instead of aborting every try.
        let records = [record("dms-0", 10)];
        let mut rejected_too = ledger(vec![dead_letter_pending()]);
        rejected_too.failed_blaming(0, rejected(), false, false);
        let outcome = rejected_too.summarise(&records, Vec::new(), Vec::new());
        assert_eq!(outcome.rejected.len(), 1);
        assert_eq!(outcome.rejected[0].offset, 10);
    }

    /// A late failure report never undoes a record that is done.
    #[test]
    fn done_records_stay_done() {
        let mut ledger = ledger(vec![
            RecordState::Produced,
            RecordState::DeadLettered,
            RecordState::Skipped(SkipReason::Unrouted),
        ]);
        for index in 0..3 {
            assert!(!ledger.failed(index, broker_down()));
            assert!(ledger.state(index).is_done());
        }
        assert_eq!(ledger.done(), 3);
    }

    /// Fan-out half done: one message acknowledged, the other failed. The record is not
    /// done, and a second try sends only the message not acknowledged.
    #[test]
    fn fan_out_half_done_is_not_done() {
        let mut ledger = ledger(vec![pending(2)]);
        ledger.acknowledged(0, 0, false);
        assert!(ledger.failed(0, broker_down()));
        assert!(ledger.is_acknowledged(0, 0));
        assert!(!ledger.is_acknowledged(0, 1));
        let outcome = ledger.summarise(&[record("dms-0", 7)], Vec::new(), Vec::new());
        assert_eq!((outcome.produced, outcome.not_done), (0, 1));
        assert_eq!(outcome.failures.len(), 1);
        assert_eq!(outcome.failures.get("dms-0"), Some(7));
    }

    /// The recovery round takes a rejected record out (blocked meanwhile) and sets what
    /// producing it again alone came to.
    #[test]
    fn recovery_takes_and_sets() {
        let mut ledger = ledger(vec![pending(1)]);
        ledger.failed(0, rejected());
        match ledger.take(0) {
            RecordState::Rejected(error) => assert_eq!(error.message, "message too large"),
            other => panic!("expected rejected, got {other:?}"),
        }
        assert!(matches!(ledger.state(0), RecordState::Blocked));
        ledger.set(0, RecordState::Produced);
        assert!(!ledger.any_rejected());
        assert_eq!(ledger.done(), 1);
    }

    /// Records produced before an earlier record that is produced again are not done
    /// until produced again after it, all their messages (retryable, so reported, never
    /// dead-lettered); the other states are left as they are, and so is everything
    /// outside the range.
    #[test]
    fn records_overtaken_by_an_earlier_records_new_copy_are_not_done() {
        let mut ledger = ledger(vec![
            RecordState::Produced,
            RecordState::Rejected(rejected()),
            pending(1),
            RecordState::DeadLettered,
            RecordState::Skipped(SkipReason::Filter),
            RecordState::Produced,
        ]);
        ledger.acknowledged(2, 0, false);
        assert!(ledger.state(2).is_done() && ledger.is_acknowledged(2, 0));
        ledger.overtaken(2..5);
        assert!(
            !ledger.is_acknowledged(2, 0),
            "produced again, it sends every message"
        );
        assert!(ledger.state(0).is_done(), "before the range");
        assert!(ledger.is_rejected(1));
        match ledger.state(2) {
            RecordState::Failed(error) => assert!(error.is_retryable(), "{error}"),
            other => panic!("expected failed, got {other:?}"),
        }
        assert!(matches!(ledger.state(3), RecordState::DeadLettered));
        assert!(matches!(ledger.state(4), RecordState::Skipped(_)));
        assert!(ledger.state(5).is_done(), "past the range");
        let records: Vec<_> = (0..6).map(|o| record("dms-0", o)).collect();
        let outcome = ledger.summarise(&records, Vec::new(), Vec::new());
        assert_eq!(outcome.failures.get("dms-0"), Some(1));
    }

    /// Per partition, the first record not done and everything after it are not done;
    /// other partitions are counted on their own; the failure names the first offset.
    #[test]
    fn summary_per_partition() {
        let records = [
            record("dms-0", 10),
            record("dms-0", 11),
            record("dms-0", 12),
            record("dms-1", 20),
            record("dms-1", 21),
            record("dms-1", 22),
        ];
        let ledger = ledger(vec![
            RecordState::Produced,
            RecordState::Failed(broker_down()),
            RecordState::Produced,
            RecordState::Skipped(SkipReason::Unrouted),
            RecordState::DeadLettered,
            RecordState::Rejected(rejected()),
        ]);
        let tables: Vec<Option<Arc<str>>> = ["a", "a", "b", "b", "b", "b"]
            .iter()
            .map(|t| Some(Arc::from(*t)))
            .collect();
        let deliveries = vec![DeliveryRecord {
            topic: Arc::from("out"),
            partition: 0,
            offset: 1,
        }];
        let outcome = ledger.summarise(&records, tables, deliveries);
        assert_eq!(outcome.records, 6);
        assert_eq!(outcome.produced, 1);
        assert_eq!(outcome.dead_lettered, 1);
        assert_eq!(outcome.skipped, vec![(SkipReason::Unrouted, 1)]);
        assert_eq!(outcome.not_done, 3);
        assert_eq!(outcome.messages, 1);
        let failures: Vec<(&str, i64, bool)> = outcome
            .failures
            .iter()
            .map(|f| {
                let retryable = f.error.as_ref().is_some_and(RecordError::is_retryable);
                (f.batch_partition.as_ref(), f.offset, retryable)
            })
            .collect();
        // A record still rejected at the end is reported for retry.
        assert_eq!(failures, vec![("dms-0", 11, true), ("dms-1", 22, true)]);
        let counts: Vec<(&str, usize, usize, usize, usize, usize)> = outcome
            .tables
            .iter()
            .map(|t| {
                (
                    t.table.as_ref(),
                    t.records,
                    t.produced,
                    t.dead_lettered,
                    t.skipped,
                    t.failed,
                )
            })
            .collect();
        assert_eq!(counts, vec![("a", 2, 1, 0, 0, 1), ("b", 4, 0, 1, 1, 2)]);
    }

    /// Records never acknowledged (pending or blocked at the end) are reported, with
    /// a reason that says so.
    #[test]
    fn unacknowledged_records_are_reported() {
        let ledger = ledger(vec![pending(1), RecordState::Blocked]);
        let outcome = ledger.summarise(
            &[record("p-0", 1), record("p-1", 5)],
            Vec::new(),
            Vec::new(),
        );
        assert_eq!(outcome.not_done, 2);
        assert_eq!(outcome.failures.len(), 2);
        assert!(outcome
            .failures
            .iter()
            .filter_map(|f| f.error.as_ref())
            .all(|e| e.is_retryable() && e.message.contains("not acknowledged")));
    }
}
