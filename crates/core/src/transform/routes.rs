//! The routes file: TOML -> validated [`Routes`].
//!
//! Two stages, like all configuration here: serde reads the file into `Raw*` structs
//! (unknown keys rejected, with the line), then [`Routes::parse`] checks what serde
//! cannot (include and exclude together, bad globs, unknown topic placeholders,
//! colliding renames, routes that can never emit) and builds the compiled [`Route`]s
//! the transform uses. Every error names the file, the line and, for a route, its table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use toml::Spanned;

use super::coerce::Coercion;
use super::filter::Filter;
use super::personal::HashKey;
use crate::dms::Operation;
use crate::error::ConfigError;

/// What to do with a table no route matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unrouted {
    /// Produce it to `defaults.topic`, unmapped.
    Default,
    /// Count it and produce nothing.
    Skip,
    /// Treat it as poison: dead-letter it (see `on_poison`).
    Dlq,
}

/// The shape of downstream values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// `{id, op, source, key, data, before, changed}`.
    Relay,
    /// The mapped row plus `__op`, `__table`, `__source_ts` (like Debezium's unwrap SMT).
    Flat,
    /// Debezium's change event: `{before, after, source, op, ts_ms, transaction}`, with
    /// Kafka Connect's JSON schema around it unless `schemas = false`.
    Debezium,
    /// A CloudEvent (1.0, Kafka protocol binding) whose data is the relay envelope, in
    /// the content mode `content_mode` says.
    CloudEvents,
}

/// How a CloudEvent is carried in a Kafka message (the Kafka protocol binding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentMode {
    /// The whole event as `application/cloudevents+json` in the value.
    Structured,
    /// The attributes in `ce_*` headers, the data in the value.
    Binary,
}

/// What an `include`d column missing from a row becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// Left out of the row.
    Omit,
    /// Present as `null`.
    Null,
}

/// What happens to changes of DMS's own tables (`awsdms_*`: the apply-exceptions,
/// status, suspended-tables, history and DDL-audit tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmsTables {
    /// Counted (`dms-table`) and skipped.
    Skip,
    /// Routed like any other table.
    Route,
}

/// What happens to a record that can never succeed (poison).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnPoison {
    /// Produce it to the dead-letter topic, then count it done.
    Dlq,
    /// Report it to Lambda (the mapping's retry policy and on-failure destination apply).
    Fail,
    /// Count it as skipped and move on.
    Skip,
}

/// What a dead letter's value keeps of the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterValue {
    /// The record's route applied to `data` and the before-image: excluded columns
    /// removed, masked columns masked; everything else as it arrived.
    Redacted,
    /// The value exactly as it arrived.
    Original,
}

/// What a delete becomes downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DeletePolicy {
    /// A delete event (the envelope with `op = "delete"`).
    #[serde(rename = "event")]
    Event,
    /// Only a tombstone: the key with a null value, for compacted topics.
    #[serde(rename = "tombstone")]
    Tombstone,
    /// The delete event, then a tombstone.
    #[serde(rename = "event+tombstone")]
    EventAndTombstone,
    /// Nothing: deletes are counted as skipped.
    #[serde(rename = "drop")]
    Drop,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    topic: Option<Spanned<String>>,
    unrouted: Option<Unrouted>,
    schema_changes_topic: Option<Spanned<String>>,
    envelope: Option<Envelope>,
    schemas: Option<bool>,
    content_mode: Option<ContentMode>,
    missing: Option<Missing>,
    dlq_topic: Option<Spanned<String>>,
    on_poison: Option<OnPoison>,
    dead_letter_value: Option<DeadLetterValue>,
    ignore_case: Option<bool>,
    dms_tables: Option<DmsTables>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    table: String,
    topic: Option<String>,
    topics: Option<Vec<String>>,
    key: Option<Vec<String>>,
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
    #[serde(default)]
    mask: Vec<String>,
    operations: Option<Vec<Operation>>,
    delete: Option<DeletePolicy>,
    #[serde(default)]
    changed_only: bool,
    #[serde(default)]
    types: BTreeMap<String, Coercion>,
    missing: Option<Missing>,
    on_poison: Option<OnPoison>,
    filter: Option<Spanned<toml::Value>>,
    #[serde(default)]
    hash: Vec<String>,
    #[serde(default)]
    truncate: BTreeMap<String, usize>,
    ignore_case: Option<bool>,
    outbox: Option<RawOutbox>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbox {
    id: Option<String>,
    key: Option<String>,
    payload: Option<String>,
    route_by: Option<String>,
    #[serde(default)]
    expand_json: bool,
    #[serde(default)]
    tombstone_on_empty: bool,
    on_update: Option<OnUpdate>,
    #[serde(default)]
    fields: Vec<String>,
}

/// What an outbox route does with an update of its table (rows are only ever inserted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUpdate {
    /// Skipped, counted and logged as `outbox-update` (Debezium's `warn`).
    Warn,
    /// A record error: dead-lettered or failed by `on_poison` (Debezium's `fatal`, but
    /// per record).
    Refuse,
}

/// A table read as a transactional outbox, with the semantics and defaults of
/// Debezium's outbox `EventRouter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbox {
    /// The column holding the event id (the `id` header). Default `id`.
    pub id: String,
    /// The column holding the Kafka key. Default `aggregateid`.
    pub key: String,
    /// The column holding the event, the message value. Default `payload`.
    pub payload: String,
    /// The column whose value the topic is routed by (`{route}`). Default
    /// `aggregatetype`.
    pub route_by: String,
    /// A payload string holding a JSON object or array is the value itself.
    pub expand_json: bool,
    /// A null or blank payload makes a tombstone.
    pub tombstone_on_empty: bool,
    /// What updates of the outbox table get.
    pub on_update: OnUpdate,
    /// Further columns placed in headers or in an envelope around the payload.
    pub fields: Vec<OutboxField>,
}

/// `column:placement[:alias]`, as Debezium's `table.fields.additional.placement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxField {
    pub column: String,
    pub placement: Placement,
    /// The header's or envelope field's name (default: the column's).
    pub alias: String,
}

/// Where an outbox field goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Header,
    /// A field of `{"payload": ..., alias: ...}`: the value becomes that object.
    Envelope,
}

/// The topic of an outbox route without `topic`: Debezium's `outbox.event.${routedByValue}`.
pub const OUTBOX_TOPIC: &str = "outbox.event.{route}";

fn compile_outbox(raw: RawOutbox) -> Result<Outbox, String> {
    let mut fields = Vec::with_capacity(raw.fields.len());
    for text in &raw.fields {
        let parts: Vec<&str> = text.split(':').collect();
        let (column, placement, alias) = match parts.as_slice() {
            [c, p] => (*c, *p, *c),
            [c, p, a] => (*c, *p, *a),
            _ => {
                return Err(format!(
                    "outbox field {text:?}: write it column:placement[:alias]"
                ))
            }
        };
        let placement = match placement {
            "header" => Placement::Header,
            "envelope" => Placement::Envelope,
            other => {
                return Err(format!(
                    "outbox field {text:?}: placement {other:?} is not \"header\" or \"envelope\""
                ))
            }
        };
        if column.is_empty() || alias.is_empty() {
            return Err(format!(
                "outbox field {text:?}: a column and a name are needed"
            ));
        }
        if placement == Placement::Envelope && alias == "payload" {
            return Err(format!(
                "outbox field {text:?}: \"payload\" is the event's own field"
            ));
        }
        if fields
            .iter()
            .any(|f: &OutboxField| f.placement == placement && f.alias == alias)
        {
            return Err(format!(
                "outbox field {text:?}: the name {alias:?} is used twice"
            ));
        }
        if placement == Placement::Header && (alias == "id" || alias.starts_with("relay-")) {
            return Err(format!(
                "outbox field {text:?}: the header {alias:?} is the relay's own"
            ));
        }
        fields.push(OutboxField {
            column: column.to_owned(),
            placement,
            alias: alias.to_owned(),
        });
    }
    Ok(Outbox {
        id: raw.id.unwrap_or_else(|| "id".to_owned()),
        key: raw.key.unwrap_or_else(|| "aggregateid".to_owned()),
        payload: raw.payload.unwrap_or_else(|| "payload".to_owned()),
        route_by: raw.route_by.unwrap_or_else(|| "aggregatetype".to_owned()),
        expand_json: raw.expand_json,
        tombstone_on_empty: raw.tombstone_on_empty,
        on_update: raw.on_update.unwrap_or(OnUpdate::Warn),
        fields,
    })
}

/// The longest topic name Kafka accepts.
pub const TOPIC_MAX_LEN: usize = 249;

/// Hex digits of the hash that ends a rendered name cut to [`TOPIC_MAX_LEN`].
const CUT_HASH_HEX: usize = 8;

/// Whether Kafka accepts `c` in a topic name (`[a-zA-Z0-9._-]`).
fn legal_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Why Kafka would refuse `name` as a topic name, or `None` when it accepts it: only
/// `[a-zA-Z0-9._-]`, 1 to 249 characters, neither `.` nor `..`.
pub fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".to_owned());
    }
    if name == "." || name == ".." {
        return Some(format!("{name:?} is not a topic name Kafka accepts"));
    }
    if let Some(c) = name.chars().find(|c| !legal_topic_char(*c)) {
        return Some(format!(
            "has {c:?}: Kafka accepts only ASCII letters, digits, '.', '_' and '-' in a topic name"
        ));
    }
    if name.len() > TOPIC_MAX_LEN {
        return Some(format!(
            "is {} characters long: Kafka accepts at most {TOPIC_MAX_LEN}",
            name.len()
        ));
    }
    None
}

