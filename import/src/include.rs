//! keepalived's `include FILE|GLOB`: the files it names are read and their statements
//! spliced in where the `include` stands. A config may come from anyone, so reading is
//! bounded: each file once (a loop or a diamond is read once), regular files only (not
//! `/dev/zero`, not a FIFO, nothing under /proc, /sys or /dev), nesting, count and
//! bytes capped. What an included file
//! holds is reported by its place, never echoed (it may be any file on the host).

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::draft::{Draft, Level};
use super::words::{parse, Node};
use super::Source;

/// Includes nested deeper than this are refused.
pub const MAX_DEPTH: usize = 8;
/// At most this many files in all, the main one included.
pub const MAX_FILES: usize = 256;
/// At most this many bytes in all.
pub const MAX_BYTES: u64 = 16 << 20;

/// Reads a config and what it includes, within the bounds above.
pub struct Loader {
    /// Files read so far, by canonical path.
    seen: HashSet<PathBuf>,
    /// Bytes read so far.
    bytes: u64,
    /// The main file's name: statements from any other file are an include's.
    pub main: String,
}

impl Loader {
    /// Reads `src` (already read) and everything it includes.
    pub fn load(src: &Source, d: &mut Draft) -> (Vec<Node>, Loader) {
        let mut l = Loader {
            seen: HashSet::new(),
            bytes: src.text.len() as u64,
            main: src.name.clone(),
        };
        if let Ok(p) = src.path.canonicalize() {
            l.seen.insert(p);
        }
        let nodes = l.file(src, d, 0);
        (nodes, l)
    }

    fn file(&mut self, src: &Source, d: &mut Draft, depth: usize) -> Vec<Node> {
        if let Some(at) = super::template::marker(&src.text, &src.name) {
            super::template::report(d, &at);
            return Vec::new();
        }
        let (nodes, problems) = parse(&src.text, &src.name);
        for (at, p) in problems {
            d.note(&at, Level::Review, p);
        }
        self.expand(nodes, src, d, depth)
    }

    fn expand(&mut self, nodes: Vec<Node>, src: &Source, d: &mut Draft, depth: usize) -> Vec<Node> {
        let mut out = Vec::new();
        for mut n in nodes {
            if n.head() == "include" {
                out.extend(self.include(&n, src, d, depth));
                continue;
            }
            if let Some(c) = n.children.take() {
                n.children = Some(self.expand(c, src, d, depth));
            }
            out.push(n);
        }
        out
    }

    /// The statements of the files an `include` names.
    fn include(&mut self, n: &Node, src: &Source, d: &mut Draft, depth: usize) -> Vec<Node> {
        let pattern = n.arg().unwrap_or_default().to_string();
        if depth >= MAX_DEPTH {
            let m = format!("include {pattern:?}: includes nested deeper than {MAX_DEPTH}");
            d.note(&n.at, Level::Review, m);
            return Vec::new();
        }
        let base = src.path.parent().unwrap_or(Path::new("."));
        let files = glob(base, &pattern);
        if files.is_empty() {
            let m = format!("include {pattern:?} names no regular file");
            d.note(&n.at, Level::Review, m);
        }
        let mut out = Vec::new();
        for f in files {
            let Some(inc) = self.read(&f, n, d) else {
                continue;
            };
            out.extend(self.file(&inc, d, depth + 1));
        }
        out
    }

    /// Reads `f` unless it was read before, a bound is reached, or it cannot be read
    /// as text (then a note, and the import goes on without it).
    fn read(&mut self, f: &Path, n: &Node, d: &mut Draft) -> Option<Source> {
        let name = f.display().to_string();
        let skip = |d: &mut Draft, why: String| {
            d.note(&n.at, Level::Review, format!("include {name:?}: {why}"));
            None
        };
        // Between the glob and here the file may have gone.
        let canonical = match f.canonicalize() {
            Ok(c) => c,
            Err(e) => return skip(d, format!("cannot be read ({e}); left out")),
        };
        // Kernel files look regular but may block for ever (/proc/kmsg) or never end.
        if ["/proc", "/sys", "/dev"]
            .iter()
            .any(|k| canonical.starts_with(k))
        {
            return skip(d, "a kernel file, not a config; not read".into());
        }
        if self.seen.contains(&canonical) {
            return skip(
                d,
                "read already (a loop, or included twice); read once".into(),
            );
        }
        if self.seen.len() >= MAX_FILES {
            return skip(d, format!("more than {MAX_FILES} files in all; not read"));
        }
        let left = MAX_BYTES.saturating_sub(self.bytes);
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&canonical)
            .and_then(|file| file.take(left + 1).read_to_end(&mut bytes));
        if let Err(e) = read {
            return skip(d, format!("cannot be read ({e}); left out"));
        }
        if bytes.len() as u64 > left {
            let mib = MAX_BYTES >> 20;
            return skip(d, format!("more than {mib} MiB in all; not read"));
        }
        self.seen.insert(canonical);
        self.bytes += bytes.len() as u64;
        let Ok(text) = String::from_utf8(bytes) else {
            return skip(d, "not UTF-8 text (a binary file?); left out".into());
        };
        Some(Source {
            name,
            path: f.to_path_buf(),
            text,
        })
    }
}

/// The regular files `pattern` names (`*` and `?` in the last part), relative to
/// `base`, sorted.
fn glob(base: &Path, pattern: &str) -> Vec<PathBuf> {
    let p = base.join(pattern);
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return if p.is_file() { vec![p] } else { Vec::new() };
    }
    let dir = p.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| {
                    f.is_file()
                        && f.file_name()
                            .is_some_and(|n| wildcard(&name, &n.to_string_lossy()))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Whether `name` matches `pattern` (`*`, `?`): the classic greedy match with one
/// backtrack point, linear-ish whatever the pattern (a pattern of many `*` must not
/// take exponential time).
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        match p.get(i) {
            Some('*') => {
                star = Some((i, j));
                i += 1;
            }
            Some(c) if *c == '?' || *c == n[j] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    star = Some((si, sj + 1));
                    i = si + 1;
                    j = sj + 1;
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn wildcards_match_as_the_shell_does_and_fast() {
        assert!(wildcard("*.conf", "a.conf"));
        assert!(wildcard("a?c*", "abcdef"));
        assert!(!wildcard("*.conf", "a.cf"));
        assert!(!wildcard("*.conf", "a.confx"));
        assert!(wildcard("vs-?.conf", "vs-1.conf"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("?", ""));
        assert!(wildcard("a*b*c", "aXbYc"));
        assert!(!wildcard("a*b*c", "aXbY"));
        // Exponential for a naive backtracker.
        let hostile = format!("{}b", "a*".repeat(30));
        assert!(!wildcard(&hostile, &"a".repeat(60)));
    }
}
