//! A validating JSON scanner over borrowed text, for the documents every record goes
//! through: each DMS value and the MSK event. It accepts exactly the JSON that
//! serde_json accepts and keeps a value as the slice of text it was, as serde_json's
//! `RawValue` does, so what it hands on is byte for byte what came in.
//!
//! Why not serde_json itself: its reader checks strings a byte at a time and goes through
//! a visitor per key and value; the DMS document is mostly strings (names, timestamps,
//! text columns), so that scanning was the largest single cost of a record. Here a
//! string's end is found sixteen bytes at a time, keys are compared as they lie, and a
//! skipped value is walked without recursion (any depth, as serde_json skips it).
//!
//! What serde_json checks, this checks: whitespace is space, tab, CR and LF; numbers
//! follow JSON's grammar (no leading zeros, digits after `.` and `e`); strings hold no
//! control character and only JSON's escapes; a string read as text (a key, a metadata
//! field) must have its `\u` surrogates paired, while a string kept as a raw value only
//! needs four hex digits per `\u` (the DMS decoder checks row values further). The input
//! is already UTF-8 (`&str`). Errors say what was expected, at which line and column.

use std::borrow::Cow;
use std::fmt;

use serde_json::value::RawValue;

/// A JSON syntax or type error, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanError(String);

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an error begins when an array stands where an object was expected: serde's
/// derives read a struct from an array of its fields, which the readers here refuse, so
/// the differential tests recognise that one difference by it.
pub(crate) const SEQUENCE_FOR: &str = "invalid type: a sequence, expected";

/// A JSON string read through serde that borrows from the input when it holds no
/// escapes (the serde readings of the event and of DMS rows).
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(V(std::marker::PhantomData))
    }
}

/// The fields of one object read so far, to refuse one given twice (as serde's derives
/// do). Fields are numbered from 0 to 31.
#[derive(Default)]
pub(crate) struct Fields(u32);

impl Fields {
    pub(crate) fn once(&mut self, s: &Scanner<'_>, field: u8, name: &str) -> Result<(), ScanError> {
        if self.0 & (1 << field) != 0 {
            return Err(s.error(format_args!("duplicate field `{name}`")));
        }
        self.0 |= 1 << field;
        Ok(())
    }
}

/// The keys of the last object of a kind read, in its order, by their numbers in that
/// kind's field list (up to `N`): what [`Scanner::field`] guesses the next object's
/// keys from, as objects written by one writer come alike. Only an order is kept, never
/// a value, and a guess is always checked against the text.
#[derive(Clone, Copy)]
pub(crate) struct KeyOrder<const N: usize> {
    fields: [u8; N],
    len: usize,
}

impl<const N: usize> KeyOrder<N> {
    pub(crate) const fn new() -> KeyOrder<N> {
        KeyOrder {
            fields: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Default for KeyOrder<N> {
    fn default() -> KeyOrder<N> {
        KeyOrder::new()
    }
}

/// Reads one object's keys with a [`KeyOrder`]: the order it had so far is the next
/// object's guess, and what it reads becomes the order.
pub(crate) struct Guessing<'o, const N: usize> {
    order: &'o mut KeyOrder<N>,
    /// Keys read so far in this object that are in the field list.
    position: usize,
}

impl<'o, const N: usize> Guessing<'o, N> {
    pub(crate) fn new(order: &'o mut KeyOrder<N>) -> Guessing<'o, N> {
        Guessing { order, position: 0 }
    }

    /// The object is read to its end: its order is the next guess.
    pub(crate) fn done(self) {
        self.order.len = self.position;
    }
}

/// A position in a JSON text, read forward.
pub(crate) struct Scanner<'a> {
    text: &'a str,
    at: usize,
    /// The arrays and objects open around a value being skipped (reused; empty unless
    /// a skipped value nests).
    open: Vec<u8>,
    /// Whether the last raw value held a string escape.
    escaped: bool,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            at: 0,
            open: Vec::new(),
            escaped: false,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The text between two byte positions that lie before or after an ASCII byte.
    #[inline(always)]
    fn slice(&self, from: usize, to: usize) -> &'a str {
        self.text.get(from..to).unwrap_or_default()
    }

    /// An error at the current position.
    #[cold]
    #[inline(never)]
    pub(crate) fn error(&self, what: impl fmt::Display) -> ScanError {
        let before = self.bytes().get(..self.at).unwrap_or_default();
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        // 1-based, at the byte that did not fit (a character's first byte).
        let column = before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        ScanError(format!("{what} at line {line} column {column}"))
    }

    #[cold]
    fn fail<T>(&self, what: impl fmt::Display) -> Result<T, ScanError> {
        Err(self.error(what))
    }

    /// The next byte after whitespace, not consumed.
    #[inline(always)]
    pub(crate) fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(self.at) {
            self.at += 1;
        }
        bytes.get(self.at).copied()
    }