/// A name rendered from DMS's schema and table made one Kafka accepts, the way Debezium
/// does it: every character Kafka refuses becomes `_` (`HR.ORDER#LINES` ->
/// `HR.ORDER_LINES`, `/BIC/AZSALES` -> `_BIC_AZSALES`). A name longer than
/// [`TOPIC_MAX_LEN`] keeps its first 240 characters, then `-` and the first 8 hex digits
/// of the SHA-256 of the whole name as rendered (before any replacement), so two long
/// names that differ only past the cut stay apart. A name with characters outside ASCII
/// (Korean, Chinese, Japanese table names) gets the same `-` and hash however long it
/// is: every such character becomes the same `_`, so without it every table whose name
/// has as many of them would share one topic (`주문` and `고객` would both be `__`).
/// `.` and `..` become `_` and `__`, an empty name `_`. A legal name is returned
/// unchanged.
pub fn legal_topic_name(rendered: &str) -> std::borrow::Cow<'_, str> {
    if topic_name_problem(rendered).is_none() {
        return std::borrow::Cow::Borrowed(rendered);
    }
    let mut out: String = rendered
        .chars()
        .map(|c| if legal_topic_char(c) { c } else { '_' })
        .collect();
    if out.is_empty() || out == "." || out == ".." {
        out = "_".repeat(out.len().max(1));
    }
    if out.len() > TOPIC_MAX_LEN || !rendered.is_ascii() {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(rendered.as_bytes());
        // Every character is ASCII now: any byte index is a char boundary.
        out.truncate(TOPIC_MAX_LEN - CUT_HASH_HEX - 1);
        out.push('-');
        out.push_str(&hex::encode(digest)[..CUT_HASH_HEX]);
    }
    std::borrow::Cow::Owned(out)
}

/// A topic name with `{schema}` / `{table}` placeholders, split once at init. Its
/// literal text must be legal in a topic name; what a placeholder brings is made legal
/// when rendered ([`legal_topic_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<TopicPart>,
    /// The rendered name when the template has no placeholders (the common case):
    /// shared by every message instead of formatted per record.
    fixed: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TopicPart {
    Literal(String),
    Schema,
    Table,
    /// `{route}`: an outbox row's `route_by` value (outbox routes only).
    Route,
}

impl TopicTemplate {
    /// Parses `"cdc.{schema}.{table}"`. Unknown placeholders and unbalanced braces are errors.
    pub fn parse(text: &str) -> Result<TopicTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if rest[..open].contains('}') {
                return Err(format!("topic {text:?} has an unmatched `}}`"));
            }
            if open > 0 {
                parts.push(TopicPart::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("topic {text:?} has an unclosed `{{`"))?;
            parts.push(match &rest[open + 1..open + close] {
                "schema" => TopicPart::Schema,
                "table" => TopicPart::Table,
                "route" => TopicPart::Route,
                other => {
                    return Err(format!(
                        "topic {text:?} has unknown placeholder {{{other}}} (use {{schema}} or {{table}}; {{route}} in an outbox route)"
                    ))
                }
            });
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("topic {text:?} has an unmatched `}}`"));
        }
        if !rest.is_empty() {
            parts.push(TopicPart::Literal(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("topic must not be empty".to_owned());
        }
        let literal: String = parts
            .iter()
            .filter_map(|part| match part {
                TopicPart::Literal(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        if let Some(c) = literal.chars().find(|c| !legal_topic_char(*c)) {
            return Err(format!(
                "topic {text:?} has {c:?}: Kafka accepts only ASCII letters, digits, '.', '_' and '-' in a topic name"
            ));
        }
        let fixed = match parts.as_slice() {
            [TopicPart::Literal(only)] => {
                if let Some(problem) = topic_name_problem(only) {
                    return Err(format!("topic {text:?} {problem}"));
                }
                Some(Arc::from(only.as_str()))
            }
            _ if literal.len() >= TOPIC_MAX_LEN => {
                return Err(format!(
                    "topic {text:?} leaves no room for the names it renders: Kafka accepts at most {TOPIC_MAX_LEN} characters"
                ))
            }
            _ => None,
        };
        Ok(TopicTemplate { parts, fixed })
    }

    /// The template as written (`cdc.{schema}.{table}`).
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                TopicPart::Literal(s) => s.as_str(),
                TopicPart::Schema => "{schema}",
                TopicPart::Table => "{table}",
                TopicPart::Route => "{route}",
            })
            .collect()
    }

    /// Whether the template has a `{route}` placeholder (only an outbox route may).
    pub fn routes_by_value(&self) -> bool {
        self.parts.contains(&TopicPart::Route)
    }

    /// The topic of an outbox row whose `route_by` value is `value`, always a name Kafka
    /// accepts ([`legal_topic_name`]).
    pub fn render_outbox(&self, schema: &str, table: &str, value: &str) -> Arc<str> {
        if let Some(fixed) = &self.fixed {
            return fixed.clone();
        }
        let out = self.render_parts(schema, table, value);
        match legal_topic_name(&out) {
            std::borrow::Cow::Borrowed(_) => Arc::from(out),
            std::borrow::Cow::Owned(legal) => Arc::from(legal),
        }
    }

    /// Whether `topic` is one this template renders (a placeholder stands for any
    /// non-empty text).
    pub fn matches(&self, topic: &str) -> bool {
        fn rest(parts: &[TopicPart], topic: &str) -> bool {
            match parts.split_first() {
                None => topic.is_empty(),
                Some((TopicPart::Literal(s), more)) => topic
                    .strip_prefix(s.as_str())
                    .is_some_and(|t| rest(more, t)),
                Some((_, more)) => topic
                    .char_indices()
                    .skip(1)
                    .map(|(at, _)| at)
                    .chain([topic.len()])
                    .any(|at| !topic.is_empty() && rest(more, &topic[at..])),
            }
        }
        // A name made legal with a hash ([`legal_topic_name`]) ends in `-` and 8 hex
        // digits after what the template wrote: matched without them too.
        let stem = topic.rsplit_once('-').and_then(|(stem, hash)| {
            (hash.len() == CUT_HASH_HEX
                && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then_some(stem)
        });
        rest(&self.parts, topic) || stem.is_some_and(|stem| rest(&self.parts, stem))
    }

    /// Whether the template has no placeholder: its one name was checked at init.
    pub fn is_fixed(&self) -> bool {
        self.fixed.is_some()
    }

    /// The topic for a change of `schema.table`, always a name Kafka accepts
    /// ([`legal_topic_name`]).
    pub fn render(&self, schema: &str, table: &str) -> Arc<str> {
        if let Some(fixed) = &self.fixed {
            return fixed.clone();
        }
        let out = self.render_as_written(schema, table);
        match legal_topic_name(&out) {
            std::borrow::Cow::Borrowed(_) => Arc::from(out),
            std::borrow::Cow::Owned(legal) => Arc::from(legal),
        }
    }

    /// The name with DMS's schema and table put in as they came (what [`render`]
    /// makes legal): for `check-routes` to show what was replaced.
    ///
    /// [`render`]: TopicTemplate::render
    pub fn render_as_written(&self, schema: &str, table: &str) -> String {
        self.render_parts(schema, table, "")
    }

    fn render_parts(&self, schema: &str, table: &str, route: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TopicPart::Literal(s) => out.push_str(s),
                TopicPart::Schema => out.push_str(schema),
                TopicPart::Table => out.push_str(table),
                TopicPart::Route => out.push_str(route),
            }
        }
        out
    }
}

/// How a route's table pattern matches `schema.table`.
#[derive(Debug, Clone)]
enum TableMatcher {
    Exact(String),
    Glob(GlobMatcher),
}

/// One compiled `[[route]]`.
#[derive(Debug, Clone)]
pub struct Route {
    /// The `table` pattern as written: how errors and logs name the route.
    pub table: String,
    matcher: TableMatcher,
    /// Downstream topics; more than one fans a change out.
    pub topics: Vec<TopicTemplate>,
    /// Source columns whose values form the downstream key; `None`: DMS's Kafka key,
    /// else `schema.table`.
    pub key: Option<Vec<String>>,
    /// Only these source columns, when set.
    pub include: Option<HashSet<String>>,
    /// Never these source columns.
    pub exclude: HashSet<String>,
    /// Source column -> downstream name.
    pub rename: BTreeMap<String, String>,
    /// Source columns whose values are replaced by [`MASK`](super::MASK).
    pub mask: HashSet<String>,
    /// Operations this route emits.
    pub operations: Vec<Operation>,
    /// What deletes become.
    pub delete: DeletePolicy,
    /// On update, emit only when a column surviving the mapping changed.
    pub changed_only: bool,
    /// Source column -> coercion.
    pub types: BTreeMap<String, Coercion>,
    /// What a missing `include`d column becomes.
    pub missing: Missing,
    /// Per-route override of `defaults.on_poison`.
    pub on_poison: Option<OnPoison>,
    /// Only changes matching this pattern are emitted; the rest are skipped (`filter`).
    pub filter: Option<Filter>,
    /// Source columns whose values are replaced by a keyed pseudonym.
    pub hash: HashSet<String>,
    /// Source column -> most characters kept.
    pub truncate: BTreeMap<String, usize>,
    /// Whether the table pattern and column names match regardless of ASCII case.
    pub ignore_case: bool,
    /// The table is a transactional outbox: rows become the events they hold.
    pub outbox: Option<Outbox>,
    /// What happens to each column the route names; `other` for the rest. Compiled
    /// once, so the transform looks a column up once.
    plan: ColumnPlans,
}

