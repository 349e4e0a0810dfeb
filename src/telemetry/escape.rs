//! Log lines that cannot be forged or disguised by the text they quote. Record ids,
//! names and answers come from outside; written raw, a newline in one starts a fake
//! log line, and a right-to-left override (U+202E) makes a line read differently from
//! what it holds. tracing-subscriber already escapes ANSI sequences inside fields;
//! this writer escapes what it leaves: every control character other than a tab and
//! the line's own final newline, and the Unicode bidi controls. ESC is kept, because
//! the only ESC left in a line is the formatter's own colouring.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Wraps a [`MakeWriter`] so every line it writes is escaped.
pub struct Escaping<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaping<M> {
    type Writer = EscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter(self.0.make_writer())
    }
}

/// A writer escaping each line (one formatted event) before handing it on.
pub struct EscapingWriter<W>(W);

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(escape(buf).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Whether `c` reorders or hides text around it (the bidi embedding, override and
/// isolate controls, and the marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `line` with control and bidi characters written as `\u{…}` (a newline as `\n`),
/// except a tab, ESC, and one final newline.
pub fn escape(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let (body, end) = match text.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (&*text, ""),
    };
    if !body.chars().any(needs_escape) {
        return text.into_owned();
    }
    let mut escaped = String::with_capacity(body.len() + 16);
    for c in body.chars() {
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            c if needs_escape(c) => escaped.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => escaped.push(c),
        }
    }
    escaped.push_str(end);
    escaped
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t' && c != '\x1b') || is_bidi_control(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_bidi_controls_inside_a_line_are_escaped() {
        let line = "record=../../x\u{202e}\0 next\nFAKE line\n";
        assert_eq!(
            escape(line.as_bytes()),
            "record=../../x\\u{202e}\\u{0} next\\nFAKE line\n"
        );
    }

    /// Lines written by the pretty subscriber, kept for the test.
    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_pretty_subscriber_writes_a_hostile_field_on_one_escaped_line() {
        let capture = Capture::default();
        let config = crate::config::LogConfig {
            level: "info".into(),
            format: crate::config::LogFormat::Pretty,
        };
        let writer = {
            let capture = capture.clone();
            move || capture.clone()
        };
        let subscriber = super::super::log_subscriber(&config, writer, false).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            // Shown with Display (`%`), as ids and names are: nothing escaped before
            // the writer.
            let record = "x\u{202e}\nFAKE  INFO forged";
            tracing::info!(record = %record, "survey queued");
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("x\\u{202e}\\nFAKE"), "{text}");
    }

    #[test]
    fn plain_lines_and_colours_are_untouched() {
        let line = "\x1b[32m INFO\x1b[0m answered\tin 3 ms\n";
        assert_eq!(escape(line.as_bytes()), line);
    }
}
