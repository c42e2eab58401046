//! What a guest says: its WASI stdout and stderr and its `host.log` lines,
//! turned into the node's log lines (tracing field `driver`), and the last
//! few kept for the report of a trap.
//!
//! Why: a driver author's first tool is `print`/`console.log`, and the
//! language runtimes write why a guest died (a Rust panic, a Python
//! traceback, a JavaScript uncaught exception) to stderr just before the
//! trap. Discarding it leaves a bare "wasm `unreachable` instruction
//! executed".
//!
//! Invariants:
//! - the guest is never blocked, refused or re-entered by a write: every
//!   write is accepted at once into memory (a stream that failed would make
//!   some runtimes trap on `print`), and what is over the limits is dropped;
//! - what reaches the log is bounded: lines of at most [`MAX_LINE`] bytes
//!   (the rest of a longer line is dropped), at most
//!   [`MAX_LINES_PER_CALL`] per call into the guest and
//!   [`MAX_LINES_PER_SECOND`] per second of the node's clock (a token
//!   bucket); a note says how many were dropped, at most once a second and
//!   when the instance goes away;
//! - memory is bounded: one partial line per stream (at most [`MAX_LINE`]
//!   bytes) and the [`TAIL_LINES`] last lines;
//! - the tail holds the last lines the guest wrote whether or not the rate
//!   limit let them into the log, so a trap's report does not depend on
//!   timing (the simulator's traces stay byte for byte the same);
//! - control characters are escaped, so a guest cannot forge log lines or
//!   drive a terminal.

use super::bindings::LogLevel;
use crate::clock::Clock;
use bytes::Bytes;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept, in bytes; the rest of a longer line is dropped and
/// the line marked with `…`.
pub const MAX_LINE: usize = 4096;
/// Lines per call into the guest that reach the log.
pub const MAX_LINES_PER_CALL: u32 = 64;
/// Lines per second (of the node's clock) that reach the log, over calls.
pub const MAX_LINES_PER_SECOND: u32 = 200;
/// Lines kept for a trap's report.
pub const TAIL_LINES: usize = 8;
/// How much a write may be offered at once (`check-write`).
const WRITE_PERMIT: usize = 64 << 10;

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Stdout,
    Stderr,
    /// The `host.log` import, at its level.
    Log(LogLevel),
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Stdout => "stdout",
            Source::Stderr => "stderr",
            Source::Log(_) => "log",
        }
    }
}

/// Lines of a guest's output that reached the log, and that did not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub logged: u64,
    pub dropped: u64,
}

/// One guest instance's output; clones share it (the WASI streams, the
/// guest's state).
#[derive(Clone)]
pub struct GuestOutput {
    inner: Arc<Mutex<Output>>,
}

struct Output {
    driver: String,
    node: u64,
    clock: Arc<dyn Clock>,
    /// The line being written on stdout, on stderr.
    partial: [Vec<u8>; 2],
    /// Whether the partial line was cut at [`MAX_LINE`] (the rest until the
    /// newline is dropped).
    cut: [bool; 2],
    call_lines: u32,
    /// The token bucket: lines that may reach the log now, as of `refilled_ms`.
    tokens: u32,
    refilled_ms: u64,
    /// Lines not logged since the last note, and when that note was.
    dropped: u64,
    noted_ms: Option<u64>,
    /// Lines logged and dropped over the instance's life.
    counts: Counts,
    tail: VecDeque<String>,
}