/// What the transform does with one column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnPlan {
    /// Whether the column survives `include`/`exclude`.
    pub keep: bool,
    /// Its coercion, from `types`.
    pub coerce: Option<Coercion>,
    /// Whether its value is masked.
    pub mask: bool,
    /// Whether its value is replaced by its pseudonym.
    pub hash: bool,
    /// The most characters its (string) value keeps.
    pub truncate: Option<usize>,
    /// Its downstream name, when renamed.
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
struct ColumnPlans {
    /// Distinct for every set of plans made (a clone keeps it, and the plans with it): a
    /// row's plans remembered under it are never read for another set.
    id: u64,
    /// The slot of each named column's plan in `plans`: a fast hash, not a
    /// DoS-resistant one (the keys are the route's own column names).
    named: HashMap<String, u32, foldhash::fast::FixedState>,
    plans: Vec<ColumnPlan>,
    other: ColumnPlan,
    /// Whether a column is looked up lower-cased (the route's `ignore_case` when the
    /// plans were made): part of what the plans are, so one `id` always resolves a
    /// name the same way.
    ignore_case: bool,
}

/// The slot of the plan of a column the route does not name.
pub(crate) const OTHER_COLUMNS: u32 = u32::MAX;

/// The next [`ColumnPlans::id`].
static NEXT_PLANS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Default for ColumnPlans {
    fn default() -> ColumnPlans {
        ColumnPlans::new(Vec::new(), ColumnPlan::default(), false)
    }
}

impl ColumnPlans {
    fn new(named: Vec<(String, ColumnPlan)>, other: ColumnPlan, ignore_case: bool) -> ColumnPlans {
        let mut plans = Vec::with_capacity(named.len());
        let named = named
            .into_iter()
            .map(|(column, plan)| {
                let slot = u32::try_from(plans.len()).unwrap_or(OTHER_COLUMNS);
                plans.push(plan);
                (column, slot)
            })
            .collect();
        ColumnPlans {
            id: NEXT_PLANS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            named,
            plans,
            other,
            ignore_case,
        }
    }

    fn compile(route: &Route) -> ColumnPlans {
        // Every name as the route compares it (lower-cased on an `ignore_case` route).
        let set = |names: &HashSet<String>| -> HashSet<String> {
            names.iter().map(|n| route.fold(n).into_owned()).collect()
        };
        let include = route.include.as_ref().map(set);
        let (exclude, mask, hash) = (set(&route.exclude), set(&route.mask), set(&route.hash));
        let mut names: HashSet<String> =
            exclude.iter().chain(&mask).chain(&hash).cloned().collect();
        names.extend(include.iter().flatten().cloned());
        names.extend(route.rename.keys().map(|n| route.fold(n).into_owned()));
        names.extend(route.types.keys().map(|n| route.fold(n).into_owned()));
        names.extend(route.truncate.keys().map(|n| route.fold(n).into_owned()));
        fn find<'m, V>(
            route: &Route,
            names: &'m BTreeMap<String, V>,
            column: &str,
        ) -> Option<&'m V> {
            names
                .iter()
                .find(|(name, _)| route.same_column(name, column))
                .map(|(_, value)| value)
        }
        let named = names
            .into_iter()
            .map(|column| {
                let plan = ColumnPlan {
                    keep: include.as_ref().is_none_or(|inc| inc.contains(&column))
                        && !exclude.contains(&column),
                    coerce: find(route, &route.types, &column).copied(),
                    mask: mask.contains(&column),
                    hash: hash.contains(&column),
                    truncate: find(route, &route.truncate, &column).copied(),
                    name: find(route, &route.rename, &column).cloned(),
                };
                (column, plan)
            })
            .collect();
        let include = route.include.as_ref();
        ColumnPlans::new(
            named,
            ColumnPlan {
                keep: include.is_none(),
                ..ColumnPlan::default()
            },
            route.ignore_case,
        )
    }
}

/// Checks that every column name of `names` is written once (also regardless of ASCII
/// case on an `ignore_case` route, where `ID` and `id` are one column).
fn distinct<'n>(
    what: &str,
    names: impl IntoIterator<Item = &'n String>,
    ignore_case: bool,
) -> Result<(), String> {
    let mut seen = HashSet::new();
    for name in names {
        let folded = if ignore_case {
            name.to_ascii_lowercase()
        } else {
            name.clone()
        };
        if !seen.insert(folded) {
            return Err(format!("{what} names column {name:?} twice"));
        }
    }
    Ok(())
}

impl Route {
    /// What the route does with `column` (a source name).
    pub fn plan(&self, column: &str) -> &ColumnPlan {
        self.plan_at(self.plan_slot(column))
    }

    /// The plan in `slot` ([`Route::plan_slot`]).
    pub(crate) fn plan_at(&self, slot: u32) -> &ColumnPlan {
        usize::try_from(slot)
            .ok()
            .and_then(|slot| self.plan.plans.get(slot))
            .unwrap_or(&self.plan.other)
    }

    /// Which set of plans the route's slots index: rows' plans remembered under it
    /// are this route's (or a clone's, which has the same plans).
    pub(crate) fn plans_id(&self) -> u64 {
        self.plan.id
    }

    /// Where the plan of `column` (a source name) lies, for [`Route::plan_at`]:
    /// [`OTHER_COLUMNS`] for a column the route does not name.
    pub(crate) fn plan_slot(&self, column: &str) -> u32 {
        let found = if self.plan.ignore_case && column.bytes().any(|b| b.is_ascii_uppercase()) {
            // Folded on the stack: Oracle's names are upper-case, looked up per column
            // of every record.
            let mut buffer = [0u8; 64];
            match buffer.get_mut(..column.len()) {
                Some(lower) => {
                    lower.copy_from_slice(column.as_bytes());
                    lower.make_ascii_lowercase();
                    // ASCII lower-casing keeps UTF-8 valid.
                    std::str::from_utf8(lower)
                        .ok()
                        .and_then(|folded| self.plan.named.get(folded))
                }
                None => self.plan.named.get(&column.to_ascii_lowercase()),
            }
        } else {
            self.plan.named.get(column)
        };
        found.copied().unwrap_or(OTHER_COLUMNS)
    }

    /// The downstream name of `column` (a source name): its rename, else itself.
    pub fn output_name<'r>(&'r self, column: &'r str) -> &'r str {
        if !self.ignore_case {
            return self.rename.get(column).map_or(column, String::as_str);
        }
        self.plan(column).name.as_deref().unwrap_or(column)
    }

    /// A column name as the route compares it: lower-cased on an `ignore_case` route.
    pub fn fold<'c>(&self, column: &'c str) -> std::borrow::Cow<'c, str> {
        if self.ignore_case && column.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(column.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(column)
        }
    }

    /// Whether the route's column name `named` is the source column `column`.
    pub fn same_column(&self, named: &str, column: &str) -> bool {
        if self.ignore_case {
            named.eq_ignore_ascii_case(column)
        } else {
            named == column
        }
    }

    /// Whether the route takes `schema.table`.
    pub fn matches(&self, qualified: &str) -> bool {
        match &self.matcher {
            TableMatcher::Exact(name) if self.ignore_case => name.eq_ignore_ascii_case(qualified),
            TableMatcher::Exact(name) => name == qualified,
            TableMatcher::Glob(glob) => glob.is_match(qualified),
        }
    }

    /// Whether the route removes or hides columns (`include`, `exclude`, `mask`, `hash`).
    pub fn redacts(&self) -> bool {
        self.include.is_some()
            || !self.exclude.is_empty()
            || !self.mask.is_empty()
            || !self.hash.is_empty()
    }

    /// A route sending everything to `topic`, unmapped.
    pub fn passthrough(topic: TopicTemplate) -> Route {
        Route {
            table: "*".to_owned(),
            matcher: TableMatcher::Exact(String::new()),
            topics: vec![topic],
            key: None,
            include: None,
            exclude: HashSet::new(),
            rename: BTreeMap::new(),
            mask: HashSet::new(),
            operations: Operation::ALL.to_vec(),
            delete: DeletePolicy::Event,
            changed_only: false,
            types: BTreeMap::new(),
            missing: Missing::Omit,
            on_poison: None,
            filter: None,
            hash: HashSet::new(),
            truncate: BTreeMap::new(),
            ignore_case: false,
            outbox: None,
            plan: ColumnPlans::new(
                Vec::new(),
                ColumnPlan {
                    keep: true,
                    ..ColumnPlan::default()
                },
                false,
            ),
        }
    }
}

/// The validated routes file.
#[derive(Debug, Clone)]
pub struct Routes {
    /// Where the routes came from, for messages.
    pub source: String,
    /// Routes in file order; the first match wins.
    pub routes: Vec<Route>,
    /// What unrouted tables get: `Some(route)` for `unrouted = "default"`.
    pub unrouted_route: Option<Route>,
    /// The unrouted policy.
    pub unrouted: Unrouted,
    /// Where DDL/control records go as schema-change events; `None`: counted, skipped.
    pub schema_changes_topic: Option<TopicTemplate>,
    /// Shape of downstream values.
    pub envelope: Envelope,
    /// Under the Debezium envelope: keys and values carry Kafka Connect's JSON schema
    /// (`{"schema", "payload"}`, a JsonConverter with `schemas.enable=true`).
    pub connect_schemas: bool,
    /// Under the CloudEvents envelope: how the event is carried.
    pub content_mode: ContentMode,
    /// The dead-letter topic, if any (`RELAY_DLQ_TOPIC` overrides it).
    pub dlq_topic: Option<String>,
    /// Default poison policy: `dlq` when a DLQ topic is set, else `fail`.
    pub on_poison: OnPoison,
    /// What dead letters' values keep (`redacted` unless the file says `original`).
    pub dead_letter_value: DeadLetterValue,
    /// What changes of DMS's own `awsdms_*` tables get.
    pub dms_tables: DmsTables,
    /// The key of `hash` pseudonyms ([`Routes::set_hash_key`]).
    hash_key: Option<HashKey>,
}

