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
    // Where the lines not yet given to the rest or to a block start.
    let mut done = 0;
    for span in bracket_lines(text) {
        match header(&text[span.clone()])? {
            Line::Header { name, array } if name == "service" && array => {
                flush(text, open, done..span.start, &mut rest);
                close(text, &mut open, span.start, &mut blocks);
                open = Some(span.start);
            }
            Line::Header { name, .. } if name.starts_with("service.") && open.is_some() => {}
            Line::Header { .. } => {
                flush(text, open, done..span.start, &mut rest);
                close(text, &mut open, span.start, &mut blocks);
                rest.push_str(&text[span.clone()]);
            }
            Line::Other => continue,
        }
        done = span.end;
    }
    flush(text, open, done..text.len(), &mut rest);
    close(text, &mut open, text.len(), &mut blocks);
    Some(Split { rest, blocks })
}

/// The lines whose first character other than spaces and tabs is `[`: the only
/// lines that can be headers (the others belong to whatever section they are in).
/// Found from the `[`s, not line by line: a big file has ten times fewer of them.
fn bracket_lines(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let bytes = text.as_bytes();
    let mut next = 0;
    memchr::memchr_iter(b'[', bytes).filter_map(move |at| {
        if at < next {
            return None; // another `[` on a line already seen
        }
        let start = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |i| i + 1);
        let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |i| at + i + 1);
        next = end;
        bytes[start..at]
            .iter()
            .all(|b| matches!(b, b' ' | b'\t'))
            .then_some(start..end)
    })
}

/// Gives the lines in `span` to the rest, unless they belong to the open block.
fn flush(text: &str, open: Option<usize>, span: Range<usize>, rest: &mut String) {
    if open.is_none() {
        rest.push_str(&text[span]);
    }
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
    let t = line.trim_start_matches([' ', '\t']);
    let Some(inner) = t.strip_prefix('[') else {
        return Some(Line::Other);
    };
    let (array, inner) = match inner.strip_prefix('[') {
        Some(i) => (true, i),
        None => (false, inner),
    };
    // The first `]` ends the name: one inside it would not be a plain name.
    let end = memchr::memchr(b']', inner.as_bytes())?;
    let after = &inner[end + 1..];
    let after = if array {
        after.strip_prefix(']')?
    } else {
        after
    };
    let name = inner[..end].trim();
    let after = after.trim();
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
