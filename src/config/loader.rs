//! Reading a config the fast way, and again after a change: each `[[service]]` block
//! is parsed and validated alone ([`super::blocks`]), and a [`Loader`] keeps the
//! valid blocks of the last config it accepted, keyed by their text, so that a reload
//! parses only the blocks that changed (a weight changed in a 10,000-service file:
//! one block, not ten megabytes of TOML).
//!
//! Any error, or a file the cut declines, and the whole file is parsed and validated
//! as one ([`super::parse_whole`]): that path names every error with its place, so the
//! fast one only needs to tell valid from not.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use super::validate::{self, Unit};
use super::{blocks, parse_whole, read, ConfigErrors, Host};
use crate::model::Desired;

/// Service blocks are parsed on this many threads when a load has at least
/// [`PARALLEL_FROM`] new ones (a start, a reload of a new file).
const THREADS: usize = 2;
const PARALLEL_FROM: usize = 256;

/// Loads configs, keeping what a reload of the same file can reuse.
#[derive(Default)]
pub struct Loader {
    /// What the kept blocks were validated against: the host's facts, and whether
    /// the config had `[agents]`.
    against: Option<(Host, bool)>,
    /// The valid `[[service]]` blocks of the last config accepted.
    units: Kept,
    last: LoadStats,
}

/// How the last load went, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// `[[service]]` blocks in the file (0 when read as one document).
    pub blocks: usize,
    /// Of which parsed and validated anew (the others were kept from before).
    pub read: usize,
    /// Read as one document: the cut declined the file, or something in it is wrong.
    pub whole: bool,
}

impl Loader {
    /// Reads and validates a config file against this host's facts.
    pub fn load(&mut self, path: &Path) -> Result<Desired, ConfigErrors> {
        let (text, name, host) = read(path)?;
        self.parse_owned(text, &name, &host)
    }

    /// Parses and validates config text against `host`'s facts; `file` names it in
    /// errors. The blocks kept stay as they were when the text is refused.
    pub fn parse_on(
        &mut self,
        text: &str,
        file: &str,
        host: &Host,
    ) -> Result<Desired, ConfigErrors> {
        self.parse_owned(text.to_owned(), file, host)
    }

    /// [`Loader::parse_on`], keeping the text itself when it is accepted (a copy of
    /// a 7 MB file was a tenth of a reload under emulation: page faults).
    fn parse_owned(
        &mut self,
        text: String,
        file: &str,
        host: &Host,
    ) -> Result<Desired, ConfigErrors> {
        if let Some(a) = self.fast(&text, host) {
            self.units = Kept {
                text,
                rest: a.rest,
                blocks: a.blocks,
            };
            self.against = Some((host.clone(), a.agents));
            self.last = a.stats;
            return Ok(a.desired);
        }
        self.last = LoadStats {
            whole: true,
            ..LoadStats::default()
        };
        let whole = parse_whole(&text, file, host);
        if whole.is_ok() {
            // A file the cut declines: nothing kept matches it.
            self.units.clear();
        }
        whole
    }

    /// How the last load went.
    pub fn last_read(&self) -> LoadStats {
        self.last
    }

    /// The config from its blocks (the kept ones reused), with the blocks to keep
    /// next; `None` if the cut declines the file or anything in it is wrong.
    fn fast(&self, text: &str, host: &Host) -> Option<Accepted> {
        let split = blocks::split(text)?;
        // The rest must leave `service` to the blocks (`service = []` before them is
        // a duplicate key in the whole file).
        let keys: toml::Table = toml::from_str(&split.rest).ok()?;
        if keys.contains_key("service") {
            return None;
        }
        let rest: super::schema::File = toml::from_str(&split.rest).ok()?;
        let agents = rest.agents.is_some();
        let same = self.against.as_ref() == Some(&(host.clone(), agents));
        let mut found = if same {
            self.units.find(&split.blocks)
        } else {
            vec![None; split.blocks.len()]
        };
        let new: Vec<&str> = split
            .blocks
            .iter()
            .zip(&found)
            .filter(|(_, u)| u.is_none())
            .map(|((_, b), _)| *b)
            .collect();
        let stats = LoadStats {
            blocks: split.blocks.len(),
            read: new.len(),
            whole: false,
        };
        let mut parsed = parse_units(&new, host, agents).into_iter();
        for slot in found.iter_mut().filter(|u| u.is_none()) {
            *slot = Some(parsed.next()??);
        }
        let units: Vec<Arc<Unit>> = found.into_iter().collect::<Option<_>>()?;
        let checked = same && self.units.checked(&split.rest, &units);
        let desired = validate::assemble(
            &rest,
            &split.rest,
            host,
            units.iter().map(|u| &**u),
            checked,
        )?;
        let keep = split
            .blocks
            .into_iter()
            .map(|(r, _)| r)
            .zip(units)
            .collect();
        Some(Accepted {
            desired,
            rest: split.rest,
            blocks: keep,
            stats,
            agents,
        })
    }
}

