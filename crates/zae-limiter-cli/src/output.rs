//! Output formats shared by every command, writing to stdout (a closed pipe ends the
//! command quietly), and the typed error every command ends with ([`CliError`]: one line
//! and an exit code).

use std::io::{ErrorKind, Write};

use clap::ValueEnum;

/// Exit codes, as documented in `--help` and the README.
pub mod exit {
    /// Any other failure.
    pub const ERROR: u8 = 1;
    /// Usage: arguments clap rejected, or input the CLI rejected after clap (`--consume`).
    pub const USAGE: u8 = 2;
    /// Refused: a limit would be exceeded.
    pub const RATE_LIMITED: u8 = 3;
    /// The store (DynamoDB) could not be reached or timed out.
    pub const UNAVAILABLE: u8 = 4;
}

/// A command's failure: one line for stderr and the process exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// One of [`exit`].
    pub code: u8,
    /// What went wrong (printed after `error: `, escaped and shortened to one line).
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }

    /// Input rejected before anything was done (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }

    /// The line printed on stderr: `error: ` and the message on one line.
    pub fn line(&self) -> String {
        format!("error: {}", one_line(&self.message))
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<zae_limiter::Error> for CliError {
    fn from(e: zae_limiter::Error) -> Self {
        use zae_limiter::Error;
        let code = match &e {
            Error::RateLimited(_) => exit::RATE_LIMITED,
            // an outage or throttling; a missing table or access denied is not an outage
            e if e.is_unavailable() => exit::UNAVAILABLE,
            // also state, not only arguments ("no limits given or stored"): an error; the
            // CLI's own checks of what clap cannot parse use CliError::usage
            _ => exit::ERROR,
        };
        CliError::new(code, e.to_string())
    }
}

/// The error text of commands that still return `Result<_, String>`: a library error turned
/// into text. An outage is recognised by the library's wording (`rate limiter unavailable:`,
/// `rate limiter throttled by the store:`), everything else is exit 1.
impl From<String> for CliError {
    fn from(message: String) -> Self {
        let outage = message.contains("rate limiter unavailable: ")
            || message.contains("rate limiter throttled by the store: ");
        let code = if outage && !message.contains(MISSING_TABLE) {
            exit::UNAVAILABLE
        } else {
            exit::ERROR
        };
        CliError::new(code, message)
    }
}

impl From<&str> for CliError {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// For the commands that still return `Result<_, String>` (the code is recomputed from the
/// text by `From<String>`).
impl From<CliError> for String {
    fn from(e: CliError) -> Self {
        e.message
    }
}

/// The DynamoDB error code of an operation on a table that does not exist.
pub const MISSING_TABLE: &str = "ResourceNotFoundException";

/// `text` on one line for a terminal: control characters (newlines, escapes, ...) escaped
/// like Rust's `escape_debug` (`\n`, `\u{1b}`), the rest unchanged.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Longest error line printed (in characters), after dropping debug dumps.
const MAX_LINE: usize = 300;

/// A library message as one short line: debug dumps of the AWS SDK (` (DispatchFailure(...))`,
/// ` (Request { ... })`) removed, control characters escaped, at most [`MAX_LINE`] characters.
pub fn one_line(message: &str) -> String {
    let mut s = message.to_string();
    while let Some((start, end)) = debug_dump(&s) {
        s.replace_range(start..end, "");
    }
    let s = escape(&s);
    if s.chars().count() <= MAX_LINE {
        return s;
    }
    let mut cut: String = s.chars().take(MAX_LINE - 3).collect();
    cut.push_str("...");
    cut
}

/// The byte range of the first ` (Ident(...))` / ` (Ident { ... })` in `s`, bracket-balanced.
fn debug_dump(s: &str) -> Option<(usize, usize)> {
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(i) = s[from..].find(" (").map(|i| i + from) {
        from = i + 2;
        let rest = &s[i + 2..];
        let ident = rest
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(rest.len());
        let after = &rest[ident..];
        let starts_upper = rest.starts_with(|c: char| c.is_ascii_uppercase());
        if ident == 0 || !starts_upper || !(after.starts_with('(') || after.starts_with(" {")) {
            continue;
        }
        let mut depth = 0usize;
        for (j, &b) in bytes.iter().enumerate().skip(i + 1) {
            match b {
                b'(' | b'{' | b'[' => depth += 1,
                b')' | b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Some((i, j + 1));
                    }
                }
                _ => {}
            }
        }
        return None;
    }
    None
}

