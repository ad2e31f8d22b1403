//! Cuts a config file into its `[[service]]` blocks and the rest (the global
//! sections), so that each block can be parsed and validated alone and a reload reads
//! again only the blocks whose text changed (see [`super::loader`]).
//!
//! The cut is made on lines only, so it declines (`None`, and the whole file is parsed
//! as one) wherever a line could be misread: a multi-line string, or a line starting
//! with `[` that is not a plain table header (an array value, a quoted key).

use std::ops::Range;

/// A file cut into its service blocks and the rest.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split<'a> {
    /// Every line outside the service blocks, in order: `[director]`, `[agents]`, …
    pub rest: String,
    /// Each `[[service]]` with its sub-tables (`[service.check]`,
    /// `[[service.real_server]]`, …), up to the next header of another section: where
    /// it is in the text, and the text.
    pub blocks: Vec<(Range<usize>, &'a str)>,
}

/// What a header line names.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    /// Not a header: a key, a value's continuation, a comment or a blank.
    Other,
    /// `[name]`, or `[[name]]` (`array`).
    Header { name: &'a str, array: bool },
}

/// The file's service blocks and the rest, or `None` where a cut on lines could
/// misread the file.
pub(crate) fn split(text: &str) -> Option<Split<'_>> {
    let bytes = text.as_bytes();
    if memchr::memmem::find(bytes, b"\"\"\"").is_some()
        || memchr::memmem::find(bytes, b"'''").is_some()
    {
        return None;
    }
    let mut rest = String::new();
    let mut blocks = Vec::new();
    // The block being read: its start, while its sub-tables follow.
    let mut open: Option<usize> = None;
    let mut start = 0;
    while start < text.len() {
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(text.len(), |i| start + i + 1);
        let span = start..end;
        start = end;
        match header(&text[span.clone()])? {
            Line::Header { name, array } if name == "service" && array => {
                close(text, &mut open, span.start, &mut blocks);
                open = Some(span.start);
            }
            Line::Header { name, .. } if name.starts_with("service.") && open.is_some() => {}
            Line::Header { .. } => {
                close(text, &mut open, span.start, &mut blocks);
                rest.push_str(&text[span]);
            }
            Line::Other if open.is_none() => rest.push_str(&text[span]),
            Line::Other => {}
        }
    }
    close(text, &mut open, text.len(), &mut blocks);
    Some(Split { rest, blocks })
}

/// Ends the open block (if any) at `end`.
fn close<'a>(
    text: &'a str,
    open: &mut Option<usize>,
    end: usize,
    blocks: &mut Vec<(Range<usize>, &'a str)>,
) {
    if let Some(start) = open.take() {
        blocks.push((start..end, &text[start..end]));
    }
}

/// Reads one line: a table header, something else, or `None` for a line that starts
/// with `[` but is not a header this cut can trust.
fn header(line: &str) -> Option<Line<'_>> {
    let t = line.trim_start();
    let Some(inner) = t.strip_prefix('[') else {
        return Some(Line::Other);
    };
    let (array, inner) = match inner.strip_prefix('[') {
        Some(i) => (true, i),
        None => (false, inner),
    };
    let close = if array { "]]" } else { "]" };
    let end = inner.find(close)?;
    let name = inner[..end].trim();
    let after = inner[end + close.len()..].trim();
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || !name.chars().all(plain) || !(after.is_empty() || after.starts_with('#'))
    {
        return None;
    }
    Some(Line::Header { name, array })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_cut_at_each_service_and_at_the_next_other_section() {
        let text = "[director]\nstatus_listen = \"127.0.0.1:9180\"\n\
                    [[service]] # web\nname = \"a\"\n[service.check]\ntype = \"tcp\"\n\
                    [[service.real_server]]\naddress = \"10.0.0.1\"\n\
                    [[ service ]]\nname = \"b\"\n\
                    [agents]\nca = \"ca.pem\"\n\
                    [[service]]\r\nname = \"c\"\r\n";
        let s = split(text).expect("cut");
        assert!(s.blocks.iter().all(|(r, b)| &text[r.clone()] == *b));
        assert_eq!(
            s.blocks.iter().map(|(_, b)| *b).collect::<Vec<_>>(),
            vec![
                "[[service]] # web\nname = \"a\"\n[service.check]\ntype = \"tcp\"\n\
                 [[service.real_server]]\naddress = \"10.0.0.1\"\n",
                "[[ service ]]\nname = \"b\"\n",
                "[[service]]\r\nname = \"c\"\r\n",
            ]
        );
        assert_eq!(
            s.rest,
            "[director]\nstatus_listen = \"127.0.0.1:9180\"\n[agents]\nca = \"ca.pem\"\n"
        );
    }

    #[test]
    fn a_sub_table_outside_a_service_block_stays_in_the_rest() {
        // TOML would attach it to the last service; left in the rest, the rest does not
        // parse as a config, and the whole file is read as one.
        let s = split("[service.check]\ntype = \"tcp\"\n").expect("cut");
        assert!(s.blocks.is_empty());
        assert_eq!(s.rest, "[service.check]\ntype = \"tcp\"\n");
    }

    #[test]
    fn lines_a_cut_could_misread_decline_it() {
        for text in [
            "[[service]]\nname = \"\"\"\n[[service]]\n\"\"\"\n",
            "[[service]]\nname = '''x'''\n",
            "[[service]]\nvips = [\n[\"a\"],\n]\n",
            "[[service]]\nx = [\n[1, 2],\n]\n",
            "[\"quoted\"]\n",
            "[[service]] x = 1\n",
            "[unclosed\n",
        ] {
            assert_eq!(split(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_file_without_services_is_all_rest() {
        let s = split("# nothing\n[director]\n").expect("cut");
        assert!(s.blocks.is_empty());
        assert_eq!(s.rest, "# nothing\n[director]\n");
    }
}