    /// Nothing but whitespace is left.
    pub(crate) fn end(&mut self) -> Result<(), ScanError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.fail("trailing characters"),
        }
    }

    /// The start of an object, which `what` describes for the error when the next value
    /// is something else.
    pub(crate) fn object(&mut self, what: &str) -> Result<(), ScanError> {
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                Ok(())
            }
            Some(b'[') => self.fail(format_args!("{SEQUENCE_FOR} {what}")),
            Some(_) => self.fail(format_args!("invalid type: expected {what}")),
            None => self.fail("EOF while parsing a value"),
        }
    }

    /// The start of an array, which `what` describes for the error.
    pub(crate) fn array(&mut self, what: &str) -> Result<(), ScanError> {
        match self.peek() {
            Some(b'[') => {
                self.at += 1;
                Ok(())
            }
            Some(_) => self.fail(format_args!("invalid type: expected {what}")),
            None => self.fail("EOF while parsing a value"),
        }
    }

    /// The next key of an object begun with [`Scanner::object`] (its `:` consumed), or
    /// `None` at the object's end. `first`: no key read yet (set false here).
    #[inline(always)]
    pub(crate) fn key(&mut self, first: &mut bool) -> Result<Option<Cow<'a, str>>, ScanError> {
        match self.peek() {
            Some(b'}') => {
                self.at += 1;
                return Ok(None);
            }
            Some(b',') if !*first => self.at += 1,
            Some(_) if *first => {}
            Some(_) => return self.fail("expected `,` or `}`"),
            None => return self.fail("EOF while parsing an object"),
        }
        *first = false;
        if self.peek() != Some(b'"') {
            return self.fail("key must be a string");
        }
        let key = self.string()?;
        self.colon()?;
        Ok(Some(key))
    }

    /// Whether the next key of an object begun with [`Scanner::object`] is `quoted`
    /// (a key with its quotes, as written without escapes); if so it is consumed with
    /// its `:`, as [`Scanner::key`] would read it, and `first` is set false. Otherwise
    /// nothing is consumed, and [`Scanner::key`] reads the key (and says what is wrong,
    /// if anything is). For readers that guess a document's next key.
    #[inline(always)]
    pub(crate) fn key_is(&mut self, first: &mut bool, quoted: &[u8]) -> bool {
        let bytes = self.bytes();
        let space = |mut at: usize| {
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(at) {
                at += 1;
            }
            at
        };
        let mut at = space(self.at);
        if !*first {
            if bytes.get(at) != Some(&b',') {
                return false;
            }
            at = space(at + 1);
        }
        if !bytes.get(at..).is_some_and(|rest| rest.starts_with(quoted)) {
            return false;
        }
        at = space(at + quoted.len());
        if bytes.get(at) != Some(&b':') {
            return false;
        }
        self.at = at + 1;
        *first = false;
        true
    }

    /// The next key of an object begun with [`Scanner::object`] that is one of
    /// `fields` (names, and keys as written), as its number and name: the key guessed
    /// from `keys`' order when the text has it there ([`Scanner::key_is`]), else the key
    /// read ([`Scanner::key`]) and looked up. The value of a key not in `fields` is read
    /// past. `None` at the object's end.
    #[inline(always)]
    pub(crate) fn field<'f, const N: usize>(
        &mut self,
        first: &mut bool,
        fields: &[(&'f str, &[u8])],
        keys: &mut Guessing<'_, N>,
    ) -> Result<Option<(u8, &'f str)>, ScanError> {
        let at = keys.position;
        let guess = keys.order.fields.get(at).filter(|_| at < keys.order.len);
        let field = match guess {
            Some(&field)
                if fields
                    .get(usize::from(field))
                    .is_some_and(|(_, quoted)| self.key_is(first, quoted)) =>
            {
                field
            }
            _ => loop {
                let Some(key) = self.key(first)? else {
                    return Ok(None);
                };
                match fields.iter().position(|(name, _)| *name == key) {
                    Some(field) => break u8::try_from(field).unwrap_or(u8::MAX),
                    None => {
                        self.raw()?;
                    }
                }
            },
        };
        if let Some(slot) = keys.order.fields.get_mut(at) {
            *slot = field;
            keys.position += 1;
        }
        let name = fields.get(usize::from(field)).map_or("", |(name, _)| *name);
        Ok(Some((field, name)))
    }

    #[inline(always)]
    fn colon(&mut self) -> Result<(), ScanError> {
        match self.peek() {
            Some(b':') => {
                self.at += 1;
                Ok(())
            }
            Some(_) => self.fail("expected `:`"),
            None => self.fail("EOF while parsing an object"),
        }
    }

    /// Whether another element of an array begun with [`Scanner::array`] follows (its
    /// `,` consumed); `false` at the array's end. `first`: none read yet.
    pub(crate) fn element(&mut self, first: &mut bool) -> Result<bool, ScanError> {
        match self.peek() {
            Some(b']') => {
                self.at += 1;
                Ok(false)
            }
            Some(b',') if !*first => {
                self.at += 1;
                Ok(true)
            }
            Some(_) if *first => {
                *first = false;
                Ok(true)
            }
            Some(_) => self.fail("expected `,` or `]`"),
            None => self.fail("EOF while parsing a list"),
        }
    }

    /// Whether the next value is `null` (consumed if so).
    #[inline(always)]
    pub(crate) fn null(&mut self) -> Result<bool, ScanError> {
        if self.peek() != Some(b'n') {
            return Ok(false);
        }
        self.literal(b"null")?;
        Ok(true)
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ScanError> {
        let bytes = self.bytes();
        for &expected in word {
            match bytes.get(self.at) {
                Some(&b) if b == expected => self.at += 1,
                Some(_) => return self.fail("expected ident"),
                None => return self.fail("EOF while parsing a value"),
            }
        }
        Ok(())
    }

    /// A string read as text (the next value must be one): borrowed unless it holds
    /// escapes, which are unescaped; a `\u` surrogate must be paired.
    #[inline(always)]
    pub(crate) fn string(&mut self) -> Result<Cow<'a, str>, ScanError> {
        match self.peek() {
            Some(b'"') => self.at += 1,
            Some(_) => return self.fail("invalid type: expected a string"),
            None => return self.fail("EOF while parsing a value"),
        }
        let start = self.at;
        let stop = self.find_string_stop()?;
        if self.bytes().get(stop) == Some(&b'"') {
            self.at = stop + 1;
            return Ok(Cow::Borrowed(self.slice(start, stop)));
        }
        self.unescaped(start, stop).map(Cow::Owned)
    }

    /// The rest of a string from `start` that holds an escape at `stop`, unescaped.
    #[inline(never)]
    fn unescaped(&mut self, start: usize, stop: usize) -> Result<String, ScanError> {
        let mut out = String::with_capacity(stop - start + 16);
        out.push_str(self.slice(start, stop));
        self.at = stop;
        loop {
            // At a quote or a backslash.
            if self.bytes().get(self.at) == Some(&b'"') {
                self.at += 1;
                return Ok(out);
            }
            self.at += 1;
            self.unescape(&mut out)?;
            let from = self.at;
            let stop = self.find_string_stop()?;
            out.push_str(self.slice(from, stop));
            self.at = stop;
        }
    }

    /// Skips a string whose opening quote is consumed, as a raw value keeps it.
    #[inline(always)]
    fn skip_string(&mut self) -> Result<(), ScanError> {
        loop {
            let stop = self.find_string_stop()?;
            self.at = stop + 1;
            if self.bytes().get(stop) == Some(&b'"') {
                return Ok(());
            }
            self.escaped = true;
            match self.bytes().get(self.at) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 1,
                Some(b'u') => {
                    self.at += 1;
                    self.hex4()?;
                }
                Some(_) => return self.fail("invalid escape"),
                None => return self.fail("EOF while parsing a string"),
            }
        }
    }

    /// The position of the next `"` or `\` from here; a control character or the end
    /// of the text before it is an error.
    #[inline(always)]
    fn find_string_stop(&mut self) -> Result<usize, ScanError> {
        let rest = self.bytes().get(self.at..).unwrap_or_default();
        // Most strings (names, numbers as text, timestamps) end within two words; a
        // longer one (a text column, an event's base64 value) is searched with memchr's
        // vector search, then checked for control characters with a fold the compiler
        // vectorises (it has no early exit).
        let offset = match (rest.get(..8), rest.get(8..16)) {
            (Some(first), Some(second)) => match (stop_in_word(first), stop_in_word(second)) {
                (Some(offset), _) => offset,
                (None, Some(offset)) => 8 + offset,
                (None, None) => match self.long_stop(rest.get(16..).unwrap_or_default()) {
                    Some(offset) => 16 + offset,
                    None => return self.fail("EOF while parsing a string"),
                },
            },
            // Within sixteen bytes of the end of the text.
            _ => match stop_byte(rest) {
                Some(offset) => offset,
                None => {
                    self.at = self.text.len();
                    return self.fail("EOF while parsing a string");
                }
            },
        };
        let stop = self.at + offset;
        if rest.get(offset).is_some_and(|&b| b < 0x20) {
            self.at = stop;
            return self.fail("control character (\\u0000-\\u001F) found while parsing a string");
        }
        Ok(stop)
    }

    /// [`stop_byte`] for the rest of a long string: memchr's vector search for the
    /// quote or backslash, then a check for control characters before it with a fold the
    /// compiler vectorises (it has no early exit). `None`: the text ends first (`at`
    /// moved there).
    fn long_stop(&mut self, tail: &[u8]) -> Option<usize> {
        let control = |b: &u8| *b < 0x20;
        match memchr::memchr2(b'"', b'\\', tail) {
            Some(end) => {
                let span = tail.get(..end).unwrap_or_default();
                match span.iter().fold(false, |any, b| any | control(b)) {
                    false => Some(end),
                    true => span.iter().position(control),
                }
            }
            None => {
                let first = tail.iter().position(control);
                if first.is_none() {
                    self.at = self.text.len();
                }
                first
            }
        }
    }

    /// An escape's meaning appended to `out`, its backslash consumed.
    fn unescape(&mut self, out: &mut String) -> Result<(), ScanError> {
        let Some(&b) = self.bytes().get(self.at) else {
            return self.fail("EOF while parsing a string");
        };
        self.at += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\x08',
            b'f' => '\x0c',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let n = self.hex4()?;
                let code = match n {
                    0xDC00..=0xDFFF => return self.fail("lone leading surrogate in hex escape"),
                    0xD800..=0xDBFF => {
                        let bytes = self.bytes();
                        if bytes.get(self.at) != Some(&b'\\')
                            || bytes.get(self.at + 1) != Some(&b'u')
                        {
                            self.at = (self.at + 1).min(self.text.len());
                            return self.fail("unexpected end of hex escape");
                        }
                        self.at += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return self.fail("lone leading surrogate in hex escape");
                        }
                        0x1_0000 + ((u32::from(n) - 0xD800) << 10 | (u32::from(low) - 0xDC00))
                    }
                    n => u32::from(n),
                };
                match char::from_u32(code) {
                    Some(c) => c,
                    None => return self.fail("invalid unicode code point"),
                }
            }
            _ => return self.fail("invalid escape"),
        };
        out.push(c);
        Ok(())
    }

    /// Four hex digits.
    fn hex4(&mut self) -> Result<u16, ScanError> {
        let mut n = 0u16;
        for _ in 0..4 {
            let Some(&b) = self.bytes().get(self.at) else {
                return self.fail("EOF while parsing a string");
            };
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return self.fail("invalid escape"),
            };
            self.at += 1;
            n = n << 4 | u16::from(digit);
        }
        Ok(n)
    }

    /// The next value's text, whatever it is (checked, not converted).
    #[inline(always)]
    pub(crate) fn raw(&mut self) -> Result<&'a str, ScanError> {
        self.escaped = false;
        let first = self.peek();
        let start = self.at;
        match first {
            Some(b'"') => {
                self.at += 1;
                self.skip_string()?;
            }
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => self.skip_value()?,
        }
        Ok(self.slice(start, self.at))
    }

    /// Whether the last [`Scanner::raw`] value holds a string escape anywhere.
    pub(crate) fn escaped(&self) -> bool {
        self.escaped
    }

    /// A string read as text, or `null` (`None`); anything else is an error naming
    /// `field`.
    #[inline(always)]
    pub(crate) fn text_or_null(&mut self, field: &str) -> Result<Option<Cow<'a, str>>, ScanError> {
        match self.peek() {
            Some(b'"') => self.string().map(Some),
            Some(b'n') => self.literal(b"null").map(|()| None),
            Some(_) => self.fail(format_args!("invalid type: `{field}` must be a string")),
            None => self.fail("EOF while parsing a value"),
        }
    }

    /// An integer (the next value must be one) that fits 64 signed bits: what serde_json
    /// reads as an `i64` (`-0` it reads as a float, so it is refused too).
    pub(crate) fn integer(&mut self) -> Result<i64, ScanError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => {}
            Some(_) => return self.fail("invalid type: expected an integer"),
            None => return self.fail("EOF while parsing a value"),
        }
        let start = self.at;
        // The common case read directly: up to 18 digits, which cannot overflow, ended
        // by neither a fraction nor an exponent.
        let bytes = self.bytes();
        let negative = bytes.get(start) == Some(&b'-');
        let digits = start + usize::from(negative);
        let mut at = digits;
        let mut n: i64 = 0;
        while let Some(&b @ b'0'..=b'9') = bytes.get(at) {
            if at - digits == 18 {
                break;
            }
            n = n * 10 + i64::from(b - b'0');
            at += 1;
        }
        let ends = !matches!(bytes.get(at), Some(b'0'..=b'9' | b'.' | b'e' | b'E'));
        let leading_zero = bytes.get(digits) == Some(&b'0') && at - digits > 1;
        if ends && at > digits && !leading_zero && !(negative && n == 0) {
            self.at = at;
            return Ok(if negative { -n } else { n });
        }
        self.number()?;
        let text = self.slice(start, self.at);
        if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) || text == "-0" {
            self.at = start;
            return self.fail("invalid type: floating point, expected an integer");
        }
        match text.parse::<i64>() {
            Ok(n) => Ok(n),
            Err(_) => {
                self.at = start;
                self.fail("number out of range")
            }
        }
    }

    fn number(&mut self) -> Result<(), ScanError> {
        let bytes = self.bytes();
        let digit = |at: usize| matches!(bytes.get(at), Some(b'0'..=b'9'));
        if bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match bytes.get(self.at) {
            Some(b'0') => {
                self.at += 1;
                if digit(self.at) {
                    return self.fail("invalid number");
                }
            }
            Some(b'1'..=b'9') => {
                while digit(self.at) {
                    self.at += 1;
                }
            }
            Some(_) => return self.fail("invalid number"),
            None => return self.fail("EOF while parsing a value"),
        }
        if bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if !digit(self.at) {
                return self.fail("invalid number");
            }
            while digit(self.at) {
                self.at += 1;
            }
        }
        if let Some(b'e' | b'E') = bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = bytes.get(self.at) {
                self.at += 1;
            }
            if !digit(self.at) {
                return self.fail("invalid number");
            }
            while digit(self.at) {
                self.at += 1;
            }
        }
        Ok(())
    }

    /// Skips one value of any depth, without recursion.
    fn skip_value(&mut self) -> Result<(), ScanError> {
        self.open.clear();
        loop {
            // A value starts here.
            match self.peek() {
                None => return self.fail("EOF while parsing a value"),
                Some(b'n') => self.literal(b"null")?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b'"') => {
                    self.at += 1;
                    self.skip_string()?;
                }
                Some(b'[') => {
                    self.at += 1;
                    if self.peek() == Some(b']') {
                        self.at += 1;
                    } else {
                        self.open.push(b'[');
                        continue;
                    }
                }
                Some(b'{') => {
                    self.at += 1;
                    if self.peek() == Some(b'}') {
                        self.at += 1;
                    } else {
                        self.open.push(b'{');
                        self.member_name()?;
                        continue;
                    }
                }
                Some(_) => return self.fail("expected value"),
            }
            // A value ended: close what it ends, or go on to the next one.
            loop {
                let Some(&open) = self.open.last() else {
                    return Ok(());
                };
                match (self.peek(), open) {
                    (Some(b','), b'[') => {
                        self.at += 1;
                        break;
                    }
                    (Some(b','), _) => {
                        self.at += 1;
                        self.member_name()?;
                        break;
                    }
                    (Some(b']'), b'[') | (Some(b'}'), b'{') => {
                        self.at += 1;
                        self.open.pop();
                    }
                    (Some(_), b'[') => return self.fail("expected `,` or `]`"),
                    (Some(_), _) => return self.fail("expected `,` or `}`"),
                    (None, b'[') => return self.fail("EOF while parsing a list"),
                    (None, _) => return self.fail("EOF while parsing an object"),
                }
            }
        }
    }

    /// A skipped object's member name and its colon.
    fn member_name(&mut self) -> Result<(), ScanError> {
        match self.peek() {
            Some(b'"') => {
                self.at += 1;
                self.skip_string()?;
            }
            Some(_) => return self.fail("key must be a string"),
            None => return self.fail("EOF while parsing an object"),
        }
        self.colon()
    }
}

