//! Row filters: which changes a route emits, written in the event-pattern language of
//! AWS Lambda event filtering and Amazon EventBridge, so a pattern can be pasted from
//! either (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html>,
//! <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html>).
//!
//! # The language
//!
//! A pattern is a JSON object. Every key must match (AND). A key maps either to a nested
//! object, which descends into the change, or to a non-empty array of matchers, of which
//! any one must match (OR). `"$or": [pattern, pattern, ...]` (at least two alternatives)
//! may appear at any level and matches when one of the alternatives does.
//!
//! The first level names the part of the change (`op`, `data`, `before`, `metadata`),
//! the second a column or metadata field; deeper levels descend into the JSON value of
//! that column (a JSON object, or an array of objects: see below).
//!
//! Matchers:
//!
//! - a string, number, `true`, `false` or `null`: the value equals it. `""` matches an
//!   empty string only and `null` a present null only: they are not interchangeable.
//! - `{"prefix": "x"}`, `{"suffix": "x"}`, each also as `{"prefix": {"equals-ignore-case":
//!   "x"}}`; `{"equals-ignore-case": "x"}`; `{"wildcard": "a*b"}` (`*` is any run of
//!   characters, `\*` a literal star, `\\` a literal backslash; two stars in a row are
//!   refused): string values only. Case is folded per character (Unicode lowercase).
//! - `{"cidr": "10.0.0.0/24"}` (IPv4 or IPv6): a string value holding an address in the
//!   block.
//! - `{"numeric": ["=", 5]}`, `[">", 0]`, `["<=", 5]`, or a lower bound then an upper bound
//!   `[">", 0, "<=", 5]` (operators `=`, `<`, `<=`, `>`, `>=`; the lower bound must be
//!   below the upper one). Bounds are numbers or strings holding a number.
//! - `{"anything-but": v}` where `v` is a string, a number, a non-empty list of only
//!   strings or only numbers, or an object `{"prefix" | "suffix" | "equals-ignore-case" |
//!   "wildcard": "x" or ["x", ...]}`.
//! - `{"exists": true | false}`.
//!
//! # Semantics where AWS leaves room
//!
//! These follow AWS's documentation and, where it is silent, the behaviour of
//! `aws/event-ruler`, the library behind EventBridge:
//!
//! - **Leaves.** Matchers apply to leaf values: strings, numbers, booleans and `null`.
//!   When the value is a JSON array, a matcher matches when it matches any element
//!   (nested arrays are flattened; objects inside are not leaves). An object is not a
//!   leaf ("exists matching only works on leaf nodes"): no matcher matches it, and
//!   `exists: false` does.
//! - **`exists`.** `true` matches any present leaf value, **including `null`** (AWS
//!   flattens a null into the value `null`, so the field exists); `false` matches only
//!   when there is no leaf at the path: the field is absent, or is an object, or is an
//!   empty array (or an array of objects).
//! - **`anything-but`** needs a present leaf value: **an absent field never matches it**
//!   (AWS matches fields of the event, and an absent field has no value to compare).
//!   It matches any present leaf the list does not exclude, including values of another
//!   type: `{"anything-but": "x"}` matches `null`, `true` and `5`; `{"anything-but":
//!   [100]}` matches the string `"100"`; `{"anything-but": {"prefix": "x"}}` matches
//!   non-string values.
//! - **Nested patterns over arrays.** A nested pattern over an array of objects matches
//!   when one element matches all of it. Over a value that is neither an object nor an
//!   array of objects (absent, null, a string...), it is tried against nothing: only
//!   `exists: false` (and `$or`s of such) can match there.
//! - An empty pattern (`{}`) or empty nested object is refused, as AWS refuses it.
//!
//! # Deviations from AWS
//!
//! - **Numbers are compared exactly, never through binary floating point.** Number texts
//!   are compared as decimals: `100`, `100.0` and `1e2` are equal, and any number of
//!   digits is kept (AWS compares exact-value matchers as text, so `300` and `300.0`
//!   differ there, and limits `numeric` to about 15 significant digits). Exact-value
//!   number matchers (`[100]`) and `anything-but` numbers match number values only; a
//!   string `"100"` is a string. A bound in the pattern that needs more than 17
//!   significant digits must be written as a string (`["<", "123456789012345678901"]`):
//!   a pattern number is read through `serde_json::Value` and keeps only what an `f64`
//!   keeps. An exponent beyond 10^15 in either direction is clamped there.
//! - **`numeric` also matches a string whose content is a JSON number literal**
//!   (`"amount": "19.90"`), because AWS DMS writes decimals as strings. AWS matches
//!   numbers only. The other matchers keep AWS's typing.
//!
//! - **An operator's name is never a field name.** `{"amount": {"numeric": [...]}}` (the
//!   operator without its array) is refused rather than read as a field `numeric` that
//!   never matches; a column named `prefix`, `numeric`, `exists`... cannot be filtered on.
//!
//! Not supported: AWS's reading of an exact string matcher that holds an IP address as
//! an address, and `$or` used as an ordinary field name (AWS's compatibility quirk).
//!
//! Matching borrows: a value is read from its JSON text, objects are scanned for the
//! key without building a map, and strings are compared borrowed unless they contain
//! escapes. Nothing here panics or fails on event data: malformed text matches nothing.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Where a filter reads the change.
pub trait Fields {
    /// The JSON text at a top-level `key` (`op`), or at `key` then `name` (`data.amount`,
    /// `metadata.table-name`); None when absent.
    fn get(&self, key: &str, name: Option<&str>) -> Option<Cow<'_, RawValue>>;
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Filter {
    root: Node,
}

impl Filter {
    /// Compiles a pattern. Errors say where and what: `data.amount: unknown operator
    /// "prefixx"`, `data: $or needs at least two patterns, found 1`.
    pub fn parse(pattern: &Value) -> Result<Filter, String> {
        match pattern {
            Value::Object(object) => Ok(Filter {
                root: parse_node(object, "")?,
            }),
            other => Err(format!("a pattern is a JSON object, found {}", show(other))),
        }
    }

    /// Whether the change matches.
    pub fn matches(&self, fields: &dyn Fields) -> bool {
        self.root.matches(&Scope::Top(fields))
    }
}

// ---------------------------------------------------------------------------------------
// The compiled pattern.

/// One pattern object: all fields and every `$or` must match.
#[derive(Debug, Clone)]
struct Node {
    fields: Vec<Field>,
    /// Each `$or` of this object: one of its alternatives must match.
    ors: Vec<Vec<Node>>,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    rule: Rule,
}

#[derive(Debug, Clone)]
enum Rule {
    /// A nested object: descend.
    Nested(Node),
    /// An array of matchers.
    Leaf(Matchers),
}

/// The matchers of one field; any one matching is enough.
#[derive(Debug, Clone)]
struct Matchers {
    exists_true: bool,
    exists_false: bool,
    values: Vec<Matcher>,
}

#[derive(Debug, Clone)]
enum Matcher {
    Str(String),
    Num(Decimal),
    Bool(bool),
    Null,
    Prefix(String),
    /// Lowercased.
    PrefixIgnoreCase(String),
    Suffix(String),
    /// Lowercased.
    SuffixIgnoreCase(String),
    /// Lowercased.
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    Numeric(Range),
    Cidr(Cidr),
    AnythingBut(AnythingBut),
}

#[derive(Debug, Clone)]
enum AnythingBut {
    Strings(Vec<String>),
    Numbers(Vec<Decimal>),
    Prefixes(Vec<String>),
    Suffixes(Vec<String>),
    /// Lowercased.
    IgnoreCase(Vec<String>),
    Wildcards(Vec<Wildcard>),
}

// ---------------------------------------------------------------------------------------
// Matching.

/// Where a pattern object's keys are looked up.
enum Scope<'s> {
    /// The change's parts: `op`, `data`, ...
    Top(&'s dyn Fields),
    /// The fields of one part (`data`'s columns).
    Key(&'s dyn Fields, &'s str),
    /// A JSON object's text.
    Json(&'s RawValue),
    /// Nothing: every key is absent.
    Absent,
}

impl Scope<'_> {
    fn lookup(&self, name: &str) -> Option<Cow<'_, RawValue>> {
        match self {
            Scope::Top(fields) => fields.get(name, None),
            Scope::Key(fields, key) => fields.get(key, Some(name)),
            Scope::Json(object) => find_key(object, name).map(Cow::Borrowed),
            Scope::Absent => None,
        }
    }
}

impl Node {
    fn matches(&self, scope: &Scope<'_>) -> bool {
        self.fields.iter().all(|field| field.matches(scope))
            && self
                .ors
                .iter()
                .all(|alternatives| alternatives.iter().any(|node| node.matches(scope)))
    }
}