impl Routes {
    /// Reads and validates a routes file.
    pub fn load(path: &std::path::Path) -> Result<Routes, ConfigError> {
        Routes::load_with_dlq(path, None)
    }

    /// Reads and validates a routes file; `dlq_topic` (from `RELAY_DLQ_TOPIC`) overrides
    /// the file's `dlq_topic`.
    pub fn load_with_dlq(
        path: &std::path::Path,
        dlq_topic: Option<String>,
    ) -> Result<Routes, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::RoutesIo {
            path: path.display().to_string(),
            source,
        })?;
        Routes::parse_with_dlq(&text, &path.display().to_string(), dlq_topic)
    }

    /// Parses and validates routes text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Routes, ConfigError> {
        Routes::parse_with_dlq(text, source, None)
    }

    /// [`Routes::parse`] with a dead-letter topic overriding the file's.
    pub fn parse_with_dlq(
        text: &str,
        source: &str,
        dlq_override: Option<String>,
    ) -> Result<Routes, ConfigError> {
        let fail = |problem: String| ConfigError::Routes {
            path: source.to_owned(),
            problem,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, s.start)))
                .unwrap_or_default();
            fail(format!("{line}{}", e.message()))
        })?;
        let default_topic = match &raw.defaults.topic {
            Some(t) => TopicTemplate::parse(t.get_ref()).map_err(|p| {
                fail(format!(
                    "line {}: [defaults] {p}",
                    line_of(text, t.span().start)
                ))
            })?,
            None => TopicTemplate::parse("cdc.{schema}.{table}").map_err(fail)?,
        };
        if default_topic.routes_by_value() {
            return Err(fail(
                "[defaults] topic: {route} is for outbox routes (`outbox = { ... }`)".to_owned(),
            ));
        }
        let defaults = raw.defaults;
        let missing = defaults.missing.unwrap_or(Missing::Omit);
        let ignore_case = defaults.ignore_case.unwrap_or(false);
        let unrouted = defaults.unrouted.unwrap_or(Unrouted::Default);
        let mut passthrough = Route::passthrough(default_topic);
        passthrough.missing = missing;
        let unrouted_route = (unrouted == Unrouted::Default).then_some(passthrough);
        let schema_changes_topic = match &defaults.schema_changes_topic {
            Some(t) => Some(TopicTemplate::parse(t.get_ref()).map_err(|p| {
                fail(format!(
                    "line {}: schema_changes_topic: {p}",
                    line_of(text, t.span().start)
                ))
            })?),
            None => None,
        };
        if schema_changes_topic
            .as_ref()
            .is_some_and(TopicTemplate::routes_by_value)
        {
            return Err(fail(
                "schema_changes_topic: {route} is for outbox routes (`outbox = { ... }`)"
                    .to_owned(),
            ));
        }
        let dlq_topic = match &defaults.dlq_topic {
            Some(t) if t.get_ref().trim().is_empty() => {
                return Err(fail(format!(
                    "line {}: dlq_topic must not be empty",
                    line_of(text, t.span().start)
                )))
            }
            Some(t) => Some(t.get_ref().clone()),
            None => None,
        };
        let mut lines = Vec::with_capacity(raw.route.len());
        let routes = raw
            .route
            .into_iter()
            .map(|spanned| {
                let line = line_of(text, spanned.span().start);
                lines.push(line);
                let raw = spanned.into_inner();
                let table = raw.table.clone();
                compile_route(raw, missing, ignore_case)
                    .map_err(|p| fail(format!("line {line}: route {table:?}: {p}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The first route whose pattern matches takes the change: a table route after
        // one that already takes its table could never apply (its masks neither).
        for (i, route) in routes.iter().enumerate() {
            let TableMatcher::Exact(name) = &route.matcher else {
                continue;
            };
            // A later `ignore_case` route still takes the spellings a case-sensitive
            // earlier one leaves.
            let shadows = |r: &Route| r.matches(name) && (r.ignore_case || !route.ignore_case);
            if let Some((j, earlier)) = routes[..i].iter().enumerate().find(|(_, r)| shadows(r)) {
                return Err(fail(format!(
                    "line {}: route {:?} can never apply: the route {:?} on line {} comes first and takes its changes (put the table's own route first)",
                    lines.get(i).copied().unwrap_or_default(),
                    route.table,
                    earlier.table,
                    lines.get(j).copied().unwrap_or_default(),
                )));
            }
        }
        let envelope = defaults.envelope.unwrap_or(Envelope::Relay);
        if defaults.schemas.is_some() && envelope != Envelope::Debezium {
            return Err(fail(
                "[defaults] schemas applies to envelope = \"debezium\" only".to_owned(),
            ));
        }
        if defaults.content_mode.is_some() && envelope != Envelope::CloudEvents {
            return Err(fail(
                "[defaults] content_mode applies to envelope = \"cloudevents\" only".to_owned(),
            ));
        }
        let mut routes = Routes {
            source: source.to_owned(),
            routes,
            unrouted_route,
            unrouted,
            schema_changes_topic,
            envelope,
            connect_schemas: defaults.schemas.unwrap_or(true),
            content_mode: defaults.content_mode.unwrap_or(ContentMode::Structured),
            dlq_topic: None,
            on_poison: OnPoison::Fail,
            dead_letter_value: defaults
                .dead_letter_value
                .unwrap_or(DeadLetterValue::Redacted),
            dms_tables: defaults.dms_tables.unwrap_or(DmsTables::Skip),
            hash_key: None,
        };
        routes
            .set_dlq(dlq_override.or(dlq_topic), defaults.on_poison)
            .map_err(fail)?;
        routes.check_outbox_topics().map_err(fail)?;
        routes.check_flat_names().map_err(fail)?;
        Ok(routes)
    }

    /// Under `envelope = "flat"`, no route renames a column onto, or includes, a field
    /// the envelope adds (`__op`, `__table`, `__source_ts`): the object would hold the
    /// name twice. (A row's own column by such a name is a record error.)
    fn check_flat_names(&self) -> Result<(), String> {
        if self.envelope != Envelope::Flat {
            return Ok(());
        }
        let reserved = |name: &str| super::FLAT_FIELDS.contains(&name);
        for route in &self.routes {
            // Output names: the rename targets, and included columns not renamed.
            let named = route
                .rename
                .values()
                .chain(
                    route
                        .include
                        .iter()
                        .flatten()
                        .filter(|name| !route.rename.contains_key(*name)),
                )
                .find(|name| reserved(name));
            if let Some(name) = named {
                return Err(format!(
                    "route {:?}: column name {name:?} is a field of the flat envelope",
                    route.table
                ));
            }
        }
        Ok(())
    }

    /// An outbox route's topic is partly written by the rows (`{route}`): it must name
    /// some of the topic itself, and no row may route into the dead-letter topic or the
    /// schema-changes topic.
    fn check_outbox_topics(&self) -> Result<(), String> {
        let reserved: Vec<String> = self
            .dlq_topic
            .iter()
            .cloned()
            .chain(self.schema_changes_topic.iter().map(TopicTemplate::text))
            .collect();
        for route in self.routes.iter().filter(|r| r.outbox.is_some()) {
            for template in route.topics.iter().filter(|t| t.routes_by_value()) {
                let text = template.text();
                if text.replace("{route}", "").is_empty() {
                    return Err(format!(
                        "route {:?}: topic {text:?} lets the rows name any topic: write part of it (the default is {OUTBOX_TOPIC:?})",
                        route.table
                    ));
                }
                if let Some(topic) = reserved.iter().find(|t| template.matches(t)) {
                    return Err(format!(
                        "route {:?}: topic {text:?} lets a row route its event to {topic:?}",
                        route.table
                    ));
                }
            }
        }
        Ok(())
    }

    /// The routes that replace values by pseudonyms (`hash`), by table pattern.
    pub fn hashing_routes(&self) -> Vec<&str> {
        self.routes
            .iter()
            .filter(|r| !r.hash.is_empty())
            .map(|r| r.table.as_str())
            .collect()
    }

    /// Gives the routes their hash key. A route using `hash` without a key is a
    /// configuration error: pseudonyms need a key nobody else has.
    pub fn set_hash_key(&mut self, key: Option<HashKey>) -> Result<(), ConfigError> {
        let hashing = self.hashing_routes();
        if key.is_none() && !hashing.is_empty() {
            return Err(ConfigError::Routes {
                path: self.source.clone(),
                problem: format!(
                    "route {:?} uses `hash` but no hash key is set (set RELAY_HASH_KEY, or RELAY_HASH_KEY_SECRET_ARN to a Secrets Manager secret holding it)",
                    hashing[0]
                ),
            });
        }
        self.hash_key = key;
        Ok(())
    }

    /// The key of `hash` pseudonyms, once set.
    pub fn hash_key(&self) -> Option<&HashKey> {
        self.hash_key.as_ref()
    }

    /// Sets the dead-letter topic and the default poison policy (`dlq` when there is a
    /// topic, else `fail`); `dlq` without a topic is an error.
    fn set_dlq(
        &mut self,
        topic: Option<String>,
        on_poison: Option<OnPoison>,
    ) -> Result<(), String> {
        if let Some(problem) = topic.as_deref().and_then(topic_name_problem) {
            return Err(format!(
                "dlq_topic {:?} {problem}",
                topic.unwrap_or_default()
            ));
        }
        self.dlq_topic = topic;
        let has_dlq = self.dlq_topic.is_some();
        self.on_poison = on_poison.unwrap_or(if has_dlq {
            OnPoison::Dlq
        } else {
            OnPoison::Fail
        });
        let wants_dlq = self.on_poison == OnPoison::Dlq
            || self.unrouted == Unrouted::Dlq
            || self
                .routes
                .iter()
                .any(|r| r.on_poison == Some(OnPoison::Dlq));
        if wants_dlq && !has_dlq {
            return Err("on_poison or unrouted is \"dlq\" but no dlq_topic is set (set [defaults] dlq_topic or RELAY_DLQ_TOPIC)".to_owned());
        }
        Ok(())
    }

    /// The poison policy for a record of `qualified` (`None` when the record did not
    /// decode far enough to know its table).
    pub fn poison_policy(&self, qualified: Option<&str>) -> OnPoison {
        qualified
            .and_then(|q| self.routes.iter().find(|r| r.matches(q)))
            .and_then(|r| r.on_poison)
            .unwrap_or(self.on_poison)
    }

    /// What in the routes makes `topic` for a record of `qualified` (for errors that
    /// must say which setting to fix): the route, the schema-changes topic or the
    /// dead-letter topic.
    pub fn origin_of_topic(&self, qualified: Option<&str>, topic: &str) -> String {
        if self.dlq_topic.as_deref() == Some(topic) {
            return "the dead-letter topic (dlq_topic)".to_owned();
        }
        let (schema, table) = qualified
            .and_then(|q| q.split_once('.'))
            .unwrap_or(("", ""));
        if let Some(route) = qualified.and_then(|q| self.route_for(q)) {
            if route
                .topics
                .iter()
                .any(|t| &*t.render(schema, table) == topic)
            {
                return if route.table == "*" && !self.is_routed(qualified.unwrap_or("")) {
                    "the default topic ([defaults] topic)".to_owned()
                } else {
                    format!("route {:?}", route.table)
                };
            }
        }
        if self
            .schema_changes_topic
            .as_ref()
            .is_some_and(|t| &*t.render(schema, table) == topic)
        {
            return "the schema-changes topic (schema_changes_topic)".to_owned();
        }
        "the routes".to_owned()
    }

    /// The name DMS's schema and table would have given `topic` before characters Kafka
    /// refuses were replaced or the name was cut ([`legal_topic_name`]); `None` when
    /// the rendered name is the one as written. For `check-routes`.
    pub fn topic_as_written(&self, qualified: &str, topic: &str) -> Option<String> {
        let (schema, table) = qualified.split_once('.')?;
        self.route_for(qualified)
            .into_iter()
            .flat_map(|r| r.topics.iter())
            .chain(self.schema_changes_topic.as_ref())
            .filter(|t| &*t.render(schema, table) == topic)
            .map(|t| t.render_as_written(schema, table))
            .find(|written| written != topic)
    }

    /// Whether the routes may write `topic`: the dead-letter topic, or a name a route,
    /// the default or the schema-changes topic can render (a placeholder standing for
    /// any text). A source topic they may write would feed the relay its own output.
    pub fn may_write(&self, topic: &str) -> bool {
        self.dlq_topic.as_deref() == Some(topic)
            || self
                .routes
                .iter()
                .chain(self.unrouted_route.as_ref())
                .any(|r| r.topics.iter().any(|t| t.matches(topic)))
            || self
                .schema_changes_topic
                .as_ref()
                .is_some_and(|t| t.matches(topic))
    }

    /// Whether `topic` is a name written out in the routes (a route's, the default's or
    /// the schema-changes topic without placeholders, or the dead-letter topic): checked
    /// at init, so a broker refusing it is the configuration's fault, not a record's.
    pub fn is_written_topic(&self, topic: &str) -> bool {
        let fixed = |t: &TopicTemplate| t.fixed.as_deref() == Some(topic);
        self.dlq_topic.as_deref() == Some(topic)
            || self
                .routes
                .iter()
                .chain(self.unrouted_route.as_ref())
                .any(|r| r.topics.iter().any(fixed))
            || self.schema_changes_topic.as_ref().is_some_and(fixed)
    }

    /// Whether any route removes or masks columns (`include`, `exclude`, `mask`).
    pub fn redacts_columns(&self) -> bool {
        self.routes.iter().any(|r| r.redacts())
    }

    /// Whether a route names `schema.table` exactly, without wildcards.
    pub fn names_exactly(&self, qualified: &str) -> bool {
        self.routes
            .iter()
            .any(|r| matches!(r.matcher, TableMatcher::Exact(_)) && r.matches(qualified))
    }

    /// Whether a route names `schema.table` (the unrouted policy does not count).
    pub fn is_routed(&self, qualified: &str) -> bool {
        self.routes.iter().any(|r| r.matches(qualified))
    }

    /// The route for `schema.table`: the first route that matches, else the unrouted
    /// policy. `None` means skip.
    pub fn route_for(&self, qualified: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.matches(qualified))
            .or(self.unrouted_route.as_ref())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |head| head.matches('\n').count())
        + 1
}

fn compile_route(
    mut raw: RawRoute,
    default_missing: Missing,
    default_ignore_case: bool,
) -> Result<Route, String> {
    if raw.table.trim().is_empty() {
        return Err("`table` must not be empty".to_owned());
    }
    let ignore_case = raw.ignore_case.unwrap_or(default_ignore_case);
    let glob = raw.table.contains(['*', '?', '[', ']', '{', '}']);
    if !glob && !raw.table.contains('.') {
        return Err(
            "`table` names no schema: write `schema.table` (every DMS change names both), or a pattern such as `*.orders`"
                .to_owned(),
        );
    }
    let matcher = if glob {
        let glob = GlobBuilder::new(&raw.table)
            .case_insensitive(ignore_case)
            .build()
            .map_err(|e| format!("bad table pattern: {e}"))?;
        TableMatcher::Glob(glob.compile_matcher())
    } else {
        TableMatcher::Exact(raw.table.clone())
    };
    let outbox = match raw.outbox.take() {
        Some(outbox) => {
            // The row is published as the application wrote it: nothing maps it.
            let mapping = [
                ("key", raw.key.is_some()),
                ("include", raw.include.is_some()),
                ("exclude", raw.exclude.is_some()),
                ("rename", !raw.rename.is_empty()),
                ("mask", !raw.mask.is_empty()),
                ("hash", !raw.hash.is_empty()),
                ("types", !raw.types.is_empty()),
                ("truncate", !raw.truncate.is_empty()),
                ("delete", raw.delete.is_some()),
                ("changed_only", raw.changed_only),
                ("missing", raw.missing.is_some()),
            ];
            if let Some((name, _)) = mapping.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "`{name}` does not apply to an outbox route: it publishes the event its row holds (the outbox's `key` names the key column)"
                ));
            }
            Some(compile_outbox(outbox)?)
        }
        None => None,
    };
    let topic_texts = match (raw.topic, raw.topics) {
        (Some(_), Some(_)) => return Err("set `topic` or `topics`, not both".to_owned()),
        (Some(t), None) => vec![t],
        (None, Some(ts)) if ts.is_empty() => return Err("`topics` must not be empty".to_owned()),
        (None, Some(ts)) => ts,
        (None, None) if outbox.is_some() => vec![OUTBOX_TOPIC.to_owned()],
        (None, None) => return Err("needs `topic` or `topics`".to_owned()),
    };
    // The same topic twice would carry every change twice, under two event ids that
    // consumers cannot tell for one.
    if let Some(twice) = topic_texts
        .iter()
        .enumerate()
        .find(|(i, t)| topic_texts[..*i].contains(t))
        .map(|(_, t)| t)
    {
        return Err(format!("`topics` lists {twice:?} twice"));
    }
    let topics = topic_texts
        .iter()
        .map(|t| TopicTemplate::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    if outbox.is_none() {
        if let Some(t) = topics.iter().find(|t| t.routes_by_value()) {
            return Err(format!(
                "topic {:?}: {{route}} is for outbox routes (`outbox = {{ ... }}`)",
                t.text()
            ));
        }
    }
    if let Some(key) = &raw.key {
        if key.is_empty() {
            return Err(
                "`key` must name at least one column (omit it to keep DMS's key)".to_owned(),
            );
        }
    }
    if raw.include.as_ref().is_some_and(Vec::is_empty) {
        return Err(
            "`include` names no column: every event's `data` would be empty (omit it to keep every column)"
                .to_owned(),
        );
    }
    if raw.include.is_some() && raw.exclude.is_some() {
        return Err("`include` and `exclude` cannot be used together".to_owned());
    }
    distinct("`rename`", raw.rename.keys(), ignore_case)?;
    distinct("`types`", raw.types.keys(), ignore_case)?;
    distinct("`truncate`", raw.truncate.keys(), ignore_case)?;
    let mut targets = HashSet::new();
    for (from, to) in &raw.rename {
        if to.is_empty() {
            return Err(format!("rename of {from:?} to an empty name"));
        }
        if !targets.insert(to.as_str()) {
            return Err(format!("rename target {to:?} is used twice"));
        }
    }
    // A renamed column must not land on a column that keeps its own name.
    let kept_names: Vec<&String> = match &raw.include {
        Some(include) => include.iter().collect(),
        None => Vec::new(),
    };
    let folded = |name: &str| {
        if ignore_case {
            name.to_ascii_lowercase()
        } else {
            name.to_owned()
        }
    };
    let renamed_from: HashSet<String> = raw.rename.keys().map(|k| folded(k)).collect();
    let target_names: HashSet<String> = targets.iter().map(|t| folded(t)).collect();
    for name in kept_names {
        if target_names.contains(&folded(name)) && !renamed_from.contains(&folded(name)) {
            return Err(format!(
                "rename target {name:?} collides with the included column {name:?}"
            ));
        }
    }
    let operations = raw.operations.unwrap_or_else(|| Operation::ALL.to_vec());
    if operations.is_empty() {
        return Err("`operations` is empty: the route can never emit".to_owned());
    }
    let delete = raw.delete.unwrap_or(DeletePolicy::Event);
    if delete == DeletePolicy::Drop && operations.iter().all(|op| *op == Operation::Delete) {
        return Err(
            "only deletes are selected but `delete = \"drop\"`: the route can never emit"
                .to_owned(),
        );
    }
    for (column, max) in &raw.truncate {
        if *max == 0 {
            return Err(format!(
                "truncate of {column:?} to 0 characters (exclude the column instead)"
            ));
        }
    }
    // A cut decimal, timestamp or hex string is another value (or not one at all).
    for column in raw.truncate.keys() {
        let folded = if ignore_case {
            column.to_ascii_lowercase()
        } else {
            column.clone()
        };
        let typed = raw.types.iter().find(|(c, _)| {
            if ignore_case {
                c.to_ascii_lowercase() == folded
            } else {
                **c == folded
            }
        });
        if let Some((_, coercion)) = typed {
            return Err(format!(
                "truncate of {column:?}, a {} column: cut, it would be another value; truncate only untyped text columns",
                coercion.as_str()
            ));
        }
    }
    if !raw.hash.is_empty() && raw.key.is_none() {
        return Err("`hash` needs `key`: without it the Kafka key is DMS's, which in full load is the primary key as written".to_owned());
    }
    let fold = |c: &String| {
        if ignore_case {
            c.to_ascii_lowercase()
        } else {
            c.clone()
        }
    };
    let hashed: HashSet<String> = raw.hash.iter().map(fold).collect();
    if let Some(both) = raw.mask.iter().find(|c| hashed.contains(&fold(c))) {
        return Err(format!(
            "column {both:?} is both masked and hashed (the mask would hide the pseudonym)"
        ));
    }
    // A key column is written whole into the Kafka key and the envelope's key (and
    // CloudEvents' subject, Debezium's key struct): taking it out of `data` alone would
    // leave it in clear beside its mask. A hashed one keys by its pseudonym instead.
    for column in raw.key.iter().flatten() {
        let folded = fold(column);
        let named = |list: &[String]| list.iter().any(|c| fold(c) == folded);
        // Cut, two values would share a key (and a pseudonym of the cut value too).
        let why = if raw.truncate.keys().any(|c| fold(c) == folded) {
            Some("truncated")
        } else if hashed.contains(&folded) {
            // A hashed key column keys by its pseudonym, of the value as `data` has it.
            None
        } else if named(&raw.mask) {
            Some("masked")
        } else if raw.exclude.as_deref().is_some_and(named) {
            Some("excluded")
        } else if raw.include.as_deref().is_some_and(|list| !named(list)) {
            Some("not included")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(if why == "truncated" {
                format!(
                    "key column {column:?} is truncated: two values alike in their first characters would share one key (one entity, and a tombstone of one erases the other); key by another column"
                )
            } else {
                format!(
                    "key column {column:?} is {why}, yet the key carries its whole value (the Kafka key, the envelope's `key`): hash it (`hash = [{column:?}]`) to key by its pseudonym, or key by another column"
                )
            });
        }
    }
    let filter = match raw.filter {
        None => None,
        Some(spanned) => Some(compile_filter(spanned.into_inner())?),
    };
    let include: Option<HashSet<String>> = raw.include.map(|cols| cols.into_iter().collect());
    let exclude: HashSet<String> = raw.exclude.unwrap_or_default().into_iter().collect();
    let mask: HashSet<String> = raw.mask.into_iter().collect();
    let mut route = Route {
        table: raw.table,
        matcher,
        topics,
        key: raw.key,
        include,
        exclude,
        rename: raw.rename,
        mask,
        operations,
        delete,
        changed_only: raw.changed_only,
        types: raw.types,
        missing: raw.missing.unwrap_or(default_missing),
        on_poison: raw.on_poison,
        filter,
        hash: raw.hash.into_iter().collect(),
        truncate: raw.truncate,
        ignore_case,
        outbox,
        plan: ColumnPlans::default(),
    };
    route.plan = ColumnPlans::compile(&route);
    Ok(route)
}