/// The offset of the first byte that ends a plain run of string text in an eight-byte
/// word: `"`, `\` or a control character. Each test below sets the high bit of a byte
/// that is `"` or `\` (zero after the XOR) or below 0x20; a borrow can also mark a
/// byte above a marked one, never below, so the lowest mark is exact.
#[inline(always)]
fn stop_in_word(word: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut eight = [b'a'; 8];
    let n = word.len().min(8);
    eight[..n].copy_from_slice(&word[..n]);
    let w = u64::from_le_bytes(eight);
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let marks = (zero(w ^ (ONES * u64::from(b'"')))
        | zero(w ^ (ONES * u64::from(b'\\')))
        | (w.wrapping_sub(ONES * 0x20) & !w))
        & HIGH;
    (marks != 0).then(|| (marks.trailing_zeros() / 8) as usize)
}

/// The offset of the first `"`, `\` or control character, a word at a time (the last
/// word padded with a letter, which stops nothing).
fn stop_byte(bytes: &[u8]) -> Option<usize> {
    bytes
        .chunks(8)
        .enumerate()
        .find_map(|(i, word)| stop_in_word(word).map(|offset| i * 8 + offset))
}

/// Checks every `\u` escape of `text`, which is already known to be JSON: a surrogate
/// must be a high one followed by a low one, as a JSON reader downstream requires
/// (serde_json refuses the rest with these words). In JSON a backslash only ever starts
/// an escape inside a string, so no structure is read: any depth, any number.
pub(crate) fn check_unicode_escapes(text: &str) -> Result<(), &'static str> {
    let bytes = text.as_bytes();
    let unit = |at: usize| -> Result<u16, &'static str> {
        let digits = bytes.get(at..at + 4).ok_or("EOF while parsing a string")?;
        digits.iter().try_fold(0u16, |n, &b| {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return Err("invalid escape"),
            };
            Ok(n << 4 | u16::from(digit))
        })
    };
    let mut at = 0;
    while let Some(offset) = memchr::memchr(b'\\', bytes.get(at..).unwrap_or_default()) {
        let escape = at + offset + 1;
        at = escape + 1;
        if bytes.get(escape) != Some(&b'u') {
            // `\\`, `\"` and the one-letter escapes: the next byte is the escape's own.
            continue;
        }
        at = escape + 5;
        match unit(escape + 1)? {
            0xDC00..=0xDFFF => return Err("lone leading surrogate in hex escape"),
            0xD800..=0xDBFF => {
                if bytes.get(at) != Some(&b'\\') || bytes.get(at + 1) != Some(&b'u') {
                    return Err("unexpected end of hex escape");
                }
                if !(0xDC00..=0xDFFF).contains(&unit(at + 2)?) {
                    return Err("lone leading surrogate in hex escape");
                }
                at += 6;
            }
            _ => {}
        }
    }
    Ok(())
}

