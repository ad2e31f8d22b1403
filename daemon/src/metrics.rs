//! What both daemons' Prometheus text needs beyond `prometheus-client`: label values
//! escaped as the text format wants (the library writes them as given, so a `"` or `\`
//! in a service name broke the whole scrape), and the text format beside OpenMetrics.

/// The families the agent's `/metrics` serves, by full name (counters with the
/// `_total` their samples carry): the agent's tests hold its output to it, the
/// director's hold the README to it and to the director's own list.
pub const AGENT_FAMILIES: &[&str] = &[
    "lvsdr_agent_apply_error",
    "lvsdr_agent_drained",
    "lvsdr_agent_last_push_age_seconds",
    "lvsdr_agent_vip_arp_suppressed",
    "lvsdr_agent_vip_in_place",
    "lvsdr_agent_vip_on_device",
    "lvsdr_agent_vip_refused",
    "lvsdr_agent_vip_repairs_total",
    "lvsdr_agent_vips",
];

/// A label value as the text format wants it: `\`, `"` and a line feed escaped.
pub fn label_value(v: impl ToString) -> String {
    let v = v.to_string();
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The same samples in Prometheus's text format (0.0.4), for a scraper that does not
/// ask for OpenMetrics (`promtool check metrics`, curl, older Prometheus): a counter's
/// family is named with its `_total`, and there is no `# EOF` or `# UNIT`.
pub fn text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let comment = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match comment {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}\n"));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The body and content type for a scraper: OpenMetrics when it asked for it
/// (Prometheus does), Prometheus's text format otherwise.
pub fn negotiated(openmetrics: bool, text: String) -> (&'static str, String) {
    if openmetrics {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        )
    } else {
        (
            "text/plain; version=0.0.4; charset=utf-8",
            text_format(&text),
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_backslashes_and_line_feeds_are_escaped() {
        assert_eq!(super::label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(super::label_value("web"), "web");
    }
}