/// A route's `filter`: an inline table in the event-pattern language, or a string
/// holding the same pattern as JSON (pasted from a Lambda or EventBridge filter).
fn compile_filter(value: toml::Value) -> Result<Filter, String> {
    /// Whether some value inside `value` (itself, or in its arrays and tables) is `leaf`.
    fn anywhere(value: &toml::Value, leaf: &dyn Fn(&toml::Value) -> bool) -> bool {
        match value {
            toml::Value::Array(items) => items.iter().any(|v| anywhere(v, leaf)),
            toml::Value::Table(table) => table.values().any(|v| anywhere(v, leaf)),
            other => leaf(other),
        }
    }
    // A TOML date or time has no JSON form (it would read as an object with a private
    // key); nor has `nan` or `inf` (it would read as `null`, and match null values).
    if anywhere(&value, &|v| matches!(v, toml::Value::Datetime(_))) {
        return Err(
            "filter: a TOML date or time is not a matcher: write it as a string (\"2024-01-01T00:00:00Z\")"
                .to_owned(),
        );
    }
    if anywhere(
        &value,
        &|v| matches!(v, toml::Value::Float(f) if !f.is_finite()),
    ) {
        return Err(
            "filter: nan and inf are not numbers a change can hold: compare with a finite number"
                .to_owned(),
        );
    }
    let json: serde_json::Value = match value {
        toml::Value::String(text) => serde_json::from_str(&text)
            .map_err(|e| format!("filter: the string is not a JSON pattern: {e}"))?,
        other => serde_json::to_value(&other)
            .map_err(|e| format!("filter: cannot be read as a pattern: {e}"))?,
    };
    check_change_fields(&json, "").map_err(|problem| format!("filter: {problem}"))?;
    Filter::parse(&json).map_err(|problem| format!("filter: {problem}"))
}

