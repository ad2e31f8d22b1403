//! A whole-table pass that reads the same listing as the last pass that found nothing
//! to do stops after the read: nothing it would parse, read again or plan can differ.
//!
//! The plan is a function of the config, the check results, the gate, the cached table
//! and the clock (drains and slow starts). A whole pass that planned nothing keeps its
//! listing here when the clock plays no part (no drain, no slow start, no failed or
//! held op, nothing dirty) and every block of that listing vouches for the cache (no
//! service it would read again). A later whole pass with the same inputs that reads the
//! very same listing, byte for byte (connection counts included), would parse the same
//! blocks, read no service again, keep the same cache and plan the same nothing. At
//! 10,000 services × 10 the parse, the stale check, the cache update and the plan were
//! half of a no-op resync (issue 22, item 8); now it is the read and one compare.
//!
//! The listing leaves some fields out (thresholds, tunnel settings, persistence
//! engines): the periodic full read (`full_resync_interval`) still reads everything,
//! as before.

/// The listing of the last whole pass that found nothing to do, while it may stand
/// for the next (forgotten by any pass that does not stop here).
#[derive(Debug, Default)]
pub struct Quiet {
    listing: Option<String>,
}

impl Quiet {
    /// Whether a listing is kept.
    pub fn armed(&self) -> bool {
        self.listing.is_some()
    }

    /// Whether `text` is the kept listing.
    pub fn same(&self, text: &str) -> bool {
        self.listing.as_deref() == Some(text)
    }

    /// Keeps the listing of a pass that found nothing to do.
    pub fn keep(&mut self, text: String) {
        self.listing = Some(text);
    }

    /// Forgets it: a pass that did not stop here may have changed anything.
    pub fn forget(&mut self) {
        self.listing = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_kept_listing_is_the_same() {
        let mut q = Quiet::default();
        assert!(!q.armed());
        assert!(!q.same(""), "nothing kept matches nothing");
        q.keep("TCP  C0000201:0050 wlc\n".into());
        assert!(q.armed());
        assert!(q.same("TCP  C0000201:0050 wlc\n"));
        assert!(!q.same("TCP  C0000201:0050 rr\n"));
        q.forget();
        assert!(!q.same("TCP  C0000201:0050 wlc\n"));
    }
}
