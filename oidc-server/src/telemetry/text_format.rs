//! The text log line, byte for byte as `tracing-subscriber`'s default format
//! (`Full`) writes it without colours, written without its styling layer.
//!
//! Every token request logs an audit event, so its formatting is on the hot
//! path: the stock formatter runs each field name, `=` and `:` through
//! `nu_ansi_term` even when colours are off, and formats the timestamp with
//! seven padded integer `write!`s: 13.7k instructions of a 300k-instruction
//! request, 5.4k written here (BENCHMARKS.md). This formatter writes the same
//! bytes directly. It hands the event to the stock formatter whenever it
//! would not know the bytes for certain: colours on (a terminal), and records
//! that came from the `log` crate (whose metadata the stock formatter
//! rewrites). The tests compare both formatters' lines for the same events,
//! so a `tracing-subscriber` upgrade that changes its format fails them.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use oidc_core::internal::calendar::Utc;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of `format = "text"`.
#[derive(Debug, Default)]
pub struct TextFormat {
    stock: Format<Full>,
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if writer.has_ansi_escapes() || meta.fields().field("log.target").is_some() {
            return self.stock.format_event(ctx, writer, event);
        }

        write_timestamp(&mut writer)?;
        writer.write_str(level_str(meta.level()))?;
        writer.write_char(' ')?;

        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                seen = true;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, "{{{fields}}}")?;
                    }
                }
                writer.write_char(':')?;
            }
            if seen {
                writer.write_char(' ')?;
            }
        }

        writer.write_str(meta.target())?;
        writer.write_str(": ")?;

        let mut fields = PlainFields {
            sanitize: writer.sanitizes_ansi_escapes(),
            writer: writer.by_ref(),
            is_empty: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writeln!(writer)
    }
}

/// The stock level column: five wide, right-aligned.
fn level_str(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// `2026-12-02T06:13:21.096483Z ` (RFC 3339, microseconds, then a space), as
/// the stock `SystemTime` timer writes it; that timer for the instants this
/// calendar does not cover (before 1970, after 9999).
fn write_timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    let now = SystemTime::now();
    match now.duration_since(UNIX_EPOCH) {
        Ok(since) if since.as_secs() < 253_402_300_800 => {
            let stamp = rfc3339_micros(since.as_secs(), since.subsec_micros());
            writer.write_str(std::str::from_utf8(&stamp).map_err(|_| fmt::Error)?)?;
        }
        _ => {
            if tracing_subscriber::fmt::time::SystemTime
                .format_time(writer)
                .is_err()
            {
                writer.write_str("<unknown time>")?;
            }
        }
    }
    writer.write_char(' ')
}

/// `secs` (before year 10000) and `micros` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn rfc3339_micros(secs: u64, micros: u32) -> [u8; 27] {
    let utc = Utc::from_unix_seconds(secs);
    let mut out = [0u8; 27];
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, utc.year);
    put(5, 2, utc.month);
    put(8, 2, utc.day);
    put(11, 2, utc.hour);
    put(14, 2, utc.minute);
    put(17, 2, utc.second);
    put(20, 6, u64::from(micros));
    for (at, separator) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        out[at] = separator;
    }
    out
}

/// The stock field visitor (`DefaultVisitor`) without styling: `name=value`
/// separated by spaces, values in `Debug`, the message first-class, ANSI
/// escapes in messages and errors written out as text.
struct PlainFields<'w> {
    writer: Writer<'w>,
    sanitize: bool,
    is_empty: bool,
    result: fmt::Result,
}

impl PlainFields<'_> {
    /// Writes the separator and `name=` (no name for the message); false for
    /// the `log.` fields, which the stock formatter leaves out.
    fn start(&mut self, name: &str) -> bool {
        if name.starts_with("log.") {
            return false;
        }
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.result = self.writer.write_char(' ');
        }
        if name != "message" && self.result.is_ok() {
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.result = self
                .writer
                .write_str(name)
                .and_then(|()| self.writer.write_char('='));
        }
        true
    }
}

