//! The block syntax keepalived and Piranha share: statements of words, one per line,
//! `{ … }` blocks, `#` and `!` comments, double quotes around words with spaces.

use super::draft::At;

/// One statement, with its block if it opens one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its words (quotes removed; what was inside kept as written).
    pub words: Vec<String>,
    /// Where it starts.
    pub at: At,
    /// Its block.
    pub children: Option<Vec<Node>>,
}

impl Node {
    /// The first word.
    pub fn head(&self) -> &str {
        self.words.first().map(String::as_str).unwrap_or("")
    }

    /// The words after the first, with a Piranha-style `=` left out.
    pub fn args(&self) -> Vec<&str> {
        let mut a: Vec<&str> = self.words.iter().skip(1).map(String::as_str).collect();
        if a.first() == Some(&"=") {
            a.remove(0);
        }
        a
    }

    /// The first argument.
    pub fn arg(&self) -> Option<&str> {
        self.args().first().copied()
    }
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
    End,
}

fn tokens(text: &str, file: &str) -> Vec<(Tok, At)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = At {
            file: file.to_string(),
            line: n + 1,
        };
        let mut chars = line.chars().peekable();
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut Vec<(Tok, At)>| {
            if !word.is_empty() {
                out.push((Tok::Word(std::mem::take(word)), at.clone()));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '"' if word.is_empty() => {
                    let mut q = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => break,
                            '\\' => {
                                q.push('\\');
                                if let Some(n) = chars.next() {
                                    q.push(n);
                                }
                            }
                            c => q.push(c),
                        }
                    }
                    out.push((Tok::Word(q), at.clone()));
                }
                '#' | '!' if word.is_empty() => break,
                '{' => {
                    flush(&mut word, &mut out);
                    out.push((Tok::Open, at.clone()));
                }
                '}' => {
                    flush(&mut word, &mut out);
                    out.push((Tok::Close, at.clone()));
                }
                c if c.is_whitespace() => flush(&mut word, &mut out),
                c => word.push(c),
            }
        }
        flush(&mut word, &mut out);
        out.push((Tok::End, at));
    }
    out
}

/// Parses `text`. An unbalanced `}` or a block left open is reported in the returned
/// problems, with its place; what could be read is still returned.
pub fn parse(text: &str, file: &str) -> (Vec<Node>, Vec<(At, String)>) {
    let toks = tokens(text, file);
    let mut problems = Vec::new();
    let mut i = 0;
    let nodes = block(&toks, &mut i, 0, &mut problems);
    (nodes, problems)
}

/// Blocks nested deeper than this are skipped: no config nests more than four or five,
/// and a file of `{` alone must not take the stack.
pub const MAX_DEPTH: usize = 32;

/// Skips a block opened just before `*i` and whatever it holds, without recursion.
fn skip(toks: &[(Tok, At)], i: &mut usize) {
    let mut open = 1usize;
    while let Some((tok, _)) = toks.get(*i) {
        *i += 1;
        match tok {
            Tok::Open => open += 1,
            Tok::Close => {
                open -= 1;
                if open == 0 {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// Reads the block opened just before `*i` (at `depth`), or skips it with a problem
/// when it is nested too deep.
fn inner(
    toks: &[(Tok, At)],
    i: &mut usize,
    depth: usize,
    at: &At,
    problems: &mut Vec<(At, String)>,
) -> Vec<Node> {
    if depth > MAX_DEPTH {
        problems.push((
            at.clone(),
            format!("blocks nested deeper than {MAX_DEPTH}: this block is skipped"),
        ));
        skip(toks, i);
        return Vec::new();
    }
    block(toks, i, depth, problems)
}

fn block(
    toks: &[(Tok, At)],
    i: &mut usize,
    depth: usize,
    problems: &mut Vec<(At, String)>,
) -> Vec<Node> {
    let nested = depth > 0;
    let mut nodes = Vec::new();
    loop {
        while matches!(toks.get(*i), Some((Tok::End, _))) {
            *i += 1;
        }
        let Some((tok, at)) = toks.get(*i) else {
            if nested {
                let at = toks.last().map(|t| t.1.clone()).unwrap_or(At {
                    file: String::new(),
                    line: 0,
                });
                // Once, for the innermost: the blocks around it end at the same place.
                let m = "a block is not closed (missing `}`)";
                if !problems.iter().any(|(_, p)| p == m) {
                    problems.push((at, m.into()));
                }
            }
            return nodes;
        };
        match tok {
            Tok::Close => {
                *i += 1;
                if nested {
                    return nodes;
                }
                problems.push((at.clone(), "a `}` with no block to close".into()));
                continue;
            }
            Tok::Open => {
                // A block with no statement before it: read and keep its place.
                *i += 1;
                let children = inner(toks, i, depth + 1, at, problems);
                nodes.push(Node {
                    words: Vec::new(),
                    at: at.clone(),
                    children: Some(children),
                });
                continue;
            }
            _ => {}
        }
        let at = at.clone();
        let mut words = Vec::new();
        while let Some((Tok::Word(w), _)) = toks.get(*i) {
            words.push(w.clone());
            *i += 1;
        }
        // A block may open on the statement's line or on the next one.
        let mut j = *i;
        while matches!(toks.get(j), Some((Tok::End, _))) {
            j += 1;
        }
        let children = if matches!(toks.get(j), Some((Tok::Open, _))) {
            *i = j + 1;
            Some(inner(toks, i, depth + 1, &at, problems))
        } else {
            None
        };
        nodes.push(Node {
            words,
            at,
            children,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_comments_quotes_and_braces_anywhere() {
        let text = "a 1 2 {\n  b \"x y\" # c\n  ! d\n  url { path / }\n}\ne\n{\nf\n}\n";
        let (n, p) = parse(text, "f");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].words, ["a", "1", "2"]);
        let c = n[0].children.as_ref().expect("block");
        assert_eq!(c[0].words, ["b", "x y"]);
        assert_eq!(c[1].words, ["url"]);
        assert_eq!(c[1].children.as_ref().expect("url")[0].words, ["path", "/"]);
        assert_eq!(n[1].words, ["e"]);
        assert_eq!(n[1].children.as_ref().expect("e")[0].words, ["f"]);
        assert_eq!(n[1].at.line, 6);
    }

    #[test]
    fn deep_nesting_is_skipped_with_a_problem_not_a_stack_overflow() {
        let text = format!("a {}\nb\n", "{".repeat(100_000));
        let (n, p) = parse(&text, "f");
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(p[0].1.contains("nested deeper than 32"), "{p:?}");
        // And once that blocks are left open.
        assert_eq!(p.len(), 2, "{p:?}");
        let (n, p) = parse("a { b { c { d } } }\ne\n", "f");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(n.len(), 2);
    }

    #[test]
    fn unbalanced_braces_are_reported_with_their_line() {
        let (_, p) = parse("a {\n b\n", "f");
        assert_eq!(p.len(), 1);
        let (_, p) = parse("}\n", "f");
        assert_eq!(p[0].0.line, 1);
    }
}
