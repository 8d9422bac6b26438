//! The log lines as `tracing-subscriber` writes them, made cheap where every
//! token request pays: its audit event (BENCHMARKS.md, "Logging: json as
//! deployed, text", has the instructions per event).
//!
//! - Text is the stock format (`Full`): tracing-subscriber is built without
//!   its `ansi` feature (with it, every field name, `=` and `:` goes through
//!   `nu_ansi_term` even with colours off), and stamped by [`Timer`].
//! - JSON is the stock flattened JSON line, written by [`JsonFormat`] with
//!   the stock format's own parts (serde_json's serializer, tracing-serde's
//!   field visitor) into one buffer: the stock formatter hands every piece
//!   serde_json emits to an `io::Write` adaptor that checks it is UTF-8 and
//!   makes a dynamic call, over half of its instructions.

use std::cell::RefCell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use oidc_core::calendar::Utc;
use serde::ser::{SerializeMap, Serializer as _};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The stock `SystemTime` timer's stamp, `2026-12-02T06:13:21.096483Z`
/// (RFC 3339, UTC, microseconds), written from the calendar instead of
/// seven padded `write!`s; the stock timer itself for the instants the
/// calendar does not cover (before 1970, from year 10000).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timer;

impl FormatTime for Timer {
    fn format_time(&self, writer: &mut Writer<'_>) -> fmt::Result {
        let since = SystemTime::now().duration_since(UNIX_EPOCH);
        match since {
            Ok(since) if since.as_secs() < YEAR_10000 => {
                let stamp = rfc3339_micros(since.as_secs(), since.subsec_micros());
                writer.write_str(std::str::from_utf8(&stamp).map_err(|_| fmt::Error)?)
            }
            _ => tracing_subscriber::fmt::time::SystemTime.format_time(writer),
        }
    }
}

/// 10000-01-01T00:00:00Z in Unix seconds.
const YEAR_10000: u64 = 253_402_300_800;

/// `secs` (before year 10000) and `micros` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn rfc3339_micros(secs: u64, micros: u32) -> [u8; 27] {
    let utc = Utc::from_unix_seconds(secs);
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for digit in out[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
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
    out
}

/// The event formatter of `format = "json"`: tracing-subscriber's flattened
/// JSON line (`json().flatten_event(true)`), byte for byte (the tests
/// compare), built the way the stock formatter builds it but in one buffer.
/// Events inside spans and records from the `log` crate (the server logs
/// neither on a request's path) are left to the stock formatter, which
/// adds the spans and rewrites the metadata.
#[derive(Debug)]
pub struct JsonFormat {
    stock: Format<Json, Timer>,
}

impl Default for JsonFormat {
    fn default() -> Self {
        Self {
            stock: tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_timer(Timer),
        }
    }
}