impl Field {
    fn matches(&self, scope: &Scope<'_>) -> bool {
        match &self.rule {
            Rule::Nested(node) => match scope {
                Scope::Top(fields) => node.matches(&Scope::Key(*fields, &self.name)),
                Scope::Absent => node.matches(&Scope::Absent),
                _ => {
                    let value = scope.lookup(&self.name);
                    node_matches_value(node, value.as_deref())
                }
            },
            Rule::Leaf(matchers) => {
                let value = scope.lookup(&self.name);
                matchers.matches(value.as_deref())
            }
        }
    }
}

/// A nested pattern against the value at its path: an object is its scope, an array
/// offers each object element, anything else offers nothing.
fn node_matches_value(node: &Node, value: Option<&RawValue>) -> bool {
    let Some(value) = value else {
        return node.matches(&Scope::Absent);
    };
    match first_byte(value) {
        b'{' => node.matches(&Scope::Json(value)),
        b'[' => {
            let mut objects = false;
            match_array(node, value, &mut objects, 0) || (!objects && node.matches(&Scope::Absent))
        }
        _ => node.matches(&Scope::Absent),
    }
}

/// How deep arrays inside arrays are searched. Deeper elements match nothing: a column
/// of `[[[[...` as deep as its bytes allow must not exhaust the stack.
const MAX_ARRAY_DEPTH: usize = 64;

fn match_array(node: &Node, array: &RawValue, objects: &mut bool, depth: usize) -> bool {
    if depth >= MAX_ARRAY_DEPTH {
        return false;
    }
    each_element(array, &mut |element| match first_byte(element) {
        b'{' => {
            *objects = true;
            node.matches(&Scope::Json(element))
        }
        b'[' => match_array(node, element, objects, depth + 1),
        _ => false,
    })
}

impl Matchers {
    fn matches(&self, value: Option<&RawValue>) -> bool {
        let Some(value) = value else {
            return self.exists_false;
        };
        let mut leaf_seen = false;
        let hit = any_leaf(value, 0, &mut |leaf| {
            leaf_seen = true;
            self.exists_true || self.values.iter().any(|m| m.matches(leaf))
        });
        hit || (!leaf_seen && self.exists_false)
    }
}

/// A leaf value of the event.
enum Leaf<'a> {
    Null,
    Bool(bool),
    /// The number's JSON text.
    Num(&'a str),
    Str(Cow<'a, str>),
}

impl Matcher {
    fn matches(&self, leaf: &Leaf<'_>) -> bool {
        match self {
            Matcher::Str(s) => matches!(leaf, Leaf::Str(v) if v == s),
            Matcher::Num(n) => matches!(leaf, Leaf::Num(t) if number_equals(t, n)),
            Matcher::Bool(b) => matches!(leaf, Leaf::Bool(v) if v == b),
            Matcher::Null => matches!(leaf, Leaf::Null),
            Matcher::Prefix(p) => matches!(leaf, Leaf::Str(v) if v.starts_with(p.as_str())),
            Matcher::PrefixIgnoreCase(p) => {
                matches!(leaf, Leaf::Str(v) if starts_with_ignore_case(v, p))
            }
            Matcher::Suffix(p) => matches!(leaf, Leaf::Str(v) if v.ends_with(p.as_str())),
            Matcher::SuffixIgnoreCase(p) => {
                matches!(leaf, Leaf::Str(v) if ends_with_ignore_case(v, p))
            }
            Matcher::EqualsIgnoreCase(p) => {
                matches!(leaf, Leaf::Str(v) if equals_ignore_case(v, p))
            }
            Matcher::Wildcard(w) => matches!(leaf, Leaf::Str(v) if w.matches(v)),
            Matcher::Numeric(range) => {
                let text = match leaf {
                    Leaf::Num(t) => *t,
                    Leaf::Str(v) => v.as_ref(),
                    _ => return false,
                };
                Dec::parse(text).is_some_and(|d| range.contains(d))
            }
            Matcher::Cidr(cidr) => matches!(leaf, Leaf::Str(v) if cidr.contains(v)),
            Matcher::AnythingBut(but) => !but.excludes(leaf),
        }
    }
}

impl AnythingBut {
    /// Whether the leaf is one of the excluded values.
    fn excludes(&self, leaf: &Leaf<'_>) -> bool {
        match (self, leaf) {
            (AnythingBut::Numbers(list), Leaf::Num(t)) => list.iter().any(|n| number_equals(t, n)),
            (AnythingBut::Numbers(_), _) => false,
            (_, Leaf::Str(v)) => match self {
                AnythingBut::Strings(list) => list.iter().any(|s| s == v),
                AnythingBut::Prefixes(list) => list.iter().any(|p| v.starts_with(p.as_str())),
                AnythingBut::Suffixes(list) => list.iter().any(|p| v.ends_with(p.as_str())),
                AnythingBut::IgnoreCase(list) => list.iter().any(|p| equals_ignore_case(v, p)),
                AnythingBut::Wildcards(list) => list.iter().any(|w| w.matches(v)),
                AnythingBut::Numbers(_) => false,
            },
            _ => false,
        }
    }
}

fn number_equals(text: &str, n: &Decimal) -> bool {
    Dec::parse(text).is_some_and(|d| d.cmp(&n.view()) == Ordering::Equal)
}

/// Lowercases per character, as the value side does (no context-dependent forms).
fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

fn equals_ignore_case(value: &str, lowered: &str) -> bool {
    value
        .chars()
        .flat_map(char::to_lowercase)
        .eq(lowered.chars())
}

fn starts_with_ignore_case(value: &str, lowered: &str) -> bool {
    let mut folded = value.chars().flat_map(char::to_lowercase);
    lowered.chars().all(|c| folded.next() == Some(c))
}

fn ends_with_ignore_case(value: &str, lowered: &str) -> bool {
    let mut folded = value.chars().rev().flat_map(|c| c.to_lowercase().rev());
    lowered.chars().rev().all(|c| folded.next() == Some(c))
}

// ---------------------------------------------------------------------------------------
// Reading event JSON without building it.

fn first_byte(raw: &RawValue) -> u8 {
    raw.get()
        .trim_start()
        .as_bytes()
        .first()
        .copied()
        .unwrap_or(b' ')
}

/// Calls `f` with each leaf of `raw` (itself, or the leaves of its elements when it is an
/// array) until `f` returns true; returns whether it did.
fn any_leaf(raw: &RawValue, depth: usize, f: &mut dyn FnMut(&Leaf<'_>) -> bool) -> bool {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'n') => f(&Leaf::Null),
        Some(b't') => f(&Leaf::Bool(true)),
        Some(b'f') => f(&Leaf::Bool(false)),
        Some(b'"') => match parse_str(text) {
            Some(s) => f(&Leaf::Str(s)),
            None => false,
        },
        Some(b'[') if depth < MAX_ARRAY_DEPTH => {
            each_element(raw, &mut |element| any_leaf(element, depth + 1, f))
        }
        Some(b'[') => false,
        Some(b'{') | None => false,
        Some(_) => f(&Leaf::Num(text)),
    }
}

/// A JSON string's content: borrowed from the text unless it has escapes.
fn parse_str(text: &str) -> Option<Cow<'_, str>> {
    // The text is one JSON value (a `RawValue`'s, trimmed).
    if let Some(content) = super::coerce::plain_string(text) {
        return Some(Cow::Borrowed(content));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let s = CowStr::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(s.0)
}

/// Calls `f` with each element of a JSON array until it returns true; returns whether
/// it did. Not an array, or malformed: false.
fn each_element<'a>(array: &'a RawValue, f: &mut dyn FnMut(&'a RawValue) -> bool) -> bool {
    let mut de = serde_json::Deserializer::from_str(array.get());
    (&mut de).deserialize_seq(Elements { f }).unwrap_or(false)
}

/// The value at `name` in a JSON object's text (the last one, if the key repeats).
fn find_key<'a>(object: &'a RawValue, name: &str) -> Option<&'a RawValue> {
    let mut de = serde_json::Deserializer::from_str(object.get());
    (&mut de).deserialize_map(FindKey { name }).ok().flatten()
}

struct Elements<'f, 'a> {
    f: &'f mut dyn FnMut(&'a RawValue) -> bool,
}

impl<'a> Visitor<'a> for Elements<'_, 'a> {
    type Value = bool;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut hit = false;
        // Every element is read, so the array is consumed whole.
        while let Some(element) = seq.next_element::<&'a RawValue>()? {
            if !hit {
                hit = (self.f)(element);
            }
        }
        Ok(hit)
    }
}

struct FindKey<'n> {
    name: &'n str,
}