/// One text for one JSON value, whatever its spacing, member order and string escapes:
/// compact, object members sorted by name (the last of a name given twice, as a JSON
/// reader keeps it), strings escaped as serde_json writes them, and numbers kept as
/// written (never through a float). `None` for text that is not JSON, or that nests
/// deeper than [`CANONICAL_DEPTH`] (serde_json's own limit): each level is read on its
/// own, so the depth bounds both the recursion and the work (depth x size).
pub(crate) fn canonical_text(text: &str) -> Option<String> {
    fn write(text: &str, out: &mut String, depth: usize) -> Option<()> {
        match text.trim_start().as_bytes().first()? {
            b'{' => {
                let depth = depth.checked_sub(1)?;
                let members: std::collections::BTreeMap<String, &RawValue> =
                    serde_json::from_str(text).ok()?;
                out.push('{');
                for (i, (name, value)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(&name).ok()?);
                    out.push(':');
                    write(value.get(), out, depth)?;
                }
                out.push('}');
            }
            b'[' => {
                let depth = depth.checked_sub(1)?;
                let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
                out.push('[');
                for (i, item) in items.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item.get(), out, depth)?;
                }
                out.push(']');
            }
            b'"' => {
                let content: Cow<'_, str> = serde_json::from_str(text).ok()?;
                out.push_str(&serde_json::to_string(&content).ok()?);
            }
            // A number, `true`, `false` or `null`, as written.
            _ => out.push_str(serde_json::from_str::<&RawValue>(text).ok()?.get()),
        }
        Some(())
    }
    let mut out = String::with_capacity(text.len());
    write(text, &mut out, CANONICAL_DEPTH)?;
    Some(out)
}