/// A filter names only what a change has: `op` (one of the operations), `data` and
/// `before` (objects of columns), `metadata` (DMS's field names). A typo would otherwise
/// match nothing and silently skip every record.
fn check_change_fields(pattern: &serde_json::Value, path: &str) -> Result<(), String> {
    use serde_json::Value;
    let Value::Object(fields) = pattern else {
        return Ok(()); // Filter::parse says what is wrong
    };
    for (name, value) in fields {
        match (name.as_str(), value) {
            ("$or", Value::Array(alternatives)) => {
                for (i, alternative) in alternatives.iter().enumerate() {
                    check_change_fields(alternative, &format!("{path}$or[{i}]."))?;
                }
            }
            ("op", Value::Array(matchers)) => check_op_matchers(matchers, path)?,
            ("data" | "before", Value::Object(_)) => {}
            ("metadata", Value::Object(names)) => {
                check_metadata_fields(names, &format!("{path}metadata."))?
            }
            ("op", _) => return Err(format!("{path}op: expected an array of matchers")),
            ("data" | "before" | "metadata", _) => {
                return Err(format!("{path}{name}: expected an object of fields"))
            }
            _ => {
                return Err(format!(
                    "{path}{name}: a change has op, data, before and metadata"
                ))
            }
        }
    }
    Ok(())
}

