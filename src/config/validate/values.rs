//! The value readers every part of validation shares ([`V`]): a duration, an integer in
//! a range, an address, one of a set of names; each wrong value is an error with its
//! place, and reading goes on.

use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::config::{line_col, ConfigError, Host};

/// The longest duration any key takes.
const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Reads values out of the parsed file, collecting an error (with its line and column)
/// for each that is wrong.
pub(super) struct V<'a> {
    pub text: &'a str,
    pub file: &'a str,
    pub host: &'a Host,
    pub errors: Vec<ConfigError>,
}

impl<'a> V<'a> {
    /// Nothing read yet.
    pub fn new(text: &'a str, file: &'a str, host: &'a Host) -> V<'a> {
        V {
            text,
            file,
            host,
            errors: Vec::new(),
        }
    }

    pub fn err(&mut self, span: Range<usize>, context: &str, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            column,
            context: context.to_string(),
            message: message.into(),
        });
    }

    /// The line of a byte offset. It scans the text: call it only to report an error,
    /// never per entry (that made a 10,000-service config take minutes).
    pub fn line_of(&self, offset: usize) -> usize {
        line_col(self.text, offset).0
    }

    /// A duration above 0 and at most [`MAX_DURATION`]: a zero interval would spin,
    /// a huge one overflows `Instant` arithmetic in the timers.
    pub fn duration(&mut self, v: &Spanned<String>, ctx: &str, what: &str) -> Option<Duration> {
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() && d <= MAX_DURATION => Some(d),
            Ok(d) if d.is_zero() => {
                self.err(v.span(), ctx, format!("{what} must be more than 0"));
                None
            }
            Ok(_) => {
                self.err(
                    v.span(),
                    ctx,
                    format!("{what} {:?} is longer than 30 days", v.get_ref()),
                );
                None
            }
            Err(e) => {
                self.err(
                    v.span(),
                    ctx,
                    format!(
                        "{what} {:?} is not a duration like \"2s\": {e}",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    pub fn int(
        &mut self,
        v: &Spanned<i64>,
        lo: i64,
        hi: i64,
        ctx: &str,
        what: &str,
    ) -> Option<u32> {
        let n = *v.get_ref();
        if (lo..=hi).contains(&n) {
            u32::try_from(n).ok()
        } else {
            self.err(v.span(), ctx, format!("{what} {n} out of range {lo}-{hi}"));
            None
        }
    }

    pub fn addr(&mut self, v: &Spanned<String>, ctx: &str, what: &str) -> Option<IpAddr> {
        match v.get_ref().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    v.span(),
                    ctx,
                    format!("{what} {:?} is not an IPv4 or IPv6 address", v.get_ref()),
                );
                None
            }
        }
    }

    pub fn choice<T: Copy>(
        &mut self,
        v: &Spanned<String>,
        options: &[(&str, T)],
        ctx: &str,
        what: &str,
    ) -> Option<T> {
        if let Some((_, t)) = options.iter().find(|(n, _)| n == v.get_ref()) {
            return Some(*t);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.err(
            v.span(),
            ctx,
            format!(
                "unknown {what} {:?} (expected {})",
                v.get_ref(),
                names.join(", ")
            ),
        );
        None
    }
}