impl<'a> Visitor<'a> for FindKey<'_> {
    type Value = Option<&'a RawValue>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object")
    }

    fn visit_map<M: MapAccess<'a>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<CowStr<'a>>()? {
            if key.0 == self.name {
                found = Some(map.next_value::<&'a RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A string borrowed from the JSON text when it has no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CowStrVisitor;

        impl<'de> Visitor<'de> for CowStrVisitor {
            type Value = CowStr<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(CowStrVisitor)
    }
}

// ---------------------------------------------------------------------------------------
// Exact decimal numbers.

/// Exponents are clamped to this magnitude, so adding digit counts cannot overflow.
const EXPONENT_LIMIT: i64 = 1_000_000_000_000_000;

/// A JSON number literal read as an exact decimal, borrowing its digits: the value is
/// `0.D × 10^adj` (negative when `neg`), `D` being the `len` significant digits found at
/// `start` in `int` followed by `frac`. Zero has no significant digits.
#[derive(Debug, Clone, Copy)]
struct Dec<'a> {
    neg: bool,
    int: &'a [u8],
    frac: &'a [u8],
    start: usize,
    len: usize,
    adj: i64,
}

impl<'a> Dec<'a> {
    /// Reads a JSON number literal (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`);
    /// None for anything else.
    fn parse(text: &'a str) -> Option<Dec<'a>> {
        let b = text.as_bytes();
        let mut i = 0;
        let neg = b.first() == Some(&b'-');
        if neg {
            i = 1;
        }
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            b.get(from..*i).unwrap_or_default()
        };
        let int = digits(&mut i);
        if int.is_empty() || (int.len() > 1 && int.first() == Some(&b'0')) {
            return None;
        }
        let mut frac: &[u8] = &[];
        if b.get(i) == Some(&b'.') {
            i += 1;
            frac = digits(&mut i);
            if frac.is_empty() {
                return None;
            }
        }
        let mut exp: i64 = 0;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            let exp_neg = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let e = digits(&mut i);
            if e.is_empty() {
                return None;
            }
            for &d in e {
                exp = (exp * 10 + i64::from(d - b'0')).min(EXPONENT_LIMIT);
            }
            if exp_neg {
                exp = -exp;
            }
        }
        if i != b.len() {
            return None;
        }
        let total = int.len() + frac.len();
        let at = |j: usize| {
            if j < int.len() {
                int.get(j).copied()
            } else {
                frac.get(j - int.len()).copied()
            }
        };
        let mut start = 0;
        while start < total && at(start) == Some(b'0') {
            start += 1;
        }
        if start == total {
            return Some(Dec::zero());
        }
        let mut end = total;
        while end > start && at(end - 1) == Some(b'0') {
            end -= 1;
        }
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let adj = count(int.len())
            .saturating_sub(count(start))
            .saturating_add(exp);
        Some(Dec {
            neg,
            int,
            frac,
            start,
            len: end - start,
            adj,
        })
    }

    fn zero() -> Dec<'static> {
        Dec {
            neg: false,
            int: &[],
            frac: &[],
            start: 0,
            len: 0,
            adj: 0,
        }
    }

    /// The `i`th significant digit (ASCII).
    fn digit(&self, i: usize) -> u8 {
        let j = self.start + i;
        let d = if j < self.int.len() {
            self.int.get(j)
        } else {
            self.frac.get(j - self.int.len())
        };
        d.copied().unwrap_or(b'0')
    }

    fn signum(&self) -> i8 {
        match (self.len, self.neg) {
            (0, _) => 0,
            (_, true) => -1,
            (_, false) => 1,
        }
    }

    fn cmp(&self, other: &Dec<'_>) -> Ordering {
        let sign = self.signum();
        match sign.cmp(&other.signum()) {
            Ordering::Equal if sign == 0 => Ordering::Equal,
            Ordering::Equal => {
                let magnitude = self.adj.cmp(&other.adj).then_with(|| {
                    (0..self.len.min(other.len))
                        .map(|i| self.digit(i).cmp(&other.digit(i)))
                        .find(|o| o.is_ne())
                        .unwrap_or_else(|| self.len.cmp(&other.len))
                });
                if sign < 0 {
                    magnitude.reverse()
                } else {
                    magnitude
                }
            }
            unequal => unequal,
        }
    }
}

/// A pattern's number: its significant digits, owned.
#[derive(Debug, Clone)]
struct Decimal {
    neg: bool,
    digits: Box<[u8]>,
    adj: i64,
}

impl Decimal {
    fn parse(text: &str) -> Option<Decimal> {
        let d = Dec::parse(text)?;
        Some(Decimal {
            neg: d.neg,
            digits: (0..d.len).map(|i| d.digit(i)).collect(),
            adj: d.adj,
        })
    }

    fn view(&self) -> Dec<'_> {
        Dec {
            neg: self.neg,
            int: &self.digits,
            frac: &[],
            start: 0,
            len: self.digits.len(),
            adj: self.adj,
        }
    }
}

#[derive(Debug, Clone)]
struct Bound {
    value: Decimal,
    inclusive: bool,
}

#[derive(Debug, Clone)]
struct Range {
    lower: Option<Bound>,
    upper: Option<Bound>,
}

impl Range {
    fn contains(&self, d: Dec<'_>) -> bool {
        let above = self
            .lower
            .as_ref()
            .is_none_or(|b| match d.cmp(&b.value.view()) {
                Ordering::Greater => true,
                Ordering::Equal => b.inclusive,
                Ordering::Less => false,
            });
        let below = self
            .upper
            .as_ref()
            .is_none_or(|b| match d.cmp(&b.value.view()) {
                Ordering::Less => true,
                Ordering::Equal => b.inclusive,
                Ordering::Greater => false,
            });
        above && below
    }
}

// ---------------------------------------------------------------------------------------
// Wildcards and CIDR blocks.

/// A wildcard pattern: literal parts, a `*` between each two.
#[derive(Debug, Clone)]
struct Wildcard {
    parts: Vec<String>,
}

impl Wildcard {
    fn parse(pattern: &str) -> Result<Wildcard, String> {
        let mut parts = vec![String::new()];
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('*' | '\\')) => push_char(&mut parts, e),
                    _ => {
                        return Err(format!(
                            "\"wildcard\" {pattern:?}: a backslash escapes only * or \\"
                        ))
                    }
                },
                '*' => {
                    if chars.peek() == Some(&'*') {
                        return Err(format!(
                            "\"wildcard\" {pattern:?}: two * in a row are not allowed"
                        ));
                    }
                    parts.push(String::new());
                }
                c => push_char(&mut parts, c),
            }
        }
        Ok(Wildcard { parts })
    }

    fn matches(&self, value: &str) -> bool {
        let Some((first, rest)) = self.parts.split_first() else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return value == first;
        };
        if first.len() + last.len() > value.len()
            || !value.starts_with(first.as_str())
            || !value.ends_with(last.as_str())
        {
            return false;
        }
        let Some(mut inner) = value.get(first.len()..value.len() - last.len()) else {
            return false;
        };
        // With `*` the only operator, taking each part at its first occurrence is enough.
        for part in middle {
            match inner.find(part.as_str()) {
                Some(at) => inner = inner.get(at + part.len()..).unwrap_or_default(),
                None => return false,
            }
        }
        true
    }
}

fn push_char(parts: &mut [String], c: char) {
    if let Some(last) = parts.last_mut() {
        last.push(c);
    }
}

