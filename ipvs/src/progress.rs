//! A count of the kernel's answers, shared by every socket a director opens: what a
//! caller watches to tell a long request that moves from one that hangs.
//!
//! A pass that programs 10,000 services under emulation takes minutes, yet the kernel
//! answers every few milliseconds all along; a lost reply answers nothing at all. A
//! deadline on the whole pass cannot tell the two apart; a deadline on this count
//! standing still can.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Answers received so far (acks, errors, dump messages, proc reads). Cloning shares
/// the count.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Counts `n` more answers.
    pub fn tick(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Answers so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_count() {
        let p = Progress::default();
        let q = p.clone();
        q.tick(3);
        p.tick(1);
        assert_eq!(p.get(), 4);
        assert_eq!(q.get(), 4);
    }
}