/// The deepest nesting [`canonical_text`] reads.
const CANONICAL_DEPTH: usize = 128;

/// A `RawValue` over text the scanner has checked, borrowed as serde_json borrows one
/// from its input: serde_json's own deserialiser for `&RawValue` is handed the text
/// through serde's value deserialisers (no parse, no copy). Should that protocol ever
/// change, the text is parsed by serde_json instead (slower, same result).
pub(crate) fn raw_value(text: &str) -> Result<&RawValue, ScanError> {
    match borrowed_raw_value(text) {
        // Taken only when it is the text itself.
        Ok(raw) if std::ptr::eq(raw.get(), text) => Ok(raw),
        _ => serde_json::from_str::<&RawValue>(text).map_err(|e| ScanError(e.to_string())),
    }
}

/// A `RawValue` owning `text`, which the relay wrote itself (a pseudonym: a quoted hex
/// string). The text is checked by the scanner (one value, nothing around it), then
/// handed to serde_json's `Box<RawValue>` deserialiser as [`raw_value`] hands it a
/// borrowed one, so serde_json does not parse it again. Whether serde_json still takes
/// its text that way is checked once per process; if it does not, or the scanner
/// refuses the text, serde_json parses it (and what is not JSON becomes `null`).
pub(crate) fn owned_raw_value(text: String) -> Box<RawValue> {
    use serde::de::value::{BorrowedStrDeserializer, Error, MapDeserializer, StringDeserializer};
    use serde::Deserialize;
    fn boxed(text: String) -> Result<Box<RawValue>, Error> {
        let entry = (
            BorrowedStrDeserializer::<Error>::new(RAW_VALUE_TOKEN),
            StringDeserializer::<Error>::new(text),
        );
        <Box<RawValue>>::deserialize(MapDeserializer::new(std::iter::once(entry)))
    }
    static TAKES_TEXT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let takes_text =
        *TAKES_TEXT.get_or_init(|| boxed("[1]".to_owned()).is_ok_and(|raw| raw.get() == "[1]"));
    let mut scanner = Scanner::new(&text);
    let whole = scanner
        .raw()
        .is_ok_and(|raw| raw.len() == text.len() && scanner.end().is_ok());
    let raw = if takes_text && whole {
        boxed(text).map_err(|_| ())
    } else {
        RawValue::from_string(text).map_err(|_| ())
    };
    raw.unwrap_or_else(|()| RawValue::NULL.to_owned())
}