/// `op`'s matchers name operations: a plain string, and the strings of `anything-but`,
/// `prefix`, `suffix`, `equals-ignore-case` and `wildcard` (also inside `anything-but`,
/// and `prefix`/`suffix` of `equals-ignore-case`), must each name (begin, end, match)
/// one of them, or the matcher would match nothing, or everything.
fn check_op_matchers(matchers: &[serde_json::Value], path: &str) -> Result<(), String> {
    use serde_json::Value;
    for matcher in matchers {
        match matcher {
            Value::String(op) => check_op_text("", op, false, path)?,
            Value::Object(operators) => {
                for (operator, argument) in operators {
                    check_op_operator(operator, argument, false, path)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One operator of an `op` matcher ([`check_op_matchers`]).
fn check_op_operator(
    operator: &str,
    argument: &serde_json::Value,
    any_case: bool,
    path: &str,
) -> Result<(), String> {
    use serde_json::Value;
    match argument {
        Value::String(text) => check_op_text(operator, text, any_case, path),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .try_for_each(|text| check_op_text(operator, text, any_case, path)),
        Value::Object(inner) => inner
            .iter()
            .try_for_each(|(inner_operator, inner_argument)| {
                match (operator, inner_operator.as_str()) {
                    // `{ prefix = { equals-ignore-case = "ins" } }`: the prefix in any case.
                    ("prefix" | "suffix", "equals-ignore-case") => {
                        check_op_operator(operator, inner_argument, true, path)
                    }
                    // `{ anything-but = { prefix = "del" } }`: the inner operator's text.
                    ("anything-but", _) => {
                        check_op_operator(inner_operator, inner_argument, any_case, path)
                    }
                    _ => Ok(()),
                }
            }),
        _ => Ok(()),
    }
}

/// Whether `text`, the argument of `operator` (`""`: a plain string), fits some
/// operation name.
fn check_op_text(operator: &str, text: &str, any_case: bool, path: &str) -> Result<(), String> {
    let same = |a: &str, b: &str| {
        if any_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let known = |test: &dyn Fn(&str) -> bool| Operation::ALL.iter().any(|op| test(op.as_str()));
    let (fits, how) = match operator {
        "" | "anything-but" => (known(&|k| same(k, text)), ""),
        "equals-ignore-case" => (known(&|k| k.eq_ignore_ascii_case(text)), "in any case "),
        "prefix" => (
            known(&|k| k.get(..text.len()).is_some_and(|head| same(head, text))),
            "the start of ",
        ),
        "suffix" => (
            known(&|k| {
                k.len()
                    .checked_sub(text.len())
                    .and_then(|at| k.get(at..))
                    .is_some_and(|tail| same(tail, text))
            }),
            "the end of ",
        ),
        "wildcard" => (known(&|k| wildcard_fits(text, k)), "a pattern of "),
        _ => (true, ""),
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "{path}op: {text:?} is not {how}an operation (load, insert, update, delete)"
        ))
    }
}

/// Whether `name` matches `pattern`, where `*` is any run of characters (a filter's
/// `wildcard`).
fn wildcard_fits(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: the whole name
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// `metadata`'s fields are DMS's, each with an array of matchers (DMS's metadata
/// fields are scalars: an object under one would match nothing), at any depth of `$or`.
fn check_metadata_fields(
    names: &serde_json::Map<String, serde_json::Value>,
    path: &str,
) -> Result<(), String> {
    use serde_json::Value;
    for (name, value) in names {
        match (name.as_str(), value) {
            ("$or", Value::Array(alternatives)) => {
                for (i, alternative) in alternatives.iter().enumerate() {
                    if let Value::Object(names) = alternative {
                        check_metadata_fields(names, &format!("{path}$or[{i}]."))?;
                    }
                }
            }
            ("$or", _) => {}
            (name, _) if !super::METADATA_FIELDS.contains(&name) => {
                return Err(format!(
                    "{path}{name}: not a DMS metadata field ({})",
                    super::METADATA_FIELDS.join(", ")
                ))
            }
            (_, Value::Array(_)) => {}
            (name, _) => {
                return Err(format!(
                    "{path}{name}: expected an array of matchers (DMS's metadata fields hold no objects)"
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> String {
        Routes::parse(text, "routes.toml")
            .expect_err("must be rejected")
            .to_string()
    }

    /// First match wins, wildcards match across the dot, unrouted falls back.
    #[test]
    fn first_match_wins() {
        let routes = Routes::parse(
            r#"
[defaults]
topic = "raw.{schema}.{table}"
[[route]]
table = "public.orders"
topic = "orders"
[[route]]
table = "public.*"
topic = "public.{table}"
"#,
            "t",
        )
        .expect("valid");
        assert_eq!(
            routes.route_for("public.orders").map(|r| r.table.as_str()),
            Some("public.orders")
        );
        assert_eq!(
            routes.route_for("public.users").map(|r| r.table.as_str()),
            Some("public.*")
        );
        let fallback = routes.route_for("sales.x").expect("default route");
        assert_eq!(&*fallback.topics[0].render("sales", "x"), "raw.sales.x");
    }

    /// A template matches exactly the topics it renders, and reads back as written.
    #[test]
    fn topic_templates_match_what_they_render() {
        let t = TopicTemplate::parse("cdc.{schema}.{table}").expect("valid");
        assert_eq!(t.text(), "cdc.{schema}.{table}");
        assert!(t.matches(&t.render("public", "orders")));
        assert!(t.matches("cdc.a.b.c"), "a name may hold a dot");
        assert!(!t.matches("cdc..orders") && !t.matches("cdc.public.") && !t.matches("cd.a.b"));
        let fixed = TopicTemplate::parse("orders").expect("valid");
        assert!(fixed.matches("orders") && !fixed.matches("orders2"));
        // A name outside ASCII, made legal with a hash, still matches its template.
        let versioned = TopicTemplate::parse("cdc.{table}.v1").expect("valid");
        let made_legal = versioned.render("app", "주문");
        assert!(made_legal.contains(".v1-"), "{made_legal}");
        assert!(versioned.matches(&made_legal), "{made_legal}");
        assert!(!versioned.matches("cdc.x.v2-0123abcd"));
    }

    /// Names DMS brings that Kafka refuses are made legal the documented way; legal
    /// names pass unchanged.
    #[test]
    fn rendered_topics_are_always_legal() {
        let t = TopicTemplate::parse("cdc.{schema}.{table}").expect("valid");
        assert_eq!(&*t.render("public", "orders"), "cdc.public.orders");
        assert_eq!(&*t.render("HR", "ORDER#LINES"), "cdc.HR.ORDER_LINES");
        assert_eq!(&*t.render("SYS", "BIN$X1"), "cdc.SYS.BIN_X1");
        assert_eq!(
            &*t.render("SAPR3", "/BIC/AZSALES"),
            "cdc.SAPR3._BIC_AZSALES"
        );
        assert_eq!(&*t.render("dbo", "order lines"), "cdc.dbo.order_lines");
        // Outside ASCII: the hash keeps tables with names of the same length apart.
        use sha2::Digest;
        let hash = |name: &str| {
            hex::encode(sha2::Sha256::digest(name.as_bytes()))[..CUT_HASH_HEX].to_owned()
        };
        let orders = t.render("public", "주문");
        assert_eq!(
            *orders,
            format!("cdc.public.__-{}", hash("cdc.public.주문"))
        );
        assert_ne!(orders, t.render("public", "고객"), "two tables, two topics");
        assert_eq!(
            t.render_as_written("HR", "ORDER#LINES"),
            "cdc.HR.ORDER#LINES"
        );
        let only = TopicTemplate::parse("{table}").expect("valid");
        assert_eq!(&*only.render("s", ".."), "__");
        assert_eq!(&*only.render("s", ""), "_");

        // Too long: cut, with a hash of the whole name so two names stay apart.
        let long_a = "A".repeat(300);
        let long_b = format!("{}B", "A".repeat(299));
        let a = t.render("s", &long_a);
        let b = t.render("s", &long_b);
        assert_eq!(a.len(), TOPIC_MAX_LEN);
        assert_eq!(b.len(), TOPIC_MAX_LEN);
        assert_ne!(a, b, "names that differ past the cut must not collide");
        assert!(a.starts_with(&format!("cdc.s.{}", "A".repeat(200))));
        let whole = format!("cdc.s.{long_a}");
        let expected = &hex::encode(sha2::Sha256::digest(whole.as_bytes()))[..CUT_HASH_HEX];
        assert!(a.ends_with(&format!("-{expected}")), "{a}");
        for name in [
            a,
            b,
            t.render("HR", "ORDER#LINES"),
            only.render("s", "."),
            only.render("s", ""),
            orders,
            t.render("s", &"주".repeat(300)),
        ] {
            assert_eq!(topic_name_problem(&name), None, "{name}");
        }
        // Exactly at the limit: unchanged.
        let fits = "x".repeat(TOPIC_MAX_LEN - "cdc.s.".len());
        assert_eq!(t.render("s", &fits).len(), TOPIC_MAX_LEN);
        assert!(t.render("s", &fits).ends_with('x'));
    }

    /// A topic written out in the routes that Kafka would refuse fails at init, where it
    /// is the configuration's fault, not at the first record.
    #[test]
    fn written_topics_kafka_refuses_fail_at_init() {
        for (topic, why) in [
            ("orders#changes", "'#'"),
            ("cdc/{table}", "'/'"),
            ("..", "not a topic name"),
            ("events for {table}", "' '"),
        ] {
            let text = format!("[[route]]\ntable = \"a.b\"\ntopic = \"{topic}\"\n");
            let error = Routes::parse(&text, "t").expect_err(topic).to_string();
            assert!(error.contains(why), "{topic}: {error}");
        }
        let long = "x".repeat(TOPIC_MAX_LEN + 1);
        let error = Routes::parse(&format!("[defaults]\ntopic = \"{long}\"\n"), "t")
            .expect_err("too long")
            .to_string();
        assert!(error.contains("at most 249"), "{error}");
        let error = Routes::parse("[defaults]\ndlq_topic = \"dead letters\"\n", "t")
            .expect_err("dlq")
            .to_string();
        assert!(
            error.contains("dlq_topic") && error.contains("' '"),
            "{error}"
        );
        let error = Routes::parse("[defaults]\nschema_changes_topic = \"ddl:{schema}\"\n", "t")
            .expect_err("schema changes")
            .to_string();
        assert!(error.contains("':'"), "{error}");

        let routes = Routes::parse(
            "[defaults]\ndlq_topic = \"dlq\"\n[[route]]\ntable = \"a.b\"\ntopics = [\"fixed\", \"cdc.{table}\"]\n",
            "t",
        )
        .expect("valid");
        assert!(routes.is_written_topic("fixed") && routes.is_written_topic("dlq"));
        assert!(routes.may_write("fixed") && routes.may_write("dlq") && routes.may_write("cdc.x"));
        assert!(routes.may_write("cdc.public.orders"), "the default topic");
        assert!(!routes.may_write("dms.cdc") && !routes.may_write("cdc"));
        assert!(!routes.is_written_topic("cdc.b") && !routes.is_written_topic("cdc.public.b"));
    }

    /// `unrouted = "skip"` routes nothing for unmatched tables.
    #[test]
    fn unrouted_skip() {
        let routes = Routes::parse("[defaults]\nunrouted = \"skip\"\n", "t").expect("valid");
        assert!(routes.route_for("a.b").is_none());
    }

    /// Errors name the file, the line and the route.
    #[test]
    fn errors_name_file_line_and_route() {
        let text = "[defaults]\ntopic = \"x\"\n\n[[route]]\ntable = \"public.orders\"\ntopic = \"o\"\ninclude = [\"a\"]\nexclude = [\"b\"]\n";
        let p = problem(text);
        assert!(
            p.contains("routes.toml") && p.contains("line 4") && p.contains("public.orders"),
            "{p}"
        );
        assert!(p.contains("`include` and `exclude`"), "{p}");

        let p = problem("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\ncolour = \"red\"\n");
        assert!(p.contains("line 4") && p.contains("colour"), "{p}");
    }

    /// A route using `hash` needs a key: without one the routes are refused, naming the
    /// route and the setting; with one, or without `hash`, they are accepted.
    #[test]
    fn hash_needs_a_key() {
        let text = "[[route]]\ntable = \"public.users\"\ntopic = \"u\"\nkey = [\"id\"]\nhash = [\"email\"]\n";
        let mut routes = Routes::parse(text, "routes.toml").expect("valid");
        let err = routes.set_hash_key(None).expect_err("no key").to_string();
        assert!(
            err.contains("public.users") && err.contains("RELAY_HASH_KEY"),
            "{err}"
        );
        routes
            .set_hash_key(Some(HashKey::local()))
            .expect("a key is enough");
        let mut plain = Routes::parse("[defaults]\ntopic = \"t\"\n", "t").expect("valid");
        plain.set_hash_key(None).expect("no route hashes");
    }

    /// Each validation rule rejects what it names.
    #[test]
    fn validation_rules() {
        let cases = [
            ("[[route]]\ntable = \"a.b\"\n", "needs `topic`"),
            ("[[route]]\ntable = \"a.[b\"\ntopic = \"t\"\n", "bad table pattern"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t.{tbl}\"\n", "unknown placeholder"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t.{table\"\n", "unclosed"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\ntopics = [\"u\"]\n", "not both"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nkey = []\n", "`key` must name"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nrename = { a = \"x\", b = \"x\" }\n", "used twice"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\ninclude = [\"a\", \"x\"]\nrename = { a = \"x\" }\n", "collides"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\noperations = []\n", "never emit"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\noperations = [\"delete\"]\ndelete = \"drop\"\n", "never emit"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\noperations = [\"upsert\"]\n", "upsert"),
            ("[defaults]\nunrouted = \"maybe\"\n", "maybe"),
            ("[defaults]\ntopic = \"\"\n", "empty"),
            ("not toml at all", "line 1"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\n[route.types]\nprice = \"money\"\n", "money"),
            ("[defaults]\non_poison = \"dlq\"\n", "no dlq_topic"),
            ("[defaults]\nunrouted = \"dlq\"\n", "no dlq_topic"),
            ("[defaults]\nenvelope = \"nested\"\n", "nested"),
            ("[defaults]\nenvelope = \"flat\"\n[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nrename = { op = \"__op\" }\n", "\"__op\" is a field of the flat envelope"),
            ("[defaults]\nenvelope = \"flat\"\n[[route]]\ntable = \"a.b\"\ntopic = \"t\"\ninclude = [\"id\", \"__table\"]\n", "\"__table\" is a field of the flat envelope"),
            ("[defaults]\nschema_changes_topic = \"ddl.{db}\"\n", "unknown placeholder"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { data = { amount = [{ numeric = [\">\"] }] } }\n", "filter: data.amount"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { data = { status = [{ prefixx = \"P\" }] } }\n", "prefixx"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = \"{not json\"\n", "not a JSON pattern"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { op = [] }\n", "filter: op"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nkey = [\"id\"]\nmask = [\"email\"]\nhash = [\"email\"]\n", "both masked and hashed"),
            ("[[route]]\ntable = \"a.b\"\nignore_case = true\ntopic = \"t\"\nkey = [\"id\"]\nmask = [\"EMAIL\"]\nhash = [\"email\"]\n", "both masked and hashed"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\ntruncate = { note = 0 }\n", "0 characters"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\ntruncate = { note = -1 }\n", "line 4: invalid value"),
            ("[[route]]\ntable = \"a.b\"\nignore_case = true\ntopic = \"t\"\nrename = { a = \"x\", A = \"y\" }\n", "names column \"a\" twice"),
            ("[defaults]\ndms_tables = \"maybe\"\n", "maybe"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nhash = [\"email\"]\n", "`hash` needs `key`"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { op = [\"INSERT\"] }\n", "\"INSERT\" is not an operation"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { after = { id = [1] } }\n", "after: a change has op, data, before and metadata"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { data = [\"x\"] }\n", "data: expected an object"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { metadata = { table_name = [\"x\"] } }\n", "metadata.table_name: not a DMS metadata field"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { \"$or\" = [{ op = [\"delete\"] }, { row = { id = [1] } }] }\n", "$or[1].row"),
            ("[[route]]\ntable = \"a.b\"\nignore_case = true\ntopic = \"t\"\ninclude = [\"ID\"]\nrename = { name = \"id\" }\n", "collides"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nkey = [\"email\"]\nmask = [\"email\"]\n", "key column \"email\" is masked"),
            ("[[route]]\ntable = \"a.b\"\nignore_case = true\ntopic = \"t\"\nkey = [\"EMAIL\"]\nmask = [\"email\"]\n", "key column \"EMAIL\" is masked"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nkey = [\"id\", \"code\"]\ntruncate = { code = 3 }\n", "key column \"code\" is truncated"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nkey = [\"email\"]\nhash = [\"email\"]\ntruncate = { email = 3 }\n", "key column \"email\" is truncated: two values"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nkey = [\"ssn\"]\nexclude = [\"ssn\"]\n", "key column \"ssn\" is excluded"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nkey = [\"ssn\"]\ninclude = [\"id\"]\n", "key column \"ssn\" is not included"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\ntruncate = { amount = 4 }\n[route.types]\namount = \"decimal\"\n", "truncate of \"amount\", a decimal column"),
            ("[[route]]\ntable = \"orders\"\ntopic = \"t\"\n", "names no schema"),
            ("[[route]]\ntable = \"public.*\"\ntopic = \"t\"\n[[route]]\ntable = \"public.orders\"\ntopic = \"o\"\nmask = [\"email\"]\n", "line 4: route \"public.orders\" can never apply: the route \"public.*\" on line 1"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\n[[route]]\ntable = \"a.b\"\ntopic = \"u\"\n", "\"a.b\" can never apply"),
            ("[[route]]\ntable = \"A.*\"\nignore_case = true\ntopic = \"t\"\n[[route]]\ntable = \"a.b\"\ntopic = \"u\"\n", "\"a.b\" can never apply"),
            ("[[route]]\ntable = \"a.b\"\ntopics = [\"t\", \"u\", \"t\"]\n", "lists \"t\" twice"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\ninclude = []\n", "`include` names no column"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { metadata = { \"$or\" = [{ table-name = [\"x\"] }, { operation = [\"insrt\"] }, { opration = [\"insert\"] }] } }\n", "metadata.$or[2].opration: not a DMS metadata field"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { metadata = { table-name = { x = [\"y\"] } } }\n", "metadata.table-name: expected an array of matchers"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { op = [{ anything-but = \"INSERT\" }] }\n", "op: \"INSERT\" is not an operation"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { op = [{ anything-but = [\"delete\", \"upsert\"] }] }\n", "op: \"upsert\" is not an operation"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { op = [{ prefix = \"INS\" }] }\n", "op: \"INS\" is not the start of"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { op = [{ suffix = \"ATE\" }] }\n", "op: \"ATE\" is not the end of"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { op = [{ anything-but = { prefix = \"DEL\" } }] }\n", "op: \"DEL\" is not the start of"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { op = [{ anything-but = { equals-ignore-case = \"upsert\" } }] }\n", "op: \"upsert\" is not in any case"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { op = [{ wildcard = \"INS*\" }] }\n", "op: \"INS*\" is not a pattern of"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { op = [{ prefix = { equals-ignore-case = \"UPS\" } }] }\n", "op: \"UPS\" is not the start of"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { data = { at = [1979-05-27T07:32:00Z] } }\n", "a TOML date or time is not a matcher"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { data = { amount = [nan] } }\n", "nan and inf are not numbers"),
            ("[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { data = { amount = [{ numeric = [\">\", inf] }] } }\n", "nan and inf are not numbers"),
            ("[[route]]\ntable = \"a.b\"\nignore_case = true\ntopic = \"t\"\ntruncate = { AT = 10 }\n[route.types]\nat = \"timestamp\"\n", "a timestamp column"),
        ];
        for (text, expected) in cases {
            let p = problem(text);
            assert!(p.contains(expected), "{text:?} -> {p}");
        }
        // What the rules leave allowed: a hashed key column, a key column included, a
        // truncated untyped column beside a typed one.
        for text in [
            "[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nkey = [\"email\"]\nhash = [\"email\"]\n",
            "[[route]]\ntable = \"a.b\"\nignore_case = true\ntopic = \"t\"\nkey = [\"ID\"]\ninclude = [\"id\", \"note\"]\n",
            "[[route]]\ntable = \"a.b\"\ntopic = \"t\"\ntruncate = { note = 4 }\n[route.types]\namount = \"decimal\"\n",
            // A table's own route before a wildcard; a pattern without a dot.
            "[[route]]\ntable = \"public.orders\"\ntopic = \"o\"\n[[route]]\ntable = \"public.*\"\ntopic = \"t\"\n[[route]]\ntable = \"*orders\"\ntopic = \"u\"\n",
            "[defaults]\nenvelope = \"flat\"\n[[route]]\ntable = \"a.b\"\ntopic = \"t\"\ninclude = [\"id\", \"__op\"]\nrename = { __op = \"row_op\" }\n",
            "[[route]]\ntable = \"public.*\"\ntopic = \"t\"\n[[route]]\ntable = \"public.orders\"\nignore_case = true\ntopic = \"o\"\n",
            "[[route]]\ntable = \"public.orders \"\ntopic = \"t\"\n",
            "[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { op = [{ wildcard = \"*sert\" }, { wildcard = \"l*d\" }, { prefix = { equals-ignore-case = \"UPD\" } }, { anything-but = { suffix = \"ete\" } }] }\n",
            "[[route]]\ntable = \"a.b\"\ntopic = \"t\"\nfilter = { op = [{ anything-but = [\"delete\"] }, { prefix = \"ins\" }, { equals-ignore-case = \"UPDATE\" }], metadata = { \"$or\" = [{ table-name = [\"x\"] }, { operation = [\"insert\"] }] } }\n",
        ] {
            let mut routes = Routes::parse(text, "test").expect("valid");
            routes
                .set_hash_key(Some(crate::transform::HashKey::local()))
                .expect("a hash key");
        }
    }
}