/// An address block.
#[derive(Debug, Clone)]
struct Cidr {
    network: IpAddr,
    bits: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (address, bits) = text.split_once('/')?;
        let network: IpAddr = address.parse().ok()?;
        if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let bits: u8 = bits.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some(Cidr { network, bits })
    }

    fn contains(&self, value: &str) -> bool {
        let Ok(address) = value.parse::<IpAddr>() else {
            return false;
        };
        match (self.network, address) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let shift = 32 - u32::from(self.bits);
                u32::from(n).checked_shr(shift).unwrap_or(0)
                    == u32::from(a).checked_shr(shift).unwrap_or(0)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let shift = 128 - u32::from(self.bits);
                u128::from(n).checked_shr(shift).unwrap_or(0)
                    == u128::from(a).checked_shr(shift).unwrap_or(0)
            }
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Compiling patterns.

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// `path: message`, or the message alone at the top.
fn at(path: &str, message: impl fmt::Display) -> String {
    if path.is_empty() {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

/// A pattern value for an error message, shortened.
fn show(value: &Value) -> String {
    const MAX: usize = 60;
    let text = value.to_string();
    if text.chars().count() <= MAX {
        text
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push_str("...");
        short
    }
}

/// The operator names: never field names in a pattern (a column named like one cannot
/// be filtered on).
const OPERATORS: [&str; 9] = [
    "prefix",
    "suffix",
    "equals-ignore-case",
    "wildcard",
    "cidr",
    "numeric",
    "anything-but",
    "exists",
    "exactly",
];

fn parse_node(object: &Map<String, Value>, path: &str) -> Result<Node, String> {
    if object.is_empty() {
        return Err(at(path, "an empty object matches nothing"));
    }
    let mut node = Node {
        fields: Vec::new(),
        ors: Vec::new(),
    };
    for (name, value) in object {
        if name == "$or" {
            node.ors.push(parse_or(value, path)?);
            continue;
        }
        let here = child(path, name);
        // `amount = { numeric = [...] }` (no array around the operator) would read as a
        // field named "numeric" and never match: refuse it instead of filtering silently.
        if OPERATORS.contains(&name.as_str()) {
            return Err(at(
                &here,
                format!(
                    "\"{name}\" is an operator: put it in an array of matchers, e.g. {{\"{}\": [{{\"{name}\": ...}}]}}",
                    path.rsplit('.').next().unwrap_or(path)
                ),
            ));
        }
        let rule = match value {
            Value::Object(nested) => Rule::Nested(parse_node(nested, &here)?),
            Value::Array(items) => Rule::Leaf(parse_matchers(items, &here)?),
            other => {
                return Err(at(
                    &here,
                    format!(
                        "expected an array of matchers or a nested object, found {}",
                        show(other)
                    ),
                ))
            }
        };
        node.fields.push(Field {
            name: name.clone(),
            rule,
        });
    }
    Ok(node)
}

fn parse_or(value: &Value, path: &str) -> Result<Vec<Node>, String> {
    let Value::Array(items) = value else {
        return Err(at(
            path,
            format!("$or takes an array of patterns, found {}", show(value)),
        ));
    };
    if items.len() < 2 {
        return Err(at(
            path,
            format!("$or needs at least two patterns, found {}", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let here = child(path, &format!("$or[{i}]"));
            match item {
                Value::Object(object) => parse_node(object, &here),
                other => Err(at(
                    &here,
                    format!(
                        "a $or alternative is a pattern object, found {}",
                        show(other)
                    ),
                )),
            }
        })
        .collect()
}

fn parse_matchers(items: &[Value], path: &str) -> Result<Matchers, String> {
    if items.is_empty() {
        return Err(at(path, "an empty array matches nothing"));
    }
    let mut matchers = Matchers {
        exists_true: false,
        exists_false: false,
        values: Vec::new(),
    };
    for item in items {
        match item {
            Value::String(s) => matchers.values.push(Matcher::Str(s.clone())),
            Value::Number(n) => matchers.values.push(Matcher::Num(pattern_number(n, path)?)),
            Value::Bool(b) => matchers.values.push(Matcher::Bool(*b)),
            Value::Null => matchers.values.push(Matcher::Null),
            Value::Array(_) => {
                return Err(at(
                    path,
                    format!("a matcher cannot be an array, found {}", show(item)),
                ))
            }
            Value::Object(object) => {
                let mut entries = object.iter();
                let (Some((op, arg)), None) = (entries.next(), entries.next()) else {
                    return Err(at(
                        path,
                        format!(
                            "a matcher object has exactly one operator, found {}",
                            show(item)
                        ),
                    ));
                };
                match op.as_str() {
                    "exists" => match arg {
                        Value::Bool(true) => matchers.exists_true = true,
                        Value::Bool(false) => matchers.exists_false = true,
                        other => {
                            return Err(at(
                                path,
                                format!("\"exists\" takes true or false, found {}", show(other)),
                            ))
                        }
                    },
                    _ => matchers.values.push(parse_operator(op, arg, path)?),
                }
            }
        }
    }
    Ok(matchers)
}

fn pattern_number(n: &serde_json::Number, path: &str) -> Result<Decimal, String> {
    let text = n.to_string();
    Decimal::parse(&text).ok_or_else(|| at(path, format!("{text} is not a usable number")))
}

fn string_arg<'v>(op: &str, arg: &'v Value, path: &str) -> Result<&'v str, String> {
    match arg {
        Value::String(s) => Ok(s),
        other => Err(at(
            path,
            format!("\"{op}\" takes a string, found {}", show(other)),
        )),
    }
}

/// `{"equals-ignore-case": "x"}` inside `prefix` or `suffix`.
fn ignore_case_arg<'v>(
    op: &str,
    arg: &'v Map<String, Value>,
    path: &str,
) -> Result<&'v str, String> {
    match (arg.len(), arg.get("equals-ignore-case")) {
        (1, Some(Value::String(s))) => Ok(s),
        _ => Err(at(
            path,
            format!(
                "\"{op}\" takes a string or {{\"equals-ignore-case\": string}}, found {}",
                show(&Value::Object(arg.clone()))
            ),
        )),
    }
}

fn parse_operator(op: &str, arg: &Value, path: &str) -> Result<Matcher, String> {
    Ok(match op {
        "prefix" => match arg {
            Value::Object(inner) => {
                Matcher::PrefixIgnoreCase(fold(ignore_case_arg(op, inner, path)?))
            }
            _ => Matcher::Prefix(string_arg(op, arg, path)?.to_owned()),
        },
        "suffix" => match arg {
            Value::Object(inner) => {
                Matcher::SuffixIgnoreCase(fold(ignore_case_arg(op, inner, path)?))
            }
            _ => Matcher::Suffix(string_arg(op, arg, path)?.to_owned()),
        },
        "equals-ignore-case" => Matcher::EqualsIgnoreCase(fold(string_arg(op, arg, path)?)),
        "wildcard" => {
            Matcher::Wildcard(Wildcard::parse(string_arg(op, arg, path)?).map_err(|e| at(path, e))?)
        }
        "cidr" => {
            let text = string_arg(op, arg, path)?;
            Matcher::Cidr(Cidr::parse(text).ok_or_else(|| {
                at(
                    path,
                    format!("\"cidr\" takes an address block like \"10.0.0.0/24\", found {text:?}"),
                )
            })?)
        }
        "numeric" => Matcher::Numeric(parse_numeric(arg, path)?),
        "anything-but" => Matcher::AnythingBut(parse_anything_but(arg, path)?),
        _ => return Err(at(path, format!("unknown operator {op:?}"))),
    })
}

fn parse_numeric(arg: &Value, path: &str) -> Result<Range, String> {
    let arity = || {
        at(
            path,
            format!(
                "\"numeric\" needs an operator and a number, or a lower and an upper bound, found {}",
                show(arg)
            ),
        )
    };
    let Value::Array(items) = arg else {
        return Err(arity());
    };
    let comparison = |op: &Value, bound: &Value| -> Result<(String, Decimal), String> {
        let Value::String(op) = op else {
            return Err(arity());
        };
        if !matches!(op.as_str(), "=" | "<" | "<=" | ">" | ">=") {
            return Err(at(
                path,
                format!("\"numeric\": unknown operator {op:?} (use =, <, <=, > or >=)"),
            ));
        }
        let value = match bound {
            Value::Number(n) => pattern_number(n, path)?,
            Value::String(s) => Decimal::parse(s)
                .ok_or_else(|| at(path, format!("\"numeric\": {s:?} is not a number")))?,
            _ => return Err(arity()),
        };
        Ok((op.clone(), value))
    };
    let bound = |op: &str, value: Decimal| Bound {
        inclusive: op.ends_with('='),
        value,
    };
    match items.as_slice() {
        [op, value] => {
            let (op, value) = comparison(op, value)?;
            Ok(match op.as_str() {
                "=" => Range {
                    lower: Some(bound(&op, value.clone())),
                    upper: Some(bound(&op, value)),
                },
                ">" | ">=" => Range {
                    lower: Some(bound(&op, value)),
                    upper: None,
                },
                _ => Range {
                    lower: None,
                    upper: Some(bound(&op, value)),
                },
            })
        }
        [op1, value1, op2, value2] => {
            let (low_op, low) = comparison(op1, value1)?;
            let (high_op, high) = comparison(op2, value2)?;
            if !matches!(low_op.as_str(), ">" | ">=") || !matches!(high_op.as_str(), "<" | "<=") {
                return Err(at(
                    path,
                    format!(
                        "\"numeric\": a range is a lower bound (> or >=) then an upper bound (< or <=), found {}",
                        show(arg)
                    ),
                ));
            }
            if low.view().cmp(&high.view()) != Ordering::Less {
                return Err(at(
                    path,
                    format!(
                        "\"numeric\": the lower bound must be below the upper bound, found {}",
                        show(arg)
                    ),
                ));
            }
            Ok(Range {
                lower: Some(bound(&low_op, low)),
                upper: Some(bound(&high_op, high)),
            })
        }
        _ => Err(arity()),
    }
}

