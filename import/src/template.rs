//! An unrendered template given in place of a config (Jinja2 from Ansible or Salt,
//! ERB from Puppet or Chef): it is named as such, once, with what to do, instead of a
//! page of "unknown statement" and "block is not closed".

use super::draft::{At, Draft, Level};

/// The first line that holds a template tag (its opening and closing on the line).
pub fn marker(text: &str, file: &str) -> Option<At> {
    const TAGS: &[(&str, &str)] = &[("{{", "}}"), ("{%", "%}"), ("<%", "%>")];
    let tagged = |l: &str| {
        TAGS.iter()
            .any(|(open, close)| l.find(open).is_some_and(|i| l[i + 2..].contains(close)))
    };
    text.lines().position(tagged).map(|n| At {
        file: file.to_string(),
        line: n + 1,
    })
}

/// The one report line for a template found at `at`.
pub fn report(d: &mut Draft, at: &At) {
    d.note(
        at,
        Level::Review,
        "this is an unrendered template ({{ }}, {% %} or <% %>), not a config: render it \
         first (e.g. with the Ansible, Salt or Puppet run that writes it) and import the \
         result; nothing of this file was imported",
    );
}

/// Reports a template and says so, for the importers that stop there.
pub fn refuse(d: &mut Draft, text: &str, file: &str) -> bool {
    match marker(text, file) {
        Some(at) => {
            report(d, &at);
            true
        }
        None => false,
    }
}