/// The key serde_json's `RawValue` deserialisers expect their text under.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// The no-parse path of [`raw_value`]: how serde_json's `&RawValue` deserialiser takes
/// its text (a one-entry map from its private token to the borrowed string).
fn borrowed_raw_value(text: &str) -> Result<&RawValue, serde::de::value::Error> {
    use serde::de::value::{BorrowedStrDeserializer, MapDeserializer};
    use serde::Deserialize;
    let entry = (
        BorrowedStrDeserializer::<serde::de::value::Error>::new(RAW_VALUE_TOKEN),
        BorrowedStrDeserializer::<serde::de::value::Error>::new(text),
    );
    <&RawValue>::deserialize(MapDeserializer::new(std::iter::once(entry)))
}

/// The repository's sample MSK events (`events/`), for the readers' differential tests.
#[cfg(test)]
pub(crate) const SAMPLE_EVENTS: [&str; 5] = [
    include_str!("../../../events/insert.json"),
    include_str!("../../../events/multi-topic.json"),
    include_str!("../../../events/before-images.json"),
    include_str!("../../../events/oracle-names.json"),
    include_str!("../../../events/ddl-control.json"),
];

/// Checks `agree` on `docs` cut, spliced and scribbled on with JSON's punctuation and
/// `noise`: up to four edits of one document, each at any byte or (half of them) next to
/// a structural character, where a reader's edge cases are; 4,000 cases.
#[cfg(test)]
pub(crate) fn check_scribbled(
    docs: &[String],
    mut noise: Vec<&'static str>,
    agree: impl Fn(&[u8]) -> Result<(), String>,
) {
    use proptest::prelude::*;
    noise.extend([
        "\"", "\\", "{", "}", "[", "]", ",", ":", "null", "-", "0", " ",
    ]);
    let edit = (
        0..docs.len(),
        any::<prop::sample::Index>(),
        any::<bool>(),
        prop::sample::select(vec![0usize, 0, 1, 2, 3]),
        prop::sample::select(noise),
    );
    proptest!(ProptestConfig::with_cases(4000), |(edits in prop::collection::vec(edit, 1..5))| {
        let mut doc = docs[edits.first().map_or(0, |e| e.0)].clone().into_bytes();
        for (_, at, structural, cut, text) in &edits {
            let places: Vec<usize> = if *structural {
                let marks = doc.iter().enumerate();
                marks
                    .filter(|(_, b)| b"{}[],:\"".contains(b))
                    .map(|(i, _)| i + 1)
                    .collect()
            } else {
                (0..=doc.len()).collect()
            };
            let at = places.get(at.index(places.len().max(1))).copied().unwrap_or(0);
            let end = (at + cut).min(doc.len());
            doc.splice(at..end, text.bytes());
        }
        let agreed = agree(&doc);
        prop_assert!(agreed.is_ok(), "{}: {:?}", String::from_utf8_lossy(&doc), agreed);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The raw value is the scanned text itself: no parse, no copy.
    #[test]
    fn raw_values_borrow_the_scanned_text() {
        let text = r#"{"a": [1, {"b": "c\"d"}], "e": 12.5e-3}"#;
        let raw = borrowed_raw_value(text).expect("serde_json takes a borrowed raw value");
        assert_eq!(raw.get(), text);
        assert_eq!(raw.get().as_ptr(), text.as_ptr());
    }

    /// An owned raw value is the text it was given, without a parse.
    #[test]
    fn owned_raw_values_keep_their_text() {
        let text = "\"0123456789abcdef\"".to_owned();
        let at = text.as_ptr();
        let raw = owned_raw_value(text);
        assert_eq!(raw.get(), "\"0123456789abcdef\"");
        assert_eq!(raw.get().as_ptr(), at, "the string itself, not a copy");
        // Never a raw value that is not JSON, nor one with space around it.
        for (text, kept) in [
            ("not json", "null"),
            ("", "null"),
            ("{\"a\":", "null"),
            (" 1 ", "1"),
        ] {
            assert_eq!(owned_raw_value(text.to_owned()).get(), kept, "{text:?}");
        }
    }

    /// Every way of scanning agrees with serde_json on what is JSON and what a value's
    /// text is.
    #[test]
    fn accepts_exactly_what_serde_json_accepts() {
        let cases = [
            "0",
            "-0",
            "1.5",
            "-1.5e+10",
            "1E5",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "1e+",
            "--1",
            "true",
            "tru",
            "nul",
            "null",
            "false",
            "\"\"",
            "\"a\\u0041\"",
            "\"\\ud800\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\nb\"",
            "\"a\u{7f}b\"",
            "[]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{}",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{1:2}",
            "{\"a\":1 \"b\":2}",
            "[[[[[[[[[[]]]]]]]]]]",
            "[[[[]]]",
            "{\"a\":[{\"b\":[null,true,{}]}]}",
            " [1] ",
            "\"abcdefghijklmnopqrstuvwxyz0123456789\\\"abcdefghijklmnopqrstuvwxyz\"",
            "\"abcdefghijklmnopqrstuvwxyz0123456789\u{1}abcdefghijklmnopqrstuvwxyz\"",
            "\"unterminated",
            "[1] 2",
            "",
        ];
        for case in cases {
            let reference = serde_json::from_str::<&RawValue>(case).map(RawValue::get);
            let mut scanner = Scanner::new(case);
            let ours = scanner.raw().and_then(|raw| scanner.end().map(|()| raw));
            assert_eq!(
                ours.is_ok(),
                reference.is_ok(),
                "{case:?}: {ours:?} {reference:?}"
            );
            if let (Ok(ours), Ok(reference)) = (ours, reference) {
                assert_eq!(ours, reference, "{case:?}");
            }
        }
    }

    /// Strings read as text unescape as serde_json does, and refuse what it refuses
    /// (lone surrogates, control characters, unknown escapes).
    #[test]
    fn strings_read_as_serde_json_reads_them() {
        let cases = [
            "\"plain\"",
            "\"caf\\u00e9 \\\" \\\\ \\/ \\b\\f\\n\\r\\t\"",
            "\"\\ud83d\\ude00 and more text after the pair to cross sixteen bytes\"",
            "\"\\ud83d\"",
            "\"\\ude00\"",
            "\"\\ud83d\\u0041\"",
            "\"\\ud83dx\"",
            "\"tab\there\"",
            "\"\\q\"",
            "\"\\u00zz\"",
            "\"é and 日本\"",
            "\"a\\",
        ];
        for case in cases {
            let reference = serde_json::from_str::<String>(case);
            let ours = Scanner::new(case).string();
            assert_eq!(ours.is_ok(), reference.is_ok(), "{case:?}: {ours:?}");
            if let (Ok(ours), Ok(reference)) = (ours, reference) {
                assert_eq!(ours, reference, "{case:?}");
            }
        }
        assert!(matches!(
            Scanner::new("\"plain\"").string(),
            Ok(Cow::Borrowed("plain"))
        ));
    }

    /// A guessed key is taken exactly where `key` would read that key, and nowhere
    /// else: the comma rules, JSON's whitespace and no other, the colon, a longer key, an
    /// escaped one, the end of the text. On a miss nothing is consumed.
    #[test]
    fn a_guessed_key_is_taken_only_where_key_reads_it() {
        // (text after `{`, first key of the object?, taken?)
        let cases: [(&str, bool, bool); 20] = [
            ("\"topic\":1", true, true),
            (" \t\r\n\"topic\" \n: 1", true, true),
            (",\"topic\":1", false, true),
            (" ,\n \"topic\":1", false, true),
            (",\"topic\":1", true, false),
            ("\"topic\":1", false, false),
            (",,\"topic\":1", false, false),
            ("\"topic\" 1", true, false),
            ("\"topic\"", true, false),
            ("\"topic", true, false),
            (",", false, false),
            ("", true, false),
            ("\"topicX\":1", true, false),
            ("\"top\\u0069c\":1", true, false),
            ("\u{c}\"topic\":1", true, false),
            ("\u{b}\"topic\":1", true, false),
            ("\"topic\"\u{c}:1", true, false),
            ("}", true, false),
            (",}", false, false),
            ("\"Topic\":1", true, false),
        ];
        for (rest, first, taken) in cases {
            let text = format!("{{{rest}");
            let mut s = Scanner::new(&text);
            s.object("an object").expect("an object");
            let mut is_first = first;
            assert_eq!(s.key_is(&mut is_first, b"\"topic\""), taken, "{text:?}");
            if taken {
                assert!(!is_first, "{text:?}");
                assert_eq!(s.integer(), Ok(1), "{text:?}");
            } else {
                assert_eq!(is_first, first, "{text:?}");
                assert_eq!(s.at, 1, "{text:?}: nothing consumed");
            }
        }
    }

    /// Integers are what serde_json reads as an `i64`, no more.
    #[test]
    fn integers_fit_i64() {
        for case in [
            "0",
            "7",
            "-00",
            "00",
            "012",
            "-",
            "123456789012345678",
            "-123456789012345678",
            "1234567890123456789",
            "-1234567890123456789",
            "12a",
            "1]",
            "1.5",
            "-0.0",
            "0e1",
            "18446744073709551616",
            "-1",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "-0",
            "1.0",
            "1e3",
            "\"1\"",
            "01",
        ] {
            let reference = serde_json::from_str::<i64>(case);
            let mut scanner = Scanner::new(case);
            let ours = scanner.integer().and_then(|n| scanner.end().map(|()| n));
            assert_eq!(
                ours.as_ref().ok(),
                reference.as_ref().ok(),
                "{case:?}: {ours:?}"
            );
        }
    }

    /// The stop search finds the first quote, backslash or control character at any
    /// offset, and nothing else.
    #[test]
    fn stop_byte_finds_the_first_stop_anywhere() {
        for len in 0..40 {
            for at in 0..len {
                for stop in [b'"', b'\\', 0x00, 0x1f] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = stop;
                    if at + 1 < len {
                        bytes[at + 1] = b'"';
                    }
                    assert_eq!(stop_byte(&bytes), Some(at), "{len} {at} {stop}");
                }
            }
            let plain: Vec<u8> = (0..len)
                .map(|i| 0x20 + (i as u8 * 7) % 0x5f)
                .filter(|&b| b != b'"' && b != b'\\')
                .collect();
            assert_eq!(stop_byte(&plain), None);
            let high = vec![0xc3u8; len];
            assert_eq!(stop_byte(&high), None);
        }
    }

    /// A string of any length ends at its quote, or fails at its first control
    /// character or unterminated, wherever that lies (in the first two words or past
    /// them, where the vector search takes over).
    #[test]
    fn strings_end_where_serde_json_ends_them() {
        for len in 0..80 {
            let plain = "a".repeat(len);
            let cases = [
                format!("\"{plain}\""),
                format!("\"{plain}"),
                format!("\"{plain}\u{1}b\""),
                format!("\"{plain}\u{1f}"),
                format!("\"{plain}\\n{plain}\""),
                format!("\"{plain}\\\"\u{2}\""),
            ];
            for case in cases {
                let reference = serde_json::from_str::<String>(&case);
                let ours = Scanner::new(&case).string();
                assert_eq!(ours.as_deref().ok(), reference.as_deref().ok(), "{case:?}");
                let reference = serde_json::from_str::<&RawValue>(&case).map(RawValue::get);
                let ours = Scanner::new(&case).raw();
                assert_eq!(ours.ok(), reference.ok(), "{case:?}");
            }
        }
    }

    /// The escape check takes exactly the strings serde_json takes (lone and reversed
    /// surrogates, an escaped backslash before `u`), inside any value.
    #[test]
    fn unicode_escapes_are_checked_as_serde_json_checks_them() {
        let strings = [
            r#""plain""#,
            r#""\ud83d\ude00""#,
            r#""\ud83d""#,
            r#""\udc00""#,
            r#""\ude00\ud83d""#,
            r#""\ud83d\u0041""#,
            r#""\ud83d\n""#,
            r#""\\ud800""#,
            r#""\\\ud800""#,
            r#""a\"\ud800\"""#,
            r#""\u00e9\t\/""#,
            r#""\uDBFF\uDFFF""#,
        ];
        for text in strings {
            let serde = serde_json::from_str::<String>(text).is_ok();
            assert_eq!(check_unicode_escapes(text).is_ok(), serde, "{text}");
            let nested = format!(r#"{{"a":[1e400,{{"b":{text}}}]}}"#);
            assert_eq!(check_unicode_escapes(&nested).is_ok(), serde, "{nested}");
        }
    }

    /// One text per value: spacing, member order, escapes and repeated names aside;
    /// numbers as written.
    #[test]
    fn canonical_text_keeps_numbers_as_written() {
        let same = [
            (
                r#"{ "b" : [1.50, 1e400], "a": "\u0041" }"#,
                r#"{"a":"A","b":[1.50,1e400]}"#,
            ),
            (r#"{"a":1,"a":2}"#, r#"{"a":2}"#),
            (r#"[ {"z":null,"y":true} ]"#, r#"[{"y":true,"z":null}]"#),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
        ];
        for (text, canonical) in same {
            assert_eq!(canonical_text(text).as_deref(), Some(canonical), "{text}");
        }
        assert_ne!(canonical_text("[1.5]"), canonical_text("[1.50]"));
        assert_eq!(canonical_text("{"), None);
        // Nesting past serde_json's limit has no canonical text (and no stack overflow,
        // however deep: one level is read at a time).
        let at_limit = format!("{}1{}", "[".repeat(128), "]".repeat(128));
        assert_eq!(
            canonical_text(&at_limit).as_deref(),
            Some(at_limit.as_str())
        );
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(canonical_text(&deep), None);
        assert_eq!(canonical_text(r#"["\ud800"]"#), None);
    }

    /// Errors say where.
    #[test]
    fn errors_name_line_and_column() {
        let mut scanner = Scanner::new("{\n  \"a\": tru\n}");
        let error = scanner.raw().expect_err("not JSON");
        assert_eq!(error.to_string(), "expected ident at line 2 column 11");
    }
}