impl Visit for PlainFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else if debug_is_verbatim(value) {
            if self.start(field.name()) && self.result.is_ok() {
                self.result = (self.writer.write_char('"'))
                    .and_then(|()| self.writer.write_str(value))
                    .and_then(|()| self.writer.write_char('"'));
            }
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_ok() && self.start(field.name()) && self.result.is_ok() {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.result.is_ok() && self.start(field.name()) && self.result.is_ok() {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let sanitize = self.sanitize;
        match value.source() {
            Some(source) => self.record_debug(
                field,
                &format_args!(
                    "{} {}.sources={}",
                    Escaped::new(format_args!("{value}"), sanitize),
                    field.name(),
                    ErrorSources {
                        error: source,
                        sanitize
                    }
                ),
            ),
            None => self.record_debug(
                field,
                &format_args!("{}", Escaped::new(format_args!("{value}"), sanitize)),
            ),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() || !self.start(field.name()) || self.result.is_err() {
            return;
        }
        self.result = if field.name() == "message" {
            write!(self.writer, "{:?}", Escaped::new(value, self.sanitize))
        } else {
            write!(self.writer, "{value:?}")
        };
    }
}

/// Whether `str`'s `Debug` is the string itself in quotes: printable ASCII
/// without `"` or `\` (everything else may be escaped).
fn debug_is_verbatim(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
}

/// A value whose terminal control characters are written as escapes, as the
/// stock formatter writes messages and errors (an untrusted string must not
/// move a terminal's cursor or retitle its window).
struct Escaped<T> {
    value: T,
    sanitize: bool,
}

impl<T> Escaped<T> {
    fn new(value: T, sanitize: bool) -> Self {
        Self { value, sanitize }
    }
}

impl<T: fmt::Debug> fmt::Debug for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sanitize {
            write!(EscapingWriter(f), "{:?}", self.value)
        } else {
            write!(f, "{:?}", self.value)
        }
    }
}

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sanitize {
            write!(EscapingWriter(f), "{}", self.value)
        } else {
            write!(f, "{}", self.value)
        }
    }
}

struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            match ch {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", ch as u32)?,
                _ => self.0.write_char(ch)?,
            }
        }
        Ok(())
    }
}

/// An error's chain of sources as a list: `[first, second]`.
struct ErrorSources<'a> {
    error: &'a (dyn std::error::Error + 'static),
    sanitize: bool,
}

