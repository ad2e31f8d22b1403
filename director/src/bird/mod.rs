//! BIRD's control-socket protocol (what `birdc` speaks), read for `/status` with
//! `[announce] bird_socket`: the BGP sessions and their state, and which of them export
//! each VIP. Pure: the director's announcer sends the commands and hands the text here.
//!
//! A reply is lines `CODE-text` (more follows), ` text` (continues the last code) and
//! ends with a line `CODE text` (a space after the code: `0000` for success, 8xxx/9xxx
//! for errors).

pub mod client;

use serde::{Deserialize, Serialize};

/// One reply: its lines with their codes, and the final code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// (code, text) per line, continuation lines carrying the code before them.
    pub lines: Vec<(u16, String)>,
    /// The code of the last line (0 for success).
    pub end: u16,
}

/// Parses one reply from the start of `text`; `None` while it is incomplete (no final
/// line yet). Returns the reply and how many bytes it took.
pub fn parse_reply(text: &str) -> Option<(Reply, usize)> {
    let mut lines = Vec::new();
    let mut code = 0u16;
    let mut used = 0;
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            return None;
        }
        used += line.len();
        let l = line.trim_end_matches('\n');
        if let Some(rest) = l.strip_prefix(' ') {
            lines.push((code, rest.to_string()));
            continue;
        }
        let (c, sep, rest) = match (l.get(..4), l.get(4..5), l.get(5..)) {
            (Some(c), Some(s), rest) => (c, s, rest.unwrap_or("")),
            _ => return Some((Reply { lines, end: 9999 }, used)),
        };
        let Ok(c) = c.parse::<u16>() else {
            return Some((Reply { lines, end: 9999 }, used));
        };
        code = c;
        match sep {
            "-" => lines.push((c, rest.to_string())),
            _ => {
                if c != 0 {
                    lines.push((c, rest.to_string()));
                }
                return Some((Reply { lines, end: c }, used));
            }
        }
    }
    None
}

/// A BGP session as `show protocols` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The protocol's name in bird.conf.
    pub name: String,
    /// up, down, start…
    pub state: String,
    /// BGP's own state, e.g. "Established", or an error.
    pub info: String,
}

/// The BGP sessions of a `show protocols` reply (code 1002 lines).
pub fn sessions(r: &Reply) -> Vec<Session> {
    r.lines
        .iter()
        .filter(|(c, _)| *c == 1002)
        .filter_map(|(_, t)| {
            let w: Vec<&str> = t.split_whitespace().collect();
            // Name Proto Table State Since(1 or 2 words) Info…
            if w.len() < 5 || w[1] != "BGP" {
                return None;
            }
            // "00:04:59.498", or a date and a time ("2026-11-29 00:05:01").
            let time = |x: &&str| x.contains(':') && x.starts_with(|c: char| c.is_ascii_digit());
            let since_words = if w.get(5).is_some_and(time) { 2 } else { 1 };
            Some(Session {
                name: w[0].to_string(),
                state: w[3].to_string(),
                info: w
                    .get(4 + since_words..)
                    .map(|i| i.join(" "))
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Whether a `show route PREFIX export PROTOCOL` reply lists the route (code 1007).
pub fn exported(r: &Reply, prefix: &str) -> bool {
    r.end == 0
        && r.lines
            .iter()
            .any(|(c, t)| *c == 1007 && t.split_whitespace().next() == Some(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As BIRD 2.0.12 (Debian) answered, captured on the project's machine.
    const PROTOCOLS: &str = "2002-Name       Proto      Table      State  Since         Info\n\
1002-device1    Device     ---        up     00:04:59.498  \n \
direct1    Direct     ---        up     00:04:59.498  \n \
up         BGP        ---        down   00:04:59.507  Error: Invalid next hop\n\
0000 \n";

    #[test]
    fn show_protocols_gives_the_bgp_sessions() {
        let (r, used) = parse_reply(PROTOCOLS).expect("complete");
        assert_eq!(used, PROTOCOLS.len());
        assert_eq!(r.end, 0);
        assert_eq!(
            sessions(&r),
            [Session {
                name: "up".into(),
                state: "down".into(),
                info: "Error: Invalid next hop".into()
            }]
        );
        let established = "1002-up         BGP        ---        up     2026-11-29 00:05:01  Established   \n0000 \n";
        let (r, _) = parse_reply(established).expect("complete");
        assert_eq!(sessions(&r)[0].info, "Established");
    }

    #[test]
    fn replies_are_complete_only_with_their_last_line_and_errors_end_them() {
        assert!(parse_reply("1002-device1 Device\n").is_none());
        let (r, _) = parse_reply("9001 No valid tables\n").expect("complete");
        assert_eq!(r.end, 9001);
        assert!(!exported(&r, "10.91.0.100/32"));
        let route = "1007-10.91.0.100/32        unicast [direct1 00:05:01.000] * (240)\n \
dev lvsdr0\n0000 \n";
        let (r, _) = parse_reply(route).expect("complete");
        assert!(exported(&r, "10.91.0.100/32"));
        assert!(!exported(&r, "10.91.0.101/32"));
    }

    #[test]
    fn arbitrary_text_never_panics() {
        for t in [
            "",
            "\n",
            "x\n",
            "00",
            "0000",
            "0000 \n",
            "12345\n",
            "é\u{301}-\n",
            " 
 \n",
        ] {
            let _ = parse_reply(t);
        }
    }
}