thread_local! {
    /// The line being built, kept for the thread's next event.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<S, N> FormatEvent<S, N> for JsonFormat
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
        if meta.fields().field("log.target").is_some()
            || event.parent().is_some()
            || ctx.lookup_current().is_some()
        {
            return self.stock.format_event(ctx, writer, event);
        }
        let mut stamp = String::with_capacity(32);
        Timer.format_time(&mut Writer::new(&mut stamp))?;
        let mut write = |line: &mut Vec<u8>| -> fmt::Result {
            line.clear();
            let mut serializer = serde_json::Serializer::new(&mut *line);
            let built = (|| {
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("timestamp", &stamp)?;
                map.serialize_entry("level", meta.level().as_str())?;
                let mut fields = tracing_serde::SerdeMapVisitor::new(map);
                event.record(&mut fields);
                let mut map = fields.take_serializer()?;
                map.serialize_entry("target", meta.target())?;
                map.end()
            })();
            built.map_err(|_| fmt::Error)?;
            writer.write_str(std::str::from_utf8(line).map_err(|_| fmt::Error)?)?;
            writer.write_char('\n')
        };
        // An event logged while formatting another (a field's `Debug` that
        // logs) gets a buffer of its own.
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => write(&mut line),
            Err(_) => write(&mut Vec::new()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::{debug, error, info, info_span, trace, warn, Level};
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

    /// Logs an event that logs another while its field is formatted.
    struct Chatty;

    impl fmt::Debug for Chatty {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            info!(target: "nested", inner = "while formatting");
            f.write_str("chatty")
        }
    }

    /// Every kind of event the server logs, and the awkward ones.
    fn emit() {
        for value in AWKWARD {
            info!(target: "audit", event = "token_issued", connector = value, auth_method = "client_secret_basic",
                jti = %value, aud = value, scope = "", kid = %"key-1", exp = 1_796_178_846u64, peer = %"10.0.0.1");
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
        info!(log.target = "hidden", shown = 1u64, "a log.* field");
        info!(chatty = ?Chatty, "an event logged while this one is formatted");
        info!(parent: None, "an explicit root");
        let outer = info_span!("request", method = "POST", path = "/token");
        let _outer = outer.enter();
        info!("inside one span");
        info!(parent: None, "an explicit root inside a span");
        let inner = info_span!("inner", id = tracing::field::Empty);
        let _inner = inner.enter();
        info!("inside two spans, inner without fields");
        inner.record("id", 7u64);
        info!("after a recorded field");
        let bare = info_span!("bare");
        let _bare = bare.enter();
        warn!(peer = "2001:db8::1", "three spans");
    }

    /// What the subscriber `build` makes writes for `emit`.
    fn lines<F>(build: F, emit: impl FnOnce()) -> String
    where
        F: FnOnce(Capture) -> Box<dyn Subscriber + Send + Sync>,
    {
        let capture = Capture::default();
        tracing::subscriber::with_default(build(capture.clone()), emit);
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// A record from the `log` crate, as a dependency (rustls) logs.
    fn log_record() {
        let record = log::Record::builder()
            .level(log::Level::Warn)
            .target("rustls::client")
            .module_path(Some("rustls::client::hs"))
            .file(Some("hs.rs"))
            .line(Some(7))
            .args(format_args!("a log record \x1b[1m \"quoted\""))
            .build();
        tracing_log::format_trace(&record).unwrap();
    }

    /// The server's JSON subscriber (as `install` builds it) and the stock one.
    fn json(ours: bool) -> impl FnOnce(Capture) -> Box<dyn Subscriber + Send + Sync> {
        move |writer| {
            let builder = tracing_subscriber::fmt()
                .with_max_level(Level::TRACE)
                .with_writer(writer)
                .json()
                .flatten_event(true);
            if ours {
                Box::new(builder.event_format(JsonFormat::default()).finish())
            } else {
                Box::new(builder.finish())
            }
        }
    }

    /// The server's text subscriber (as `install` builds it) and the stock one.
    fn text(ours: bool) -> impl FnOnce(Capture) -> Box<dyn Subscriber + Send + Sync> {
        move |writer| {
            let builder = tracing_subscriber::fmt()
                .with_max_level(Level::TRACE)
                .with_writer(writer);
            if ours {
                Box::new(builder.with_ansi(false).with_timer(Timer).finish())
            } else {
                Box::new(builder.finish())
            }
        }
    }

    /// A JSON line's timestamp masked (compared on its own below).
    fn json_untimed(line: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let stamp = value["timestamp"].as_str().unwrap_or_else(|| panic!("{line}"));
        assert!(is_stamp(stamp), "{line}");
        line.replacen(stamp, "<time>", 1)
    }

    /// Text lines with their timestamps masked; a message may hold a raw
    /// line break, so a piece without a stamp at its start continues the
    /// line before.
    fn text_untimed(text: &str) -> Vec<String> {
        text.split_inclusive('\n')
            .map(|piece| match piece.get(..28) {
                Some(head) if head.get(..27).is_some_and(is_stamp) && head.ends_with(' ') => {
                    format!("<time> {}", &piece[28..])
                }
                _ => piece.to_owned(),
            })
            .collect()
    }

    fn is_stamp(text: &str) -> bool {
        let b = text.as_bytes();
        b.len() == 27
            && b.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b'T',
                13 | 16 => *c == b':',
                19 => *c == b'.',
                26 => *c == b'Z',
                _ => c.is_ascii_digit(),
            })
    }

    #[test]
    fn json_lines_are_exactly_the_stock_formatter_s() {
        let stock = lines(json(false), emit);
        let ours = lines(json(true), emit);
        assert!(stock.lines().count() > 100, "{stock}");
        let stock: Vec<String> = stock.lines().map(json_untimed).collect();
        let ours: Vec<String> = ours.lines().map(json_untimed).collect();
        assert_eq!(stock.len(), ours.len());
        for (stock, ours) in stock.iter().zip(&ours) {
            assert_eq!(stock, ours);
        }
        // The audit events are flat objects with the fields as written.
        let audit: Vec<serde_json::Value> = ours
            .iter()
            .filter(|line| line.contains("\"target\":\"audit\""))
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(audit.len(), 2 * AWKWARD.len());
        for (event, value) in audit.iter().step_by(2).zip(AWKWARD) {
            assert_eq!(event["event"], "token_issued");
            assert_eq!(event["connector"], value);
            assert_eq!(event["jti"], value);
            assert_eq!(event["exp"], 1_796_178_846u64);
            assert_eq!(event["level"], "INFO");
        }
    }

    #[test]
    fn a_json_line_formatted_while_the_buffer_is_taken_gets_its_own() {
        // What an event logged while another is formatted meets (under a
        // global subscriber; a scoped one, as here, drops the inner event).
        let held = || {
            LINE.with(|line| {
                let _taken = line.borrow_mut();
                info!(target: "audit", event = "token_issued", connector = "c\"1", exp = 7u64);
            });
        };
        let stock = lines(json(false), held);
        let ours = lines(json(true), held);
        assert!(
            stock.contains(r#""connector":"c\"1","exp":7,"target":"audit"}"#),
            "{stock}"
        );
        assert_eq!(json_untimed(stock.trim_end()), json_untimed(ours.trim_end()));
    }

    #[test]
    fn json_records_from_the_log_crate_are_the_stock_formatter_s() {
        let stock = lines(json(false), log_record);
        let ours = lines(json(true), log_record);
        assert!(stock.contains("\"target\":\"rustls::client\""), "{stock}");
        assert_eq!(json_untimed(stock.trim_end()), json_untimed(ours.trim_end()));
    }

    #[test]
    fn text_lines_are_the_stock_format_with_its_stamp() {
        let stock = text_untimed(&lines(text(false), emit));
        let ours = text_untimed(&lines(text(true), emit));
        assert!(ours.iter().filter(|line| line.starts_with("<time> ")).count() > 100);
        assert_eq!(stock, ours);
        let stock = text_untimed(&lines(text(false), log_record));
        let ours = text_untimed(&lines(text(true), log_record));
        assert!(
            ours[0].contains(" WARN rustls::client: a log record \\x1b[1m"),
            "{ours:?}"
        );
        assert_eq!(stock, ours);
    }

    #[test]
    fn text_lines_carry_no_terminal_control_characters_from_values() {
        // Strangers' text (a claimed client id, an error's message) must
        // not move a terminal's cursor or retitle its window.
        let ours = text_untimed(&lines(text(true), emit));
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
    fn tracing_subscriber_is_built_without_its_ansi_feature() {
        // With it, the stock text format styles every field name, `=` and
        // `:` even with colours off (BENCHMARKS.md); without it, its
        // default is no colours.
        let plain = lines(
            |writer| Box::new(tracing_subscriber::fmt().with_writer(writer).finish()),
            || warn!(field = 1u64, "message"),
        );
        assert!(!plain.contains('\x1b'), "{plain:?}");
    }

    #[test]
    fn timestamps_match_the_stock_timer() {
        let stamp = |secs, micros| String::from_utf8(rfc3339_micros(secs, micros).to_vec()).unwrap();
        assert_eq!(stamp(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(stamp(951_782_400, 500_000), "2000-02-29T00:00:00.500000Z");
        assert_eq!(stamp(1_796_178_846, 96_483), "2026-12-02T02:34:06.096483Z");
        assert_eq!(stamp(YEAR_10000 - 1, 999_999), "9999-12-31T23:59:59.999999Z");
        // Against the stock timer now: the same to the second (retried when a
        // second boundary falls between the two readings).
        let same_second = (0..5).any(|_| {
            let mut stock = String::new();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut stock))
                .unwrap();
            let mut ours = String::new();
            Timer.format_time(&mut Writer::new(&mut ours)).unwrap();
            is_stamp(&ours) && ours.len() == stock.len() && ours[..19] == stock[..19]
        });
        assert!(same_second);
    }
}