/// Write `text` and a newline to stdout. A closed pipe (`zae-limiter ... | head -n 1`) means
/// nobody reads further: the process ends quietly with exit 0.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let result = writeln!(out, "{text}").and_then(|()| out.flush());
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            std::process::exit(i32::from(exit::ERROR));
        }
    }
}

/// `println!` elsewhere panics on a closed stdout: end those quietly with exit 0 too, and
/// keep the default report for every other panic.
pub fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if payload.contains("failed printing to stdout") && payload.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Progress on stderr: a spinner with the current step when stderr is a terminal (and
/// `TERM` is not `dumb`); otherwise the steps are plain lines ([`Progress::step`]) and the
/// updates ([`Progress::update`]) are not shown, so logs and pipes get no `\r` or escapes.
pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    /// A spinner on a terminal, plain lines elsewhere.
    pub fn new() -> Self {
        use std::io::IsTerminal;
        let tty =
            std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb");
        Progress(tty.then(|| {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.enable_steady_tick(std::time::Duration::from_millis(120));
            pb
        }))
    }

    /// A step worth a line in a log (`bench: scenario a: ...`).
    pub fn step(&self, message: String) {
        match &self.0 {
            Some(pb) => pb.set_message(message),
            None => eprintln!("{message}"),
        }
    }

    /// A transient update (a counter), shown on a terminal only.
    pub fn update(&self, message: String) {
        if let Some(pb) = &self.0 {
            pb.set_message(message);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Human-readable tables.
    #[default]
    Table,
    /// One JSON document, for scripts.
    Json,
}

/// Render rows as an aligned text table (comfy-table): the header, a line of `-` under it,
/// then one line per row; columns two spaces apart, no borders, no trailing spaces, never
/// colours (plain text whether or not stdout is a terminal).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    use comfy_table::{Table, TableComponent};
    let mut t = Table::new();
    // no borders, no column separators: only the line under the header
    t.load_preset(comfy_table::presets::NOTHING)
        .set_style(TableComponent::HeaderLines, '-')
        .set_header(headers.to_vec());
    for r in rows {
        t.add_row(r.clone());
    }
    let last = headers.len().saturating_sub(1);
    for (i, c) in t.column_iter_mut().enumerate() {
        c.set_padding((0, if i == last { 0 } else { 2 }));
    }
    t.trim_fmt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_drops_sdk_dumps() {
        let m = "rate limiter unavailable: dispatch failure: io error: tcp connect error: \
                 Connection refused (os error 111) (DispatchFailure(DispatchFailure { source: \
                 ConnectorError { kind: Io, source: E(Connect, X(\"t\", 127.0.0.1:9)) } })) \
                 [entity=k, resource=r]";
        assert_eq!(
            one_line(m),
            "rate limiter unavailable: dispatch failure: io error: tcp connect error: \
             Connection refused (os error 111) [entity=k, resource=r]"
        );
        assert_eq!(one_line("a (b) (Request { x: 1 })"), "a (b)");
        assert_eq!(one_line("bad 'a\nb\u{1b}'"), "bad 'a\\nb\\u{1b}'");
        assert_eq!(one_line(&"x".repeat(400)).chars().count(), MAX_LINE);
    }

    #[test]
    fn codes() {
        use zae_limiter::Error;
        let e = Error::TableNotFound {
            message: "ResourceNotFoundException: no table".into(),
            source: None,
        };
        assert_eq!(CliError::from(e).code, exit::ERROR);
        let e = Error::AccessDenied {
            message: "AccessDeniedException: no".into(),
            source: None,
        };
        assert_eq!(CliError::from(e).code, exit::ERROR);
        let e = || Error::Unavailable {
            message: "timeout".into(),
            source: None,
        };
        assert_eq!(CliError::from(e()).code, exit::UNAVAILABLE);
        assert_eq!(CliError::from(e().to_string()).code, exit::UNAVAILABLE);
        let t = || Error::Throttled {
            message: "ThrottlingException: slow down".into(),
            source: None,
        };
        assert_eq!(CliError::from(t()).code, exit::UNAVAILABLE);
        assert_eq!(CliError::from(t().to_string()).code, exit::UNAVAILABLE);
        assert_eq!(CliError::from("entity 'k' not found").code, exit::ERROR);
    }

    #[test]
    fn aligned() {
        let t = super::table(&["a", "bbb"], &[vec!["xx".into(), "y".into()]]);
        assert_eq!(t, "a   bbb\n-------\nxx  y");
        // width by characters, not bytes; an empty last cell leaves no trailing space
        let t = super::table(&["é", "b"], &[vec!["ééé".into(), String::new()]]);
        assert_eq!(t, "é    b\n------\nééé");
    }
}
