//! The bound on source changes per hour. Engaging is never held back (it
//! is the safety action); a release is only allowed while the budget still
//! has room for the engage that may have to follow it, so with the engine
//! alone the bound is never exceeded. Operator overrides are recorded too
//! (they churn chrony just the same) but always obeyed.

use std::{collections::VecDeque, time::Duration};

use crate::time::MonoTime;

const WINDOW: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangeBudget {
    max_per_hour: u32,
    changes: VecDeque<MonoTime>,
}

impl ChangeBudget {
    pub(crate) fn new(max_per_hour: u32) -> Self {
        Self {
            max_per_hour,
            changes: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: MonoTime) {
        while let Some(first) = self.changes.front() {
            if now.since(*first) >= WINDOW {
                self.changes.pop_front();
            } else {
                break;
            }
        }
    }

    pub(crate) fn used(&mut self, now: MonoTime) -> u32 {
        self.expire(now);
        u32::try_from(self.changes.len()).unwrap_or(u32::MAX)
    }

    /// A release needs room for itself and for a later engage.
    pub(crate) fn may_release(&mut self, now: MonoTime) -> bool {
        self.used(now).saturating_add(2) <= self.max_per_hour
    }

    pub(crate) fn record(&mut self, now: MonoTime) {
        self.changes.push_back(now);
    }

    /// When the oldest change leaves the window (room is made).
    pub(crate) fn next_expiry(&self) -> Option<MonoTime> {
        self.changes.front().map(|t| t.plus(WINDOW))
    }

    pub(crate) fn set_max(&mut self, max_per_hour: u32) {
        self.max_per_hour = max_per_hour;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> MonoTime {
        MonoTime::from_duration(Duration::from_secs(s))
    }

    #[test]
    fn release_leaves_room_for_engage() {
        let mut b = ChangeBudget::new(4);
        b.record(t(0)); // engage
        assert!(b.may_release(t(1)));
        b.record(t(1));
        b.record(t(2)); // engage
        assert!(!b.may_release(t(3)), "3 used + release + engage > 4");
        assert!(b.may_release(t(3600)), "the first change has expired");
        assert_eq!(b.next_expiry(), Some(t(3601)));
    }
}