impl fmt::Display for ErrorSources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut current = Some(self.error);
        while let Some(error) = current {
            list.entry(&Escaped::new(format_args!("{error}"), self.sanitize));
            current = error.source();
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::{debug, error, info, info_span, trace, warn};
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Failure {
        message: &'static str,
        source: Option<Box<Failure>>,
    }

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.message)
        }
    }

    impl std::error::Error for Failure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.source.as_deref().map(|e| e as _)
        }
    }

    /// Untrusted-looking values: quotes, backslashes, control characters,
    /// C1 controls, terminal escapes, non-ASCII, grapheme extenders.
    const AWKWARD: [&str; 12] = [
        "",
        "plain-connector_01",
        "with space and 'single' quotes",
        "a \"quoted\" value",
        "back\\slash",
        "line\nbreak\ttab\rreturn",
        "\x1b[31mred\x1b[0m \x07bell \x08 \x0c \x7f",
        "c1 \u{85} \u{9b}31m \u{9f}",
        "héllo wörld ✓ 🦀",
        "\u{301}combining first",
        "nul\0byte",
        "~!@#$%^&*()_+`-={}[]|:;<>?,./",
    ];

    /// Every kind of event the server logs, and the awkward ones.
    fn emit() {
        for value in AWKWARD {
            info!(target: "audit", event = "token_issued", connector = value, auth_method = "client_secret_basic",
                jti = %value, aud = value, scope = "", kid = %"key-1", exp = 1_796_178_846u64);
            info!(target: "audit", event = "token_refused", client = value, reason = "bad_secret", peer = "198.51.100.7");
            warn!(connector = %value, "token not issued: {value}");
            info!(message = value);
            info!(
                r#type = value,
                count = -3i64,
                ok = true,
                ratio = 0.25f64,
                big = 1u128 << 100
            );
            error!(
                error = &Failure {
                    message: value,
                    source: None
                } as &(dyn std::error::Error + 'static),
                "failed"
            );
            let chain = Failure {
                message: "outer",
                source: Some(Box::new(Failure {
                    message: value,
                    source: Some(Box::new(Failure {
                        message: "root cause \x1b]0;title\x07",
                        source: None,
                    })),
                })),
            };
            error!(error = &chain as &(dyn std::error::Error + 'static), "chained");
            info!(debugged = ?Some(value), "debug value");
        }
        trace!("trace level");
        debug!("debug level");
        info!("");
        info!(target: "oidc_server::serve", listen = "127.0.0.1:8080", "listening");
        info!(log.target = "hidden", shown = 1u64, "log.* fields are left out");
        let outer = info_span!("request", method = "POST", path = "/token");
        let _outer = outer.enter();
        info!("inside one span");
        let inner = info_span!("inner", id = tracing::field::Empty);
        let _inner = inner.enter();
        info!("inside two spans, inner without fields");
        inner.record("id", 7u64);
        info!("after a recorded field");
        let bare = info_span!("bare");
        let _bare = bare.enter();
        warn!(peer = "2001:db8::1", "three spans");
    }

    fn lines<F>(build: F) -> String
    where
        F: FnOnce(Capture) -> Box<dyn Subscriber + Send + Sync>,
    {
        let capture = Capture::default();
        let subscriber = build(capture.clone());
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// The lines with their timestamps masked (compared on their own below);
    /// a message may hold a raw line break, so a piece without one at its
    /// start continues the line before.
    fn untimed(text: &str) -> Vec<String> {
        text.split_inclusive('\n')
            .map(|piece| {
                let b = piece.as_bytes();
                let timed = b.len() > 28
                    && b[4] == b'-'
                    && b[10] == b'T'
                    && b[19] == b'.'
                    && b[26] == b'Z'
                    && b[27] == b' '
                    && b[..4].iter().all(u8::is_ascii_digit);
                if timed {
                    format!("<time> {}", &piece[28..])
                } else {
                    piece.to_owned()
                }
            })
            .collect()
    }

    #[test]
    fn writes_exactly_what_the_stock_formatter_writes() {
        let stock = lines(|w| {
            Box::new(
                tracing_subscriber::fmt()
                    .with_max_level(Level::TRACE)
                    .with_ansi(false)
                    .with_writer(w)
                    .finish(),
            )
        });
        let ours = lines(|w| {
            Box::new(
                tracing_subscriber::fmt()
                    .with_max_level(Level::TRACE)
                    .with_ansi(false)
                    .with_writer(w)
                    .event_format(TextFormat::default())
                    .finish(),
            )
        });
        assert!(stock.lines().count() > 100, "{stock}");
        assert!(
            untimed(&stock)
                .iter()
                .filter(|line| line.starts_with("<time> "))
                .count()
                > 100
        );
        let (stock, ours) = (untimed(&stock), untimed(&ours));
        assert_eq!(stock.len(), ours.len());
        for (stock, ours) in stock.iter().zip(&ours) {
            assert_eq!(stock, ours);
        }
        // Debug-formatted values and errors came out escaped, not raw (as in
        // the stock format, `%` fields are written as their `Display` says).
        let escaped: Vec<&String> = ours
            .iter()
            .filter(|line| line.contains("token_refused") || line.contains("ERROR"))
            .collect();
        assert!(escaped.len() >= 3 * AWKWARD.len());
        for line in escaped {
            let line = line.strip_suffix('\n').unwrap_or(line);
            assert!(!line.contains(['\x1b', '\x07', '\u{9b}', '\n']), "{line:?}");
        }
        assert!(ours.iter().any(|line| line.contains("error.sources=[")));
    }

    #[test]
    fn records_from_the_log_crate_are_left_to_the_stock_formatter() {
        let record = |w: Capture, ours: bool| -> String {
            let builder = tracing_subscriber::fmt()
                .with_max_level(Level::TRACE)
                .with_ansi(false)
                .with_writer(w.clone());
            let emit = || {
                let record = log::Record::builder()
                    .level(log::Level::Warn)
                    .target("rustls::client")
                    .module_path(Some("rustls::client::hs"))
                    .file(Some("hs.rs"))
                    .line(Some(7))
                    .args(format_args!("a log record \x1b[1m"))
                    .build();
                tracing_log::format_trace(&record).unwrap();
            };
            if ours {
                tracing::subscriber::with_default(builder.event_format(TextFormat::default()).finish(), emit);
            } else {
                tracing::subscriber::with_default(builder.finish(), emit);
            }
            let bytes = w.0.lock().unwrap().clone();
            String::from_utf8(bytes).unwrap()
        };
        let stock = record(Capture::default(), false);
        let ours = record(Capture::default(), true);
        assert!(
            stock.contains(" WARN rustls::client: a log record \\x1b[1m"),
            "{stock}"
        );
        assert_eq!(untimed(&stock), untimed(&ours));
    }

    #[test]
    fn timestamps_match_the_stock_timer() {
        let stamp = |secs, micros| String::from_utf8(rfc3339_micros(secs, micros).to_vec()).unwrap();
        assert_eq!(stamp(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(stamp(951_782_400, 500_000), "2000-02-29T00:00:00.500000Z");
        assert_eq!(stamp(1_796_178_846, 96_483), "2026-12-02T02:34:06.096483Z");
        assert_eq!(stamp(253_402_300_799, 999_999), "9999-12-31T23:59:59.999999Z");
        // Against the stock timer now: the same to the second (retried when a
        // second boundary falls between the two readings).
        let same_second = (0..5).any(|_| {
            let mut stock = String::new();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut stock))
                .unwrap();
            let mut ours = String::new();
            write_timestamp(&mut Writer::new(&mut ours)).unwrap();
            ours.len() == stock.len() + 1 && ours.ends_with(' ') && ours[..19] == stock[..19]
        });
        assert!(same_second);
    }

    #[test]
    fn verbatim_debug_is_only_claimed_where_it_holds() {
        for value in AWKWARD.iter().copied().chain(["a", "~", " ", "'"]) {
            if debug_is_verbatim(value) {
                assert_eq!(format!("{value:?}"), format!("\"{value}\""));
            }
        }
        assert!(!debug_is_verbatim("a\"b") && !debug_is_verbatim("a\\b") && !debug_is_verbatim("é"));
    }
}
