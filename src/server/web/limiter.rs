//! Sign-in throttling: failed attempts are counted per user name and per
//! client address over a sliding window, so that neither guessing one
//! user's password nor spraying many users from one address goes fast.
//!
//! Kept in memory (a restart forgets it, like the sessions), evaluated on
//! the server's clock so that `--as-of` moves it as it moves every rule.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::time::Timestamp;

/// How many failures a key may have in the window, and the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_user: usize,
    pub per_address: usize,
    pub window_secs: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_user: 5,
            per_address: 20,
            window_secs: 15 * 60,
        }
    }
}

/// Past this many tracked keys, stale ones are dropped at once (an
/// attacker cycling through names must not grow the map without bound).
const PRUNE_ABOVE: usize = 10_000;
/// Hard cap on tracked keys: beyond it the oldest-failing keys go first.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(String),
}

/// The failures of the last window, per key.
#[derive(Debug, Default)]
pub struct Limiter {
    limits: Limits,
    failures: Mutex<HashMap<Key, VecDeque<Timestamp>>>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Limiter {
            limits,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<Key, VecDeque<Timestamp>>> {
        // A poisoned map only means a panic elsewhere mid-update: the
        // counts are still counts.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn window_start(&self, now: Timestamp) -> Timestamp {
        Timestamp::from_nanos(
            now.as_nanos()
                .saturating_sub(self.limits.window_secs.saturating_mul(1_000_000_000)),
        )
    }

    /// `Err(when)` if either key has reached its limit as of `now`: `when`
    /// is the instant enough failures age out for one more attempt.
    pub fn check(&self, user: &str, address: &str, now: Timestamp) -> Result<(), Timestamp> {
        let since = self.window_start(now);
        let map = self.failures();
        let blocked_until = |key: Key, limit: usize| -> Option<Timestamp> {
            let recent: Vec<Timestamp> = map.get(&key)?.iter().copied().filter(|&t| t > since).collect();
            if recent.len() < limit {
                return None;
            }
            // The attempt is allowed again once all but `limit - 1` failures
            // are older than the window.
            let must_age = recent[recent.len() - limit];
            Some(Timestamp::from_nanos(must_age.as_nanos().saturating_add(
                self.limits.window_secs.saturating_mul(1_000_000_000),
            )))
        };
        let by_user = blocked_until(Key::User(normalize(user)), self.limits.per_user);
        let by_address = blocked_until(Key::Address(address.to_owned()), self.limits.per_address);
        match (by_user, by_address) {
            (None, None) => Ok(()),
            (a, b) => Err(a.max(b).unwrap_or(now)),
        }
    }

    /// Count a failed attempt against both keys.
    pub fn failed(&self, user: &str, address: &str, now: Timestamp) {
        let since = self.window_start(now);
        let mut map = self.failures();
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, times| times.back().is_some_and(|&t| t > since));
        }
        if map.len() >= MAX_KEYS {
            let oldest = map
                .iter()
                .min_by_key(|(_, times)| times.back().copied())
                .map(|(k, _)| k.clone());
            if let Some(key) = oldest {
                map.remove(&key);
            }
        }
        for key in [Key::User(normalize(user)), Key::Address(address.to_owned())] {
            let times = map.entry(key).or_default();
            while times.front().is_some_and(|&t| t <= since) {
                times.pop_front();
            }
            times.push_back(now);
        }
    }

    /// A successful sign-in clears the user's failures (not the address's:
    /// one good password must not reset a spray from the same address).
    pub fn succeeded(&self, user: &str) {
        self.failures().remove(&Key::User(normalize(user)));
    }
}

/// User names differing only in case or surrounding blanks count as one,
/// so such variants cannot multiply the attempts.
fn normalize(user: &str) -> String {
    user.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_nanos(1_800_000_000_000_000_000 + secs * 1_000_000_000)
    }

    #[test]
    fn five_failures_block_the_user_until_the_first_ages_out() {
        let l = Limiter::default();
        for i in 0..5 {
            assert_eq!(l.check("ann", "a1", at(i * 10)), Ok(()));
            l.failed("ann", "a1", at(i * 10));
        }
        // The sixth attempt waits until the first failure is 15 minutes old.
        assert_eq!(l.check("ann", "a2", at(60)), Err(at(900)));
        assert_eq!(l.check("Ann ", "a2", at(899)), Err(at(900)));
        assert_eq!(l.check("ann", "a2", at(900)), Ok(()));
        // Another user from another address is not affected.
        assert_eq!(l.check("bob", "a2", at(60)), Ok(()));
    }

    #[test]
    fn twenty_failures_block_the_address_for_every_user() {
        let l = Limiter::default();
        for i in 0..20 {
            l.failed(&format!("user{i}"), "10.0.0.1", at(i));
        }
        assert_eq!(l.check("someone-new", "10.0.0.1", at(30)), Err(at(900)));
        assert_eq!(l.check("someone-new", "10.0.0.2", at(30)), Ok(()));
        assert_eq!(l.check("someone-new", "10.0.0.1", at(900)), Ok(()));
    }

    #[test]
    fn success_clears_the_user_but_not_the_address() {
        let l = Limiter::new(Limits {
            per_user: 2,
            per_address: 3,
            window_secs: 60,
        });
        l.failed("ann", "a", at(0));
        l.failed("ann", "a", at(1));
        assert!(l.check("ann", "b", at(2)).is_err());
        l.succeeded("ann");
        assert_eq!(l.check("ann", "b", at(2)), Ok(()));
        l.failed("bob", "a", at(3));
        assert_eq!(l.check("carl", "a", at(4)), Err(at(60)));
    }

    #[test]
    fn the_later_of_both_limits_is_reported() {
        let l = Limiter::new(Limits {
            per_user: 1,
            per_address: 1,
            window_secs: 100,
        });
        l.failed("ann", "x", at(0));
        l.failed("bob", "y", at(50));
        // ann's block ends at 100, address y's at 150: the later one counts.
        assert_eq!(l.check("ann", "y", at(60)), Err(at(150)));
    }

    #[test]
    fn stale_keys_are_pruned_once_the_map_is_large() {
        let l = Limiter::default();
        // One new name a second: past PRUNE_ABOVE keys, those older than
        // the window (900 s) are dropped, so about a window's worth stays.
        for i in 0..(PRUNE_ABOVE as i64 + 10) {
            l.failed(&format!("u{i}"), "a", at(i));
        }
        let kept = l.failures().len();
        assert!(kept <= 1_000, "{kept} keys kept");
        assert!(l.check("u0", "b", at(10_000)).is_ok());
    }
}