impl GuestOutput {
    pub fn new(clock: Arc<dyn Clock>) -> GuestOutput {
        let now = clock.now().mono_ms;
        GuestOutput {
            inner: Arc::new(Mutex::new(Output {
                driver: String::from("(unnamed)"),
                node: 0,
                clock,
                partial: [Vec::new(), Vec::new()],
                cut: [false; 2],
                call_lines: 0,
                tokens: MAX_LINES_PER_SECOND,
                refilled_ms: now,
                dropped: 0,
                noted_ms: None,
                counts: Counts::default(),
                tail: VecDeque::with_capacity(TAIL_LINES),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Output> {
        // A panic while holding the lock leaves plain data behind.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Who the lines are attributed to.
    pub fn attribute(&self, driver: &str, node: u64) {
        let mut out = self.lock();
        out.driver = driver.to_string();
        out.node = node;
    }

    /// The WASI stream for stdout or stderr (`source` is one of the two).
    pub fn stream(&self, source: Source) -> impl StdoutStream + 'static {
        GuestStream {
            output: self.clone(),
            source,
        }
    }

    /// A new call into the guest: a fresh per-call budget, and the note of
    /// what was dropped, if one is due.
    pub fn begin_call(&self) {
        let mut out = self.lock();
        out.call_lines = 0;
        out.note(false);
    }

    /// A `host.log` line (possibly several lines: each is kept in the tail).
    pub fn log(&self, level: LogLevel, message: &str) {
        self.lock().line(Source::Log(level), message.as_bytes());
    }

    /// The last lines the guest wrote, oldest first, with a line not yet
    /// ended by a newline last.
    pub fn tail(&self) -> Vec<String> {
        let out = self.lock();
        let mut tail: Vec<String> = out.tail.iter().cloned().collect();
        for (partial, cut) in out.partial.iter().zip(out.cut) {
            if !partial.is_empty() {
                tail.push(clean(partial, cut));
            }
        }
        let excess = tail.len().saturating_sub(TAIL_LINES);
        tail.drain(..excess);
        tail
    }

    /// Lines logged and dropped so far.
    pub fn counts(&self) -> Counts {
        self.lock().counts
    }

    fn write(&self, source: Source, bytes: &[u8]) {
        self.lock().write(source, bytes);
    }
}

impl Output {
    fn index(source: Source) -> usize {
        usize::from(source == Source::Stderr)
    }

    /// Bytes on stdout or stderr: complete lines go out, the rest waits.
    fn write(&mut self, source: Source, mut bytes: &[u8]) {
        let i = Self::index(source);
        while !bytes.is_empty() {
            let (chunk, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(at) => (&bytes[..at], true),
                None => (bytes, false),
            };
            bytes = &bytes[(chunk.len() + usize::from(ended))..];
            let room = MAX_LINE - self.partial[i].len();
            if chunk.len() > room {
                self.cut[i] = true;
            }
            self.partial[i].extend_from_slice(&chunk[..chunk.len().min(room)]);
            if ended {
                let line = std::mem::take(&mut self.partial[i]);
                let cut = std::mem::take(&mut self.cut[i]);
                self.emit(source, clean(&line, cut));
            }
        }
    }

    /// A `host.log` message: each of its lines goes to the tail, the
    /// message to the log as one event (its newlines escaped).
    fn line(&mut self, source: Source, message: &[u8]) {
        let kept = &message[..message.len().min(MAX_LINE)];
        let lines: Vec<&[u8]> = kept.split(|&b| b == b'\n').collect();
        let last = lines.len() - 1;
        let lines: Vec<String> = lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| clean(l, i == last && message.len() > MAX_LINE))
            .collect();
        for line in &lines {
            self.keep(line.clone());
        }
        self.log(source, &lines.join("\\n"));
    }

    /// A line from stdout or stderr.
    fn emit(&mut self, source: Source, line: String) {
        self.keep(line.clone());
        self.log(source, &line);
    }

    /// Into the tail, whatever the rate limit says; a blank line says
    /// nothing.
    fn keep(&mut self, line: String) {
        if line.trim().is_empty() {
            return;
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// Into the node's log, if the limits admit it; else counted.
    fn log(&mut self, source: Source, text: &str) {
        if !self.admit() {
            self.dropped += 1;
            self.counts.dropped += 1;
            return;
        }
        self.counts.logged += 1;
        let (driver, node) = (&self.driver, self.node);
        let stream = source.name();
        match source {
            Source::Stdout => tracing::info!(driver = %driver, node, stream, "{text}"),
            Source::Stderr => tracing::warn!(driver = %driver, node, stream, "{text}"),
            Source::Log(LogLevel::Error) => tracing::error!(driver = %driver, node, "{text}"),
            Source::Log(LogLevel::Warn) => tracing::warn!(driver = %driver, node, "{text}"),
            Source::Log(LogLevel::Info) => tracing::info!(driver = %driver, node, "{text}"),
            Source::Log(LogLevel::Debug) => tracing::debug!(driver = %driver, node, "{text}"),
            Source::Log(LogLevel::Trace) => tracing::trace!(driver = %driver, node, "{text}"),
        }
    }

    /// Whether one more line may reach the log: within this call's budget
    /// and a token left in the bucket.
    fn admit(&mut self) -> bool {
        if self.call_lines >= MAX_LINES_PER_CALL {
            return false;
        }
        let now = self.clock.now().mono_ms;
        let elapsed = now.saturating_sub(self.refilled_ms);
        let refill = elapsed.saturating_mul(u64::from(MAX_LINES_PER_SECOND)) / 1000;
        if refill > 0 {
            self.tokens =
                (u64::from(self.tokens) + refill).min(u64::from(MAX_LINES_PER_SECOND)) as u32;
            self.refilled_ms = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        self.call_lines += 1;
        true
    }

    /// Say how many lines were dropped: at most once a second, or now
    /// (`last`: the instance goes away).
    fn note(&mut self, last: bool) {
        if self.dropped == 0 {
            return;
        }
        let now = self.clock.now().mono_ms;
        if !last
            && self
                .noted_ms
                .is_some_and(|at| now.saturating_sub(at) < 1000)
        {
            return;
        }
        tracing::warn!(
            driver = %self.driver,
            node = self.node,
            dropped = self.dropped,
            "driver {} wrote more than the log takes from a guest ({MAX_LINES_PER_CALL} lines \
             per call, {MAX_LINES_PER_SECOND} per second, {MAX_LINE} bytes per line): dropped \
             {} lines of its output",
            self.driver,
            self.dropped
        );
        self.dropped = 0;
        self.noted_ms = Some(now);
    }
}

impl Drop for Output {
    /// The instance is gone: what it wrote without a final newline, and the
    /// last note.
    fn drop(&mut self) {
        for source in [Source::Stdout, Source::Stderr] {
            let i = Self::index(source);
            if !self.partial[i].is_empty() {
                let line = std::mem::take(&mut self.partial[i]);
                let cut = self.cut[i];
                self.emit(source, clean(&line, cut));
            }
        }
        self.note(true);
    }
}

/// A line as logged: UTF-8 (lossy), without a trailing `\r`, control
/// characters escaped, `…` if it was cut.
fn clean(bytes: &[u8], cut: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    let mut line = String::with_capacity(text.len() + 3);
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    if cut {
        line.push('…');
    }
    line
}

/// What a language runtime wrote about why the guest died, from the last
/// lines it wrote:
/// - Python (componentize-py): the first unindented line after a
///   traceback's frames (`ValueError: …`); it comes first, as
///   componentize-py's own runtime may panic after printing it;
/// - Rust: a panic's message, on the lines after "panicked at FILE:L:C:"
///   (the guest SDK's hook logs "driver panicked: panicked at …", std's
///   own hook writes "thread '…' panicked at …" to stderr);
/// - JavaScript (componentize-js, StarlingMonkey): the line before
///   "Stack:"; an error thrown out of a function that returns
///   `result<_, driver-error>` but is not a `{tag, val}` driver-error is
///   named as such, with the fix.
pub fn exception(tail: &[String]) -> Option<String> {
    let tail: Vec<&str> = tail
        .iter()
        .map(String::as_str)
        .filter(|l| !l.trim().is_empty())
        .collect();
    if let Some(at) = tail
        .iter()
        .rposition(|l| l.starts_with("Traceback (most recent call last)"))
    {
        return tail[at + 1..]
            .iter()
            .find(|l| !l.starts_with(char::is_whitespace))
            .map(|l| l.to_string());
    }
    if let Some(at) = tail.iter().rposition(|l| l.contains("panicked at ")) {
        let location = tail[at]
            .split_once("panicked at ")
            .map_or("", |(_, l)| l)
            .trim_end_matches(':');
        let message: Vec<&str> = tail[at + 1..]
            .iter()
            .map(|l| l.trim())
            .take_while(|l| !l.starts_with("note: "))
            .collect();
        return Some(if message.is_empty() {
            format!("panicked at {location}")
        } else {
            format!("{} (panicked at {location})", message.join(" "))
        });
    }
    let at = tail.iter().rposition(|l| l.trim() == "Stack:")?;
    let error = tail[..at].last()?.trim();
    const NOT_A_DRIVER_ERROR: (&str, &str) = (
        "invalid variant tag value `undefined` (received `",
        "`) specified for `DriverError`",
    );
    Some(
        match error
            .strip_prefix(NOT_A_DRIVER_ERROR.0)
            .and_then(|e| e.strip_suffix(NOT_A_DRIVER_ERROR.1))
        {
            Some(thrown) => format!(
                "{thrown}, thrown out of a function that returns result<_, driver-error>: \
                 throw a driver-error ({{tag: \"internal\", val: message}}) for an err, \
                 nothing else"
            ),
            None => error
                .strip_prefix("Error while running top-level module: ")
                .unwrap_or(error)
                .to_string(),
        },
    )
}

/// A WASI output stream into [`GuestOutput`]: always ready, never full.
struct GuestStream {
    output: GuestOutput,
    source: Source,
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(GuestStream {
            output: self.output.clone(),
            source: self.source,
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(GuestStream {
            output: self.output.clone(),
            source: self.source,
        })
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.output.write(self.source, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for GuestStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.output.write(self.source, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::Now;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Manual(AtomicU64);

    impl Clock for Manual {
        fn now(&self) -> Now {
            let mono_ms = self.0.load(Ordering::SeqCst);
            Now {
                wall_ms: mono_ms,
                mono_ms,
            }
        }
    }

    fn output() -> (GuestOutput, Arc<Manual>) {
        let clock = Arc::new(Manual::default());
        (GuestOutput::new(clock.clone()), clock)
    }

    #[test]
    fn lines_are_assembled_cut_and_cleaned() {
        let (out, _) = output();
        out.write(Source::Stdout, b"hel");
        out.write(Source::Stderr, b"err\r\n");
        out.write(Source::Stdout, b"lo\nwor");
        let long = vec![b'x'; MAX_LINE + 10];
        out.write(Source::Stderr, &long);
        out.write(Source::Stderr, b"yyy\n\x1b[31mred\n\n");
        let mut cut = "x".repeat(MAX_LINE);
        cut.push('…');
        assert_eq!(
            out.tail(),
            vec![
                "err".to_string(),
                "hello".into(),
                cut,
                "\\u{1b}[31mred".into(),
                "wor".into()
            ]
        );
        // A blank line is logged, not kept.
        assert_eq!(out.counts().logged, 5);
        out.log(
            LogLevel::Error,
            "driver panicked: panicked at src/lib.rs:1:2:\nboom",
        );
        let tail = out.tail();
        assert_eq!(
            tail[tail.len() - 3..],
            [
                "driver panicked: panicked at src/lib.rs:1:2:",
                "boom",
                "wor"
            ]
        );
    }

    #[test]
    fn the_tail_keeps_the_last_lines_whatever_the_limits_drop() {
        let (out, _) = output();
        for i in 0..1000 {
            out.write(Source::Stdout, format!("line {i}\n").as_bytes());
        }
        let tail = out.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), "line 999");
        assert_eq!(
            out.counts(),
            Counts {
                logged: u64::from(MAX_LINES_PER_CALL),
                dropped: 1000 - u64::from(MAX_LINES_PER_CALL),
            }
        );
    }

    #[test]
    fn lines_per_call_and_per_second_are_bounded() {
        let (out, clock) = output();
        // Calls at the same instant: the bucket empties after a second's worth.
        for _ in 0..10 {
            out.begin_call();
            for _ in 0..MAX_LINES_PER_CALL {
                out.write(Source::Stdout, b"x\n");
            }
        }
        assert_eq!(out.counts().logged, u64::from(MAX_LINES_PER_SECOND));
        // Half a second refills half the bucket.
        clock.0.store(500, Ordering::SeqCst);
        for _ in 0..10 {
            out.begin_call();
            for _ in 0..MAX_LINES_PER_CALL {
                out.write(Source::Stdout, b"x\n");
            }
        }
        let counts = out.counts();
        assert_eq!(counts.logged, u64::from(MAX_LINES_PER_SECOND * 3 / 2));
        assert_eq!(
            counts.logged + counts.dropped,
            20 * u64::from(MAX_LINES_PER_CALL)
        );
    }

    #[test]
    fn exceptions_of_each_runtime() {
        let lines = |s: &str| s.lines().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            exception(&lines(
                "starting\ndriver panicked: panicked at src/lib.rs:282:22:\nmisbehave: trapping"
            ))
            .as_deref(),
            Some("misbehave: trapping (panicked at src/lib.rs:282:22)")
        );
        assert_eq!(
            exception(&lines(
                "thread '<unnamed>' panicked at src/main.rs:3:5:\nboom\nnote: run with \
                 `RUST_BACKTRACE=1` environment variable to display a backtrace"
            ))
            .as_deref(),
            Some("boom (panicked at src/main.rs:3:5)")
        );
        assert_eq!(
            exception(&lines(
                "Traceback (most recent call last):\n  File \"driver.py\", line 3, in init\n    \
                 raise ValueError('bad')\nValueError: bad\nthread '<unnamed>' panicked at \
                 src/lib.rs:1:1:\nPython exception"
            ))
            .as_deref(),
            Some("ValueError: bad")
        );
        assert_eq!(
            exception(&lines(
                "TypeError: null has no properties\nStack:\n  onTick@driver.js:9:3\n\n\
                 Redirecting call to abort() to mozalloc_abort"
            ))
            .as_deref(),
            Some("TypeError: null has no properties")
        );
        let thrown = exception(&lines(
            "invalid variant tag value `undefined` (received `Error: boom`) specified for \
             `DriverError`\nStack:\n  init@x.js:1:1",
        ))
        .unwrap();
        assert!(
            thrown.starts_with("Error: boom, thrown out of a function"),
            "{thrown}"
        );
        assert_eq!(exception(&lines("just a line\nand another")), None);
    }
}
