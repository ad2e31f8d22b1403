//! Logging, filtered by `LVSDR_LOG` (default `info`): plain text on stderr (coloured
//! only for a person at a terminal), JSON on stderr, or native journald entries whose
//! fields (`service`, `server`, `error`, …) become journal fields (`LVSDR_SERVICE`, …),
//! so that `journalctl -u lvsdr-director LVSDR_SERVICE=web` finds one service's lines.
//!
//! With no `--log-format`, a daemon whose stderr is the journal (systemd sets
//! `JOURNAL_STREAM` to that stream's device and inode) logs natively to journald;
//! anything else gets text.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event on stderr.
    Text,
    /// One JSON object per event on stderr.
    Json,
    /// Native journald entries, each field a journal field (`LVSDR_…`).
    Journald,
}

/// The prefix of the journal fields made from an event's fields: journald's own
/// fields (`PRIORITY`, `MESSAGE`, …) cannot be overwritten by a field of ours.
pub const JOURNAL_FIELD_PREFIX: &str = "LVSDR";

impl LogFormat {
    /// `--log-format` if given; else journald when stderr is the journal, else text.
    pub fn choose(given: Option<LogFormat>) -> LogFormat {
        given.unwrap_or_else(|| Self::by_stream(journal_stream(), stderr_identity()))
    }

    /// Journald when stderr (device, inode) is the stream `JOURNAL_STREAM` names.
    fn by_stream(journal: Option<(u64, u64)>, stderr: Option<(u64, u64)>) -> LogFormat {
        match (journal, stderr) {
            (Some(j), Some(e)) if j == e => LogFormat::Journald,
            _ => LogFormat::Text,
        }
    }
}

/// The journal stream systemd gave this process, if any.
fn journal_stream() -> Option<(u64, u64)> {
    parse_stream(&std::env::var("JOURNAL_STREAM").ok()?)
}

/// `JOURNAL_STREAM`'s "device:inode".
fn parse_stream(s: &str) -> Option<(u64, u64)> {
    let (dev, ino) = s.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Stderr's device and inode.
fn stderr_identity() -> Option<(u64, u64)> {
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let m = std::fs::File::from(fd).metadata().ok()?;
    Some((m.dev(), m.ino()))
}

/// Installs the global subscriber (once per process). `journald` falls back to text
/// on stderr (which systemd also collects) when the journal's socket cannot be opened.
pub fn init(format: LogFormat) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("LVSDR_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let fmt = || {
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
    };
    match format {
        LogFormat::Text => fmt().init(),
        LogFormat::Json => fmt().json().init(),
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => tracing_subscriber::registry()
                .with(filter())
                .with(layer.with_field_prefix(Some(JOURNAL_FIELD_PREFIX.to_owned())))
                .init(),
            Err(e) => {
                fmt().init();
                tracing::warn!(error = %e, "cannot open the journal's socket; logging text to stderr");
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_and_inode() {
        assert_eq!(parse_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_stream("8"), None);
        assert_eq!(parse_stream("x:1"), None);
    }

    #[test]
    fn a_given_format_wins_and_a_terminal_or_pipe_gets_text() {
        assert_eq!(LogFormat::choose(Some(LogFormat::Json)), LogFormat::Json);
        assert_eq!(LogFormat::choose(Some(LogFormat::Text)), LogFormat::Text);
        let stream = Some((8, 4711));
        assert_eq!(LogFormat::by_stream(stream, stream), LogFormat::Journald);
        assert_eq!(
            LogFormat::by_stream(stream, Some((8, 4712))),
            LogFormat::Text,
            "JOURNAL_STREAM inherited from a parent, stderr redirected elsewhere"
        );
        assert_eq!(LogFormat::by_stream(None, Some((8, 4711))), LogFormat::Text);
        assert_eq!(LogFormat::by_stream(stream, None), LogFormat::Text);
        assert!(
            stderr_identity().is_some(),
            "this test's stderr has an inode"
        );
    }
}
