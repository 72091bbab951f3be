//! The connection budget of clients nobody has authenticated yet ("guests"):
//! so many per client address, so many in all. Every connection starts as a
//! guest; once a request on it authenticates (a signed-in user, an API
//! token, an agent's credential), it leaves the budget, so agents and
//! signed-in clients keep the rest of the server's connections however many
//! of them share an address.
//!
//! A full budget takes a new connection only by closing its address's (or
//! the server's) oldest guest, and only one that has been a guest longer
//! than a grace period: a client that connects and authenticates at once is
//! never cut off by a crowd arriving with it (that crowd is refused and
//! retries), while connections kept open without a credential give way.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How long a guest is safe from being closed for a newcomer: long enough
/// for a TLS handshake and one request with its credential.
pub const GRACE: Duration = Duration::from_secs(2);

/// A client address as the budget counts it: an IPv4 address, or an IPv6
/// /64 (one host usually holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address {
    V4(u32),
    V6(u64),
}

impl Address {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => Self::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

pub struct Guests {
    per_address: usize,
    total: usize,
    grace: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// Each address's guests, oldest first (ids grow with time).
    by_address: HashMap<Address, BTreeMap<u64, Entry>>,
    /// Every guest, oldest first.
    all: BTreeMap<u64, Address>,
}

struct Entry {
    since: Instant,
    evict: CancellationToken,
}

/// One connection's standing: a guest until a request on it authenticates.
pub struct Visit {
    guests: Arc<Guests>,
    address: Address,
    id: u64,
    trusted: AtomicBool,
    /// Cancelled when the connection is closed to make room.
    pub evicted: CancellationToken,
}

impl Visit {
    /// A request on this connection authenticated: it leaves the guests'
    /// budget for good.
    pub fn trust(&self) {
        if !self.trusted.swap(true, Ordering::AcqRel) {
            self.guests.leave(self.address, self.id);
        }
    }

    pub fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::Acquire)
    }
}

impl Drop for Visit {
    fn drop(&mut self) {
        if !self.is_trusted() {
            self.guests.leave(self.address, self.id);
        }
    }
}

impl Guests {
    pub fn new(per_address: usize, total: usize, grace: Duration) -> Arc<Self> {
        Arc::new(Self {
            per_address: per_address.max(1),
            total: total.max(1),
            grace,
            inner: Mutex::default(),
        })
    }

    /// A new connection from `ip` as a guest, or `None` when the budget is
    /// full of guests still in their grace period (the connection is then
    /// closed at once).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Visit> {
        let address = Address::of(ip);
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap();
        let held = inner.by_address.get(&address).map_or(0, BTreeMap::len);
        if held >= self.per_address {
            let oldest = inner.by_address[&address]
                .first_key_value()
                .filter(|(_, e)| now.duration_since(e.since) >= self.grace)
                .map(|(id, _)| *id)?;
            inner.evict(address, oldest);
        }
        if inner.all.len() >= self.total {
            let (&id, &at) = inner.all.first_key_value()?;
            let since = inner.by_address[&at][&id].since;
            if now.duration_since(since) < self.grace {
                return None;
            }
            inner.evict(at, id);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let evicted = CancellationToken::new();
        inner.by_address.entry(address).or_default().insert(
            id,
            Entry {
                since: now,
                evict: evicted.clone(),
            },
        );
        inner.all.insert(id, address);
        Some(Visit {
            guests: self.clone(),
            address,
            id,
            trusted: AtomicBool::new(false),
            evicted,
        })
    }

    fn leave(&self, address: Address, id: u64) {
        self.inner.lock().unwrap().remove(address, id);
    }

    /// Guests now held (all addresses).
    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().all.len()
    }
}

impl Inner {
    fn remove(&mut self, address: Address, id: u64) -> Option<Entry> {
        self.all.remove(&id);
        let guests = self.by_address.get_mut(&address)?;
        let entry = guests.remove(&id);
        if guests.is_empty() {
            self.by_address.remove(&address);
        }
        entry
    }

    fn evict(&mut self, address: Address, id: u64) {
        if let Some(entry) = self.remove(address, id) {
            entry.evict.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_holds_its_budget_and_trusted_connections_leave_it() {
        let guests = Guests::new(2, 100, Duration::from_secs(3600));
        let a = guests.admit(ip("10.0.0.1")).unwrap();
        let b = guests.admit(ip("10.0.0.1")).unwrap();
        assert!(guests.admit(ip("10.0.0.1")).is_none(), "over the budget");
        assert!(guests.admit(ip("10.0.0.2")).is_some(), "another address");
        a.trust();
        let c = guests.admit(ip("10.0.0.1")).unwrap();
        drop(b);
        let _d = guests.admit(ip("::ffff:10.0.0.1")).unwrap();
        assert!(guests.admit(ip("10.0.0.1")).is_none());
        assert!(!c.evicted.is_cancelled());
    }

    #[test]
    fn past_the_grace_period_the_oldest_guest_gives_way() {
        let guests = Guests::new(1, 100, Duration::ZERO);
        let old = guests.admit(ip("2001:db8::1")).unwrap();
        let new = guests.admit(ip("2001:db8::2")).unwrap();
        assert!(old.evicted.is_cancelled(), "same /64");
        assert!(!new.evicted.is_cancelled());
        drop(old);
        assert_eq!(guests.count(), 1);
    }

    #[test]
    fn the_total_budget_is_shared_by_all_addresses() {
        let guests = Guests::new(10, 2, Duration::from_secs(3600));
        let _a = guests.admit(ip("10.0.0.1")).unwrap();
        let _b = guests.admit(ip("10.0.0.2")).unwrap();
        assert!(guests.admit(ip("10.0.0.3")).is_none());
    }
}
