//! `lvsdr-director import FORMAT FILE`: another tool's config as lvsdr's on stdout, the
//! report on stderr; exit 0 when all was translated, 2 when a person must look.

use std::process::ExitCode;

/// `import`: see [`super::Command::Import`].
pub fn run(format: lvsdr_import::Format, file: &std::path::Path) -> ExitCode {
    let draft = match lvsdr_import::import(format, file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("lvsdr-director import: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = lvsdr_import::emit::toml(&draft);
    print!("{text}");
    for line in draft.report() {
        eprintln!("{line}");
    }
    // What was written must be a config lvsdr accepts; if not, a person must look.
    let valid = match lvsdr::config::parse(&text, "<imported>") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("the imported config does not validate:\n{e}");
            false
        }
    };
    let review = draft
        .notes
        .iter()
        .filter(|n| n.level == lvsdr_import::Level::Review)
        .count();
    eprintln!(
        "{}: {}",
        file.display(),
        import_summary(draft.services.len(), review, draft.notes.len() - review)
    );
    if review > 0 || !valid {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// The import's last report line: "3 services imported; 1 note needs review, 2 ignored".
fn import_summary(services: usize, review: usize, ignored: usize) -> String {
    let n = |k: usize, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
    format!(
        "{} imported; {} review, {} ignored",
        n(services, "service", "services"),
        n(review, "note needs", "notes need"),
        ignored
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_import_summary_counts_in_words() {
        assert_eq!(
            import_summary(1, 1, 0),
            "1 service imported; 1 note needs review, 0 ignored"
        );
        assert_eq!(
            import_summary(3, 0, 2),
            "3 services imported; 0 notes need review, 2 ignored"
        );
    }
}