fn parse_anything_but(arg: &Value, path: &str) -> Result<AnythingBut, String> {
    let mixed = || {
        at(
            path,
            format!(
                "\"anything-but\" takes a string, a number, a list of only strings or only numbers, or an object with prefix, suffix, equals-ignore-case or wildcard, found {}",
                show(arg)
            ),
        )
    };
    match arg {
        Value::String(s) => Ok(AnythingBut::Strings(vec![s.clone()])),
        Value::Number(n) => Ok(AnythingBut::Numbers(vec![pattern_number(n, path)?])),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(at(
                    path,
                    "\"anything-but\": an empty array excludes nothing",
                ));
            }
            if items.iter().all(Value::is_string) {
                Ok(AnythingBut::Strings(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                ))
            } else if items.iter().all(Value::is_number) {
                items
                    .iter()
                    .filter_map(|v| match v {
                        Value::Number(n) => Some(pattern_number(n, path)),
                        _ => None,
                    })
                    .collect::<Result<_, _>>()
                    .map(AnythingBut::Numbers)
            } else {
                Err(mixed())
            }
        }
        Value::Object(object) => {
            let mut entries = object.iter();
            let (Some((op, inner)), None) = (entries.next(), entries.next()) else {
                return Err(mixed());
            };
            let strings = match inner {
                Value::String(s) => vec![s.as_str()],
                Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
                    items.iter().filter_map(Value::as_str).collect()
                }
                other => {
                    return Err(at(
                        path,
                        format!(
                            "\"anything-but\": \"{op}\" takes a string or a non-empty list of strings, found {}",
                            show(other)
                        ),
                    ))
                }
            };
            let owned = || strings.iter().map(|s| (*s).to_owned()).collect();
            match op.as_str() {
                "prefix" => Ok(AnythingBut::Prefixes(owned())),
                "suffix" => Ok(AnythingBut::Suffixes(owned())),
                "equals-ignore-case" => Ok(AnythingBut::IgnoreCase(
                    strings.iter().map(|s| fold(s)).collect(),
                )),
                "wildcard" => strings
                    .iter()
                    .map(|s| Wildcard::parse(s).map_err(|e| at(path, e)))
                    .collect::<Result<_, _>>()
                    .map(AnythingBut::Wildcards),
                _ => Err(at(
                    path,
                    format!("\"anything-but\": unknown operator {op:?}"),
                )),
            }
        }
        _ => Err(mixed()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A change as the filter sees it, from an event `{"op": ..., "data": {...}, "before":
    /// {...}, "metadata": {...}}`: the text of each top-level key and of each field of the
    /// objects among them.
    struct Event {
        top: HashMap<String, Box<RawValue>>,
        second: HashMap<String, HashMap<String, Box<RawValue>>>,
    }

    impl Event {
        fn new(json: &str) -> Event {
            let top: HashMap<String, Box<RawValue>> =
                serde_json::from_str(json).expect("the test event is a JSON object");
            let second = top
                .iter()
                .filter(|(_, v)| v.get().starts_with('{'))
                .map(|(k, v)| {
                    let fields: HashMap<String, Box<RawValue>> =
                        serde_json::from_str(v.get()).expect("an object");
                    (k.clone(), fields)
                })
                .collect();
            Event { top, second }
        }
    }

    impl Fields for Event {
        fn get(&self, key: &str, name: Option<&str>) -> Option<Cow<'_, RawValue>> {
            let value = match name {
                None => self.top.get(key)?,
                Some(name) => self.second.get(key)?.get(name)?,
            };
            Some(Cow::Borrowed(&**value))
        }
    }

    /// The same change, handing out owned copies (as a caller that renders values does).
    struct Owned(Event);

    impl Fields for Owned {
        fn get(&self, key: &str, name: Option<&str>) -> Option<Cow<'_, RawValue>> {
            self.0.get(key, name).map(|v| Cow::Owned(v.into_owned()))
        }
    }

    /// Arrays nested as deep as a column's bytes allow are searched to a bound, not
    /// recursed into until the stack overflows (this test's thread has the default 2 MiB).
    #[test]
    fn deep_arrays_are_searched_to_a_bound() {
        let deep = |n: usize| {
            format!(
                r#"{{"data":{{"c":{}"x"{}}}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(check(r#"{"data":{"c":["x"]}}"#, &deep(3)));
        assert!(!check(r#"{"data":{"c":["x"]}}"#, &deep(100_000)));
        assert!(!check(r#"{"data":{"c":{"k":["x"]}}}"#, &deep(100_000)));
        assert!(check(
            r#"{"data":{"c":[{"exists":false}]}}"#,
            &deep(100_000)
        ));
    }

    fn compile(pattern: &str) -> Result<Filter, String> {
        let value: Value = serde_json::from_str(pattern).expect("the test pattern is JSON");
        Filter::parse(&value)
    }

    fn check(pattern: &str, event: &str) -> bool {
        let filter = compile(pattern).unwrap_or_else(|e| panic!("{pattern} is refused: {e}"));
        let event = Event::new(event);
        let borrowed = filter.matches(&event);
        let owned = filter.matches(&Owned(event));
        assert_eq!(
            borrowed, owned,
            "{pattern}: borrowed and owned values disagree"
        );
        borrowed
    }

    /// The verdicts, one row a line: `yes` or `no`, the pattern, ` ~ `, the event; `#`
    /// starts a comment. The operator rows use the examples of AWS's documentation
    /// (patterns, field names and values), moved under `data`: the Lambda table of
    /// comparison operators
    /// (https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html),
    /// EventBridge's operators
    /// (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html)
    /// and its page on null values and empty strings
    /// (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-null-values.html).
    /// The rows on exact numbers, numbers in strings, arrays, nesting and the parts of the
    /// change check this module's rules (see the module documentation).
    const TABLE: &str = r##"
        # Null and empty: not interchangeable, and neither matches an absent field.
        yes {"data":{"UserID":[null]}} ~ {"data":{"UserID":null}}
        no  {"data":{"UserID":[null]}} ~ {"data":{"UserID":""}}
        no  {"data":{"UserID":[null]}} ~ {"data":{}}
        no  {"data":{"UserID":[null]}} ~ {"data":{"UserID":"null"}}
        yes {"data":{"LastName":[""]}} ~ {"data":{"LastName":""}}
        no  {"data":{"LastName":[""]}} ~ {"data":{"LastName":null}}
        no  {"data":{"LastName":[""]}} ~ {"data":{}}
        # Equals: character by character, no case folding.
        yes {"data":{"Name":["Alice"]}} ~ {"data":{"Name":"Alice"}}
        no  {"data":{"Name":["Alice"]}} ~ {"data":{"Name":"alice"}}
        no  {"data":{"Name":["Alice"]}} ~ {"data":{"Name":"Alice "}}
        # An escaped value is compared by its content.
        yes {"data":{"Name":["Alice"]}} ~ {"data":{"Name":"Al\u0069ce"}}
        yes {"data":{"Name":["a\"b"]}} ~ {"data":{"Name":"a\"b"}}
        # Equals, ignoring case.
        yes {"data":{"Name":[{"equals-ignore-case":"alice"}]}} ~ {"data":{"Name":"ALICE"}}
        no  {"data":{"Name":[{"equals-ignore-case":"alice"}]}} ~ {"data":{"Name":"Alicia"}}
        yes {"data":{"Name":[{"equals-ignore-case":"ÉCOLE"}]}} ~ {"data":{"Name":"école"}}
        # And.
        yes {"data":{"Location":["New York"],"Day":["Monday"]}} ~ {"data":{"Location":"New York","Day":"Monday"}}
        no  {"data":{"Location":["New York"],"Day":["Monday"]}} ~ {"data":{"Location":"New York","Day":"Tuesday"}}
        no  {"data":{"Location":["New York"],"Day":["Monday"]}} ~ {"data":{"Location":"New York"}}
        # Or within a field.
        yes {"data":{"PaymentType":["Credit","Debit"]}} ~ {"data":{"PaymentType":"Debit"}}
        no  {"data":{"PaymentType":["Credit","Debit"]}} ~ {"data":{"PaymentType":"Cash"}}
        # Or across fields.
        yes {"data":{"$or":[{"Location":["New York"]},{"Day":["Monday"]}]}} ~ {"data":{"Location":"Boston","Day":"Monday"}}
        no  {"data":{"$or":[{"Location":["New York"]},{"Day":["Monday"]}]}} ~ {"data":{"Location":"Boston","Day":"Tuesday"}}
        # ... at the top, across parts of the change (not from the docs).
        yes {"$or":[{"op":["delete"]},{"data":{"amount":[{"numeric":[">",100]}]}}]} ~ {"op":"delete","data":{"amount":5}}
        yes {"$or":[{"op":["delete"]},{"data":{"amount":[{"numeric":[">",100]}]}}]} ~ {"op":"update","data":{"amount":500}}
        no  {"$or":[{"op":["delete"]},{"data":{"amount":[{"numeric":[">",100]}]}}]} ~ {"op":"update","data":{"amount":5}}
        # ... ANDed with the other keys of its object.
        no  {"op":["update"],"$or":[{"data":{"a":["x"]}},{"data":{"b":["y"]}}]} ~ {"op":"insert","data":{"a":"x"}}
        yes {"op":["update"],"$or":[{"data":{"a":["x"]}},{"data":{"b":["y"]}}]} ~ {"op":"update","data":{"b":"y"}}
        # Not (anything-but): needs a present value; other types are not excluded.
        yes {"data":{"Weather":[{"anything-but":["Raining"]}]}} ~ {"data":{"Weather":"Sunny"}}
        no  {"data":{"Weather":[{"anything-but":["Raining"]}]}} ~ {"data":{"Weather":"Raining"}}
        no  {"data":{"Weather":[{"anything-but":["Raining"]}]}} ~ {"data":{}}
        yes {"data":{"Weather":[{"anything-but":["Raining"]}]}} ~ {"data":{"Weather":null}}
        yes {"data":{"state":[{"anything-but":"initializing"}]}} ~ {"data":{"state":"running"}}
        no  {"data":{"state":[{"anything-but":"initializing"}]}} ~ {"data":{"state":"initializing"}}
        no  {"data":{"state":[{"anything-but":["stopped","overloaded"]}]}} ~ {"data":{"state":"overloaded"}}
        no  {"data":{"x-limit":[{"anything-but":123}]}} ~ {"data":{"x-limit":123.0}}
        yes {"data":{"x-limit":[{"anything-but":123}]}} ~ {"data":{"x-limit":124}}
        yes {"data":{"x-limit":[{"anything-but":[100,200,300]}]}} ~ {"data":{"x-limit":150}}
        no  {"data":{"x-limit":[{"anything-but":[100,200,300]}]}} ~ {"data":{"x-limit":2e2}}
        yes {"data":{"x-limit":[{"anything-but":[100,200,300]}]}} ~ {"data":{"x-limit":"200"}}
        yes {"data":{"state":[{"anything-but":{"prefix":"init"}}]}} ~ {"data":{"state":"running"}}
        no  {"data":{"state":[{"anything-but":{"prefix":"init"}}]}} ~ {"data":{"state":"initializing"}}
        no  {"data":{"state":[{"anything-but":{"prefix":["init","error"]}}]}} ~ {"data":{"state":"error-5"}}
        yes {"data":{"FileName":[{"anything-but":{"suffix":".png"}}]}} ~ {"data":{"FileName":"a.jpg"}}
        no  {"data":{"FileName":[{"anything-but":{"suffix":".png"}}]}} ~ {"data":{"FileName":"a.png"}}
        no  {"data":{"state":[{"anything-but":{"equals-ignore-case":["Stopped","OverLoaded"]}}]}} ~ {"data":{"state":"STOPPED"}}
        yes {"data":{"state":[{"anything-but":{"equals-ignore-case":["Stopped","OverLoaded"]}}]}} ~ {"data":{"state":"running"}}
        no  {"data":{"FilePath":[{"anything-but":{"wildcard":"*/bin/*.jar"}}]}} ~ {"data":{"FilePath":"/usr/bin/app.jar"}}
        yes {"data":{"FilePath":[{"anything-but":{"wildcard":"*/bin/*.jar"}}]}} ~ {"data":{"FilePath":"/usr/lib/app.jar"}}
        # Numeric, equals and ranges; exact decimals (the product's rule).
        yes {"data":{"Price":[{"numeric":["=",100]}]}} ~ {"data":{"Price":100}}
        yes {"data":{"Price":[{"numeric":["=",100]}]}} ~ {"data":{"Price":1.00E+2}}
        no  {"data":{"Price":[{"numeric":["=",100]}]}} ~ {"data":{"Price":100.0000000000000000001}}
        yes {"data":{"Price":[{"numeric":[">",10,"<=",20]}]}} ~ {"data":{"Price":20}}
        no  {"data":{"Price":[{"numeric":[">",10,"<=",20]}]}} ~ {"data":{"Price":10}}
        yes {"data":{"Price":[{"numeric":[">",10,"<=",20]}]}} ~ {"data":{"Price":15.5}}
        no  {"data":{"Price":[{"numeric":[">",10,"<=",20]}]}} ~ {"data":{"Price":20.000001}}
        yes {"data":{"Price":[{"numeric":[">=",10,"<",20]}]}} ~ {"data":{"Price":10}}
        no  {"data":{"Price":[{"numeric":[">=",10,"<",20]}]}} ~ {"data":{"Price":20}}
        yes {"data":{"c-count":[{"numeric":[">",0,"<=",5]}],"d-count":[{"numeric":["<",10]}],"x-limit":[{"numeric":["=",3.018e2]}]}} ~ {"data":{"c-count":5,"d-count":3,"x-limit":301.8}}
        no  {"data":{"c-count":[{"numeric":[">",0,"<=",5]}],"d-count":[{"numeric":["<",10]}],"x-limit":[{"numeric":["=",3.018e2]}]}} ~ {"data":{"c-count":5,"d-count":10,"x-limit":301.8}}
        yes {"data":{"n":[{"numeric":["<",0]}]}} ~ {"data":{"n":-0.5}}
        no  {"data":{"n":[{"numeric":["<",0]}]}} ~ {"data":{"n":-0.0}}
        yes {"data":{"n":[{"numeric":["<",-2]}]}} ~ {"data":{"n":-10}}
        no  {"data":{"n":[{"numeric":["<",-2]}]}} ~ {"data":{"n":-1.5}}
        yes {"data":{"n":[{"numeric":["<",1e-7]}]}} ~ {"data":{"n":0.00000009}}
        no  {"data":{"n":[{"numeric":["<",1e-7]}]}} ~ {"data":{"n":0.0000001}}
        no  {"data":{"n":[{"numeric":[">",0]}]}} ~ {"data":{"n":true}}
        no  {"data":{"n":[{"numeric":[">",0]}]}} ~ {"data":{"n":"abc"}}
        # Numbers held in strings, as DMS writes decimals (the documented deviation).
        yes {"data":{"amount":[{"numeric":[">=",19.9,"<",20]}]}} ~ {"data":{"amount":"19.90"}}
        no  {"data":{"amount":[{"numeric":[">=",19.9,"<",20]}]}} ~ {"data":{"amount":"20.00"}}
        no  {"data":{"amount":[{"numeric":[">=",19.9,"<",20]}]}} ~ {"data":{"amount":" 19.90"}}
        yes {"data":{"amount":[{"numeric":[">=","19.90"]}]}} ~ {"data":{"amount":19.9}}
        # Thirty digits: every one counts (through f64 these all compare equal).
        yes {"data":{"big":[{"numeric":[">","123456789012345678901234567890"]}]}} ~ {"data":{"big":123456789012345678901234567891}}
        no  {"data":{"big":[{"numeric":[">","123456789012345678901234567890"]}]}} ~ {"data":{"big":123456789012345678901234567890}}
        yes {"data":{"big":[{"numeric":["=","123456789012345678901234567890"]}]}} ~ {"data":{"big":1.23456789012345678901234567890e29}}
        no  {"data":{"big":[{"numeric":["=","123456789012345678901234567890"]}]}} ~ {"data":{"big":"123456789012345678901234567889"}}
        # Exact-value numbers: the same value in any spelling, never a string.
        yes {"data":{"amount":[100]}} ~ {"data":{"amount":100}}
        yes {"data":{"amount":[100]}} ~ {"data":{"amount":100.0}}
        yes {"data":{"amount":[100]}} ~ {"data":{"amount":1e2}}
        no  {"data":{"amount":[100]}} ~ {"data":{"amount":"100"}}
        no  {"data":{"amount":[100]}} ~ {"data":{"amount":100.01}}
        no  {"data":{"amount":[100]}} ~ {"data":{"amount":-100}}
        yes {"data":{"amount":[0]}} ~ {"data":{"amount":-0.0}}
        no  {"data":{"amount":["100"]}} ~ {"data":{"amount":100}}
        yes {"data":{"a":[1,2]}} ~ {"data":{"a":2}}
        # Booleans.
        yes {"data":{"active":[true]}} ~ {"data":{"active":true}}
        no  {"data":{"active":[true]}} ~ {"data":{"active":"true"}}
        no  {"data":{"active":[false]}} ~ {"data":{"active":true}}
        # Exists: any present leaf, null included; an object is not a leaf.
        yes {"data":{"ProductName":[{"exists":true}]}} ~ {"data":{"ProductName":"Widget"}}
        no  {"data":{"ProductName":[{"exists":true}]}} ~ {"data":{}}
        yes {"data":{"ProductName":[{"exists":true}]}} ~ {"data":{"ProductName":null}}
        yes {"data":{"ProductName":[{"exists":false}]}} ~ {"data":{}}
        no  {"data":{"ProductName":[{"exists":false}]}} ~ {"data":{"ProductName":"Widget"}}
        no  {"data":{"ProductName":[{"exists":false}]}} ~ {"data":{"ProductName":null}}
        yes {"data":{"c-count":[{"exists":false}]}} ~ {"data":{"c-count":{"c1":100}}}
        no  {"data":{"c-count":[{"exists":true}]}} ~ {"data":{"c-count":{"c1":100}}}
        yes {"data":{"tags":[{"exists":false}]}} ~ {"data":{"tags":[]}}
        no  {"data":{"tags":[{"exists":true}]}} ~ {"data":{"tags":[]}}
        yes {"data":{"tags":[{"exists":true}]}} ~ {"data":{"tags":["a"]}}
        yes {"before":{"email":[{"exists":false}]}} ~ {"data":{"email":"a@b"}}
        # Prefix and suffix, also ignoring case; strings only.
        yes {"data":{"Region":[{"prefix":"us-"}]}} ~ {"data":{"Region":"us-east-1"}}
        no  {"data":{"Region":[{"prefix":"us-"}]}} ~ {"data":{"Region":"eu-west-1"}}
        no  {"data":{"zip":[{"prefix":"9"}]}} ~ {"data":{"zip":90210}}
        yes {"data":{"service":[{"prefix":{"equals-ignore-case":"EventB"}}]}} ~ {"data":{"service":"eventbridge"}}
        no  {"data":{"service":[{"prefix":{"equals-ignore-case":"EventB"}}]}} ~ {"data":{"service":"Lambda"}}
        yes {"data":{"FileName":[{"suffix":".png"}]}} ~ {"data":{"FileName":"photo.png"}}
        no  {"data":{"FileName":[{"suffix":".png"}]}} ~ {"data":{"FileName":"photo.PNG"}}
        yes {"data":{"service":[{"suffix":{"equals-ignore-case":"tbridge"}}]}} ~ {"data":{"service":"EventBRIDGE"}}
        no  {"data":{"service":[{"suffix":{"equals-ignore-case":"tbridge"}}]}} ~ {"data":{"service":"bridges"}}
        # Wildcard.
        yes {"data":{"FilePath":[{"wildcard":"dir/*.png"}]}} ~ {"data":{"FilePath":"dir/a.png"}}
        no  {"data":{"FilePath":[{"wildcard":"dir/*.png"}]}} ~ {"data":{"FilePath":"dir/a.jpg"}}
        no  {"data":{"FilePath":[{"wildcard":"dir/*.png"}]}} ~ {"data":{"FilePath":"other/dir/a.png"}}
        yes {"data":{"source":[{"wildcard":"Simple*Service"}]}} ~ {"data":{"source":"Simple Notification Service"}}
        yes {"data":{"s":[{"wildcard":"a\\*b"}]}} ~ {"data":{"s":"a*b"}}
        no  {"data":{"s":[{"wildcard":"a\\*b"}]}} ~ {"data":{"s":"axb"}}
        # CIDR.
        yes {"data":{"sourceIPAddress":[{"cidr":"10.0.0.0/24"}]}} ~ {"data":{"sourceIPAddress":"10.0.0.33"}}
        no  {"data":{"sourceIPAddress":[{"cidr":"10.0.0.0/24"}]}} ~ {"data":{"sourceIPAddress":"10.0.1.1"}}
        yes {"data":{"sourceIPAddress":[{"cidr":"2001:db8::/32"}]}} ~ {"data":{"sourceIPAddress":"2001:db8::1"}}
        no  {"data":{"sourceIPAddress":[{"cidr":"2001:db8::/32"}]}} ~ {"data":{"sourceIPAddress":"10.0.0.33"}}
        # Arrays in the event: a matcher matches when it matches an element.
        yes {"data":{"tags":["red"]}} ~ {"data":{"tags":["blue","red"]}}
        no  {"data":{"tags":["red"]}} ~ {"data":{"tags":["blue"]}}
        yes {"data":{"scores":[{"numeric":[">",10]}]}} ~ {"data":{"scores":[1,[50]]}}
        yes {"data":{"tags":[{"anything-but":"a"}]}} ~ {"data":{"tags":["a","b"]}}
        no  {"data":{"tags":[{"anything-but":"a"}]}} ~ {"data":{"tags":["a"]}}
        # Parts of the change: op, before, metadata.
        no  {"op":["insert","update"]} ~ {"op":"delete","data":{}}
        yes {"op":["insert","update"]} ~ {"op":"update","data":{}}
        yes {"before":{"status":["pending"]},"data":{"status":["shipped"]}} ~ {"op":"update","data":{"status":"shipped"},"before":{"status":"pending"}}
        no  {"before":{"status":["pending"]},"data":{"status":["shipped"]}} ~ {"op":"update","data":{"status":"shipped"},"before":{"status":"shipped"}}
        yes {"metadata":{"table-name":[{"prefix":"order"}]}} ~ {"metadata":{"table-name":"order_items"}}
        # Nested objects inside a column's JSON (the DynamoDB example of the Lambda page).
        yes {"data":{"Keys":{"Id":{"N":["101"]}}}} ~ {"data":{"Keys":{"Id":{"N":"101"}}}}
        no  {"data":{"Keys":{"Id":{"N":["101"]}}}} ~ {"data":{"Keys":{"Id":{"N":"102"}}}}
        yes {"data":{"settings":{"theme":["dark"]}}} ~ {"data":{"settings":{"font":"serif","theme":"dark"}}}
        yes {"data":{"settings":{"theme":["dark"]}}} ~ {"data":{"settings":{"th\u0065me":"dark"}}}
        no  {"data":{"settings":{"theme":["dark"]}}} ~ {"data":{"settings":null}}
        no  {"data":{"settings":{"theme":["dark"]}}} ~ {"data":{"settings":"dark"}}
        yes {"data":{"settings":{"theme":[{"exists":false}]}}} ~ {"data":{}}
        no  {"data":{"settings":{"theme":[{"exists":false}]}}} ~ {"data":{"settings":{"theme":"dark"}}}
        yes {"data":{"settings":{"$or":[{"theme":["dark"]},{"contrast":["high"]}]}}} ~ {"data":{"settings":{"theme":"light","contrast":"high"}}}
        no  {"data":{"settings":{"$or":[{"theme":["dark"]},{"contrast":["high"]}]}}} ~ {"data":{"settings":{"theme":"light"}}}
        # Nested patterns over arrays of objects: one element must match all of it.
        yes {"data":{"items":{"sku":["A"],"qty":[2]}}} ~ {"data":{"items":[{"sku":"B","qty":2},{"sku":"A","qty":2}]}}
        no  {"data":{"items":{"sku":["A"],"qty":[2]}}} ~ {"data":{"items":[{"sku":"A","qty":1},{"sku":"B","qty":2}]}}
        # A first-level matcher on a whole part: an object is not a leaf.
        no  {"data":[{"exists":true}]} ~ {"data":{"a":1}}
    "##;

    /// The rows in [`TABLE`], so that a row lost to a formatting slip is noticed.
    const TABLE_ROWS: usize = 141;

    #[test]
    fn table() {
        let mut rows = 0;
        let mut wrong = Vec::new();
        for line in TABLE.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (verdict, row) = line.split_once(' ').expect("a verdict, then the row");
            let expected = match verdict {
                "yes" => true,
                "no" => false,
                other => panic!("{other:?} is neither yes nor no"),
            };
            let (pattern, event) = row.trim().split_once(" ~ ").expect("pattern ~ event");
            rows += 1;
            if check(pattern, event) != expected {
                wrong.push(format!("{pattern} on {event} should be {verdict}"));
            }
        }
        assert_eq!(rows, TABLE_ROWS, "rows read");
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn invalid_patterns_name_the_path() {
        let cases: &[(&str, &str)] = &[
            (r#"[1]"#, "a pattern is a JSON object"),
            (r#""op""#, "a pattern is a JSON object"),
            (r#"{}"#, "an empty object matches nothing"),
            (r#"{"data":{}}"#, "data: an empty object matches nothing"),
            (
                r#"{"data":{"amount":{"numeric":[">",100]}}}"#,
                "data.amount.numeric: \"numeric\" is an operator: put it in an array of matchers, e.g. {\"amount\": [{\"numeric\": ...}]}",
            ),
            (
                r#"{"op":"insert"}"#,
                "op: expected an array of matchers or a nested object",
            ),
            (
                r#"{"data":{"amount":[]}}"#,
                "data.amount: an empty array matches nothing",
            ),
            (
                r#"{"data":{"settings":{"theme":[]}}}"#,
                "data.settings.theme: an empty array matches nothing",
            ),
            (
                r#"{"data":{"amount":[[1]]}}"#,
                "data.amount: a matcher cannot be an array",
            ),
            (
                r#"{"data":{"amount":[{"prefixx":"a"}]}}"#,
                r#"data.amount: unknown operator "prefixx""#,
            ),
            (
                r#"{"data":{"amount":[{"prefix":"a","suffix":"b"}]}}"#,
                "data.amount: a matcher object has exactly one operator",
            ),
            (
                r#"{"data":{"amount":[{}]}}"#,
                "data.amount: a matcher object has exactly one operator",
            ),
            (
                r#"{"data":{"amount":[{"prefix":1}]}}"#,
                r#"data.amount: "prefix" takes a string"#,
            ),
            (
                r#"{"data":{"amount":[{"prefix":{"equals-ignore-case":1}}]}}"#,
                r#"data.amount: "prefix" takes a string or {"equals-ignore-case": string}"#,
            ),
            (
                r#"{"data":{"amount":[{"suffix":{"case":"a"}}]}}"#,
                r#"data.amount: "suffix" takes a string or"#,
            ),
            (
                r#"{"data":{"amount":[{"numeric":[">"]}]}}"#,
                r#"data.amount: "numeric" needs an operator and a number"#,
            ),
            (
                r#"{"data":{"amount":[{"numeric":[">",0,"<"]}]}}"#,
                r#"data.amount: "numeric" needs an operator and a number"#,
            ),
            (
                r#"{"data":{"amount":[{"numeric":">"}]}}"#,
                r#"data.amount: "numeric" needs an operator and a number"#,
            ),
            (
                r#"{"data":{"amount":[{"numeric":[0,">"]}]}}"#,
                r#"data.amount: "numeric" needs an operator and a number"#,
            ),
            (
                r#"{"data":{"amount":[{"numeric":[">",true]}]}}"#,
                r#"data.amount: "numeric" needs an operator and a number"#,
            ),
            (
                r#"{"data":{"amount":[{"numeric":["!=",5]}]}}"#,
                r#"data.amount: "numeric": unknown operator "!=""#,
            ),
            (
                r#"{"data":{"amount":[{"numeric":[">","abc"]}]}}"#,
                r#"data.amount: "numeric": "abc" is not a number"#,
            ),
            (
                r#"{"data":{"amount":[{"numeric":["<",5,">",0]}]}}"#,
                r#"data.amount: "numeric": a range is a lower bound"#,
            ),
            (
                r#"{"data":{"amount":[{"numeric":["=",5,"<",6]}]}}"#,
                r#"data.amount: "numeric": a range is a lower bound"#,
            ),
            (
                r#"{"data":{"amount":[{"numeric":[">",5,"<",5]}]}}"#,
                r#"data.amount: "numeric": the lower bound must be below"#,
            ),
            (
                r#"{"data":{"amount":[{"numeric":[">",6,"<","5.9"]}]}}"#,
                r#"data.amount: "numeric": the lower bound must be below"#,
            ),
            (
                r#"{"data":{"x":[{"exists":"yes"}]}}"#,
                r#"data.x: "exists" takes true or false"#,
            ),
            (
                r#"{"data":{"$or":[{"a":["x"]}]}}"#,
                "data: $or needs at least two patterns, found 1",
            ),
            (r#"{"$or":[]}"#, "$or needs at least two patterns, found 0"),
            (r#"{"$or":{"a":["x"]}}"#, "$or takes an array of patterns"),
            (
                r#"{"$or":[{"op":["a"]},["b"]]}"#,
                "$or[1]: a $or alternative is a pattern object",
            ),
            (
                r#"{"$or":[{"op":["a"]},{"data":{"x":[]}}]}"#,
                "$or[1].data.x: an empty array matches nothing",
            ),
            (
                r#"{"data":{"s":[{"anything-but":["a",1]}]}}"#,
                r#"data.s: "anything-but" takes a string, a number, a list of only strings or only numbers"#,
            ),
            (
                r#"{"data":{"s":[{"anything-but":[]}]}}"#,
                r#"data.s: "anything-but": an empty array excludes nothing"#,
            ),
            (
                r#"{"data":{"s":[{"anything-but":null}]}}"#,
                r#"data.s: "anything-but" takes a string"#,
            ),
            (
                r#"{"data":{"s":[{"anything-but":{"numeric":[">",1]}}]}}"#,
                r#"data.s: "anything-but": "numeric" takes a string or a non-empty list"#,
            ),
            (
                r#"{"data":{"s":[{"anything-but":{"prefixx":"a"}}]}}"#,
                r#"data.s: "anything-but": unknown operator "prefixx""#,
            ),
            (
                r#"{"data":{"s":[{"anything-but":{"prefix":[]}}]}}"#,
                r#"data.s: "anything-but": "prefix" takes a string or a non-empty list"#,
            ),
            (
                r#"{"data":{"s":[{"wildcard":"a**b"}]}}"#,
                r#"data.s: "wildcard" "a**b": two * in a row"#,
            ),
            (
                r#"{"data":{"s":[{"wildcard":"a\\b"}]}}"#,
                r#"data.s: "wildcard" "a\\b": a backslash escapes only"#,
            ),
            (
                r#"{"data":{"s":[{"anything-but":{"wildcard":"a**"}}]}}"#,
                r#"data.s: "wildcard" "a**": two * in a row"#,
            ),
            (
                r#"{"data":{"ip":[{"cidr":"10.0.0.0/33"}]}}"#,
                r#"data.ip: "cidr" takes an address block"#,
            ),
            (
                r#"{"data":{"ip":[{"cidr":"10.0.0.0"}]}}"#,
                r#"data.ip: "cidr" takes an address block"#,
            ),
            (
                r#"{"data":{"ip":[{"cidr":"ten/8"}]}}"#,
                r#"data.ip: "cidr" takes an address block"#,
            ),
        ];
        let mut wrong = Vec::new();
        for (pattern, expected) in cases {
            match compile(pattern) {
                Ok(_) => wrong.push(format!("{pattern} was accepted")),
                Err(e) if !e.starts_with(expected) => {
                    wrong.push(format!("{pattern}: {e:?} does not start with {expected:?}"))
                }
                Err(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn valid_edge_patterns_compile() {
        for pattern in [
            r#"{"data":{"n":[{"numeric":[">=",5,"<=",5.5]}]}}"#,
            r#"{"data":{"n":[{"numeric":["<=","-1e400"]}]}}"#,
            r#"{"data":{"s":[{"wildcard":"*"}]}}"#,
            r#"{"data":{"s":[{"wildcard":"a\\\\b"}]}}"#,
            r#"{"data":{"s":[{"cidr":"::/0"}]}}"#,
        ] {
            assert!(compile(pattern).is_ok(), "{pattern} is refused");
        }
    }

    fn dec(text: &str) -> Dec<'_> {
        Dec::parse(text).unwrap_or_else(|| panic!("{text} is a number"))
    }

    #[test]
    fn decimals_compare_by_value() {
        use Ordering::{Equal, Greater, Less};
        let cases = [
            ("100", "100.0", Equal),
            ("100", "1e2", Equal),
            ("100", "1.00E+2", Equal),
            ("0.1", "0.10", Equal),
            ("1.23", "123e-2", Equal),
            ("0", "-0.000", Equal),
            ("0", "0e99", Equal),
            ("9.99", "10", Less),
            ("-1", "-2", Greater),
            ("-0.5", "0", Less),
            ("0.001", "0.01", Less),
            ("1e15", "999999999999999", Greater),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567891",
                Less,
            ),
            ("1.5", "1.25", Greater),
            ("12", "1.2e1", Equal),
            ("1e-400", "0", Greater),
            ("-1e-400", "0", Less),
            ("1e400", "9e399", Greater),
        ];
        for (a, b, expected) in cases {
            assert_eq!(dec(a).cmp(&dec(b)), expected, "{a} vs {b}");
            assert_eq!(dec(b).cmp(&dec(a)), expected.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn only_json_number_literals_are_numbers() {
        for text in [
            "", "-", "01", "-01", "1.", ".5", "1e", "1e+", "+1", "--1", "1 ", " 1", "NaN", "0x10",
            "1.2.3", "1e2.5",
        ] {
            assert!(Dec::parse(text).is_none(), "{text:?} was read as a number");
        }
        for text in ["0", "-0", "0.0", "10", "-1.5e-3", "2E10", "1e+2"] {
            assert!(Dec::parse(text).is_some(), "{text:?} was refused");
        }
    }

    #[test]
    fn wildcards() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b*", "xxbxxaxx", false),
            ("ab*", "a", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("é*ü", "éxü", true),
            ("a\\\\b", "a\\b", true),
        ];
        for (pattern, value, expected) in cases {
            let w = Wildcard::parse(pattern).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(w.matches(value), expected, "{pattern} on {value}");
        }
    }

    #[test]
    fn string_values_borrow_unless_escaped() {
        assert!(matches!(
            parse_str(r#""plain""#),
            Some(Cow::Borrowed("plain"))
        ));
        assert!(matches!(parse_str(r#""tab\tbed""#), Some(Cow::Owned(s)) if s == "tab\tbed"));
        assert!(parse_str(r#""unterminated"#).is_none());
    }
}