/// A config read block by block, with what to keep of it.
struct Accepted {
    desired: Desired,
    rest: String,
    blocks: KeptBlocks,
    stats: LoadStats,
    /// Whether it has `[agents]` (its blocks' real servers have agents).
    agents: bool,
}

/// The valid blocks of a config: its text, and where each block is in it.
#[derive(Default)]
struct Kept {
    text: String,
    /// The lines outside the blocks.
    rest: String,
    blocks: KeptBlocks,
}

/// Where each block is in the text, and what it says.
type KeptBlocks = Vec<(Range<usize>, Arc<Unit>)>;

impl Kept {
    fn clear(&mut self) {
        *self = Kept::default();
    }

    /// Whether `units` are the kept ones, block for block, except for changes the
    /// checks across services do not see, with the same rest: what those checks
    /// found of the kept config holds for them.
    fn checked(&self, rest: &str, units: &[Arc<Unit>]) -> bool {
        rest == self.rest
            && units.len() == self.blocks.len()
            && units
                .iter()
                .zip(&self.blocks)
                .all(|(u, (_, k))| Arc::ptr_eq(u, k) || u.same_across(k))
    }

    /// The kept unit of each block, where its text is one kept. Blocks are first
    /// matched in place from both ends (a reload mostly changes a few blocks, or
    /// adds or removes some: a memory compare, no hashing of megabytes); only the
    /// blocks between are looked up by text, among the kept ones between.
    fn find(&self, blocks: &[(Range<usize>, &str)]) -> Vec<Option<Arc<Unit>>> {
        let kept = |k: usize| (&self.text[self.blocks[k].0.clone()], &self.blocks[k].1);
        let same = |i: usize, k: usize| kept(k).0 == blocks[i].1;
        let (n, m) = (blocks.len(), self.blocks.len());
        let mut found = vec![None; n];
        let mut front = 0;
        while front < n.min(m) && same(front, front) {
            found[front] = Some(kept(front).1.clone());
            front += 1;
        }
        let mut back = 0;
        while front + back < n.min(m) && same(n - 1 - back, m - 1 - back) {
            found[n - 1 - back] = Some(kept(m - 1 - back).1.clone());
            back += 1;
        }
        if front + back == n {
            return found;
        }
        let by_text: HashMap<&str, &Arc<Unit>> = (front..m - back).map(kept).collect();
        for (i, slot) in found.iter_mut().enumerate().take(n - back).skip(front) {
            *slot = by_text.get(blocks[i].1).map(|u| (*u).clone());
        }
        found
    }
}

/// Each block parsed and validated alone (`None` where it is not valid), on
/// [`THREADS`] threads when there are many.
fn parse_units(blocks: &[&str], host: &Host, agents: bool) -> Vec<Option<Arc<Unit>>> {
    let one = |b: &&str| {
        let raw = toml::from_str(b).ok()?;
        validate::unit(&raw, b, host, agents).map(Arc::new)
    };
    if blocks.len() < PARALLEL_FROM {
        return blocks.iter().map(one).collect();
    }
    let chunk = blocks.len().div_ceil(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = blocks
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                // A thread that panicked: its blocks count as not valid, and the
                // whole file is read again on this thread.
                h.join().unwrap_or_default()
            })
            .collect()
    })
}
