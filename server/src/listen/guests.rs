//! The connection budget of clients nobody has authenticated yet ("guests"):
//! so many per client address, so many in all. Every connection starts as a
//! guest; once a request on it authenticates (a signed-in user, an API
//! token, an agent's credential), it leaves the budget, so agents and
//! signed-in clients keep the rest of the server's connections however many
//! of them share an address.
//!
//! A full budget takes a new connection only by closing its address's (or
//! the server's) oldest idle guest, and only one that has been a guest
//! longer than a grace period: a client that connects and authenticates at
//! once is never cut off by a crowd arriving with it (that crowd is refused
//! and retries), while connections kept open without a credential give way.
//! A guest busy with a request (a download, a join) gives way only when no
//! idle one can, and only after a much longer grace.
//!
//! Reverse proxies named by `--trusted-proxies` are held to the total only:
//! all their clients share their address.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How long a guest is safe from being closed for a newcomer: long enough
/// for a TLS handshake and one request with its credential.
pub const GRACE: Duration = Duration::from_secs(2);
/// How long a guest busy with a request (its handler running, its answer
/// being sent: a join, a webhook, a download of the agent binary on a slow
/// link) is safe: idle guests give way first, and a busy one only after
/// this long, so a stranger cannot hold busy connections for good either.
pub const BUSY_GRACE: Duration = Duration::from_secs(300);

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

/// What the budget allows.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Guests one address may hold.
    pub per_address: usize,
    /// Guests all addresses together may hold.
    pub total: usize,
    /// How long a new guest is safe from being closed for a newcomer.
    pub grace: Duration,
    /// How long a guest busy with a request is.
    pub busy_grace: Duration,
    /// Reverse proxies: every client of theirs shares their address, so
    /// they are held to the total only (they limit their clients).
    pub proxies: Vec<IpAddr>,
}

pub struct Guests {
    limits: Limits,
    proxies: HashSet<IpAddr>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    /// Each address's guests.
    by_address: HashMap<Address, Queue>,
    /// Every guest.
    all: Queue,
}

struct Entry {
    address: Address,
    since: Instant,
    evict: CancellationToken,
    /// Requests in flight (their handler running or their answer going out).
    requests: u32,
    /// When the first of them began.
    busy_since: Instant,
}

/// Guests in the order they give way: idle ones oldest first (ids grow
/// with time), then busy ones by when they became busy.
#[derive(Default)]
struct Queue {
    idle: BTreeSet<u64>,
    busy: BTreeSet<(Instant, u64)>,
}

impl Queue {
    fn len(&self) -> usize {
        self.idle.len() + self.busy.len()
    }

    fn insert(&mut self, id: u64, entry: &Entry) {
        if entry.requests == 0 {
            self.idle.insert(id);
        } else {
            self.busy.insert((entry.busy_since, id));
        }
    }

    fn remove(&mut self, id: u64, entry: &Entry) {
        if entry.requests == 0 {
            self.idle.remove(&id);
        } else {
            self.busy.remove(&(entry.busy_since, id));
        }
    }

    /// The guest to close for a newcomer, if any may be.
    fn victim(&self, entries: &HashMap<u64, Entry>, now: Instant, limits: &Limits) -> Option<u64> {
        let idle = self
            .idle
            .first()
            .filter(|id| now.duration_since(entries[id].since) >= limits.grace);
        let busy = || {
            self.busy
                .first()
                .filter(|(since, _)| now.duration_since(*since) >= limits.busy_grace)
                .map(|(_, id)| id)
        };
        idle.or_else(busy).copied()
    }
}

/// One connection's standing: a guest until a request on it authenticates.
pub struct Visit {
    guests: Arc<Guests>,
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
            self.guests.leave(self.id);
        }
    }

    pub fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::Acquire)
    }
}

impl Drop for Visit {
    fn drop(&mut self) {
        if !self.is_trusted() {
            self.guests.leave(self.id);
        }
    }
}

/// One request in flight on a connection, from when its body has arrived
/// (or its answer begins) until its answer has gone out: while it lasts, a
/// guest gives way to newcomers only after `BUSY_GRACE`. A request still
/// arriving is not busy: a body trickled byte by byte protects nothing.
pub struct Busy {
    visit: Arc<Visit>,
    on: AtomicBool,
}

impl Busy {
    pub fn new(visit: Arc<Visit>) -> Self {
        Self {
            visit,
            on: AtomicBool::new(false),
        }
    }

    pub fn visit(&self) -> &Visit {
        &self.visit
    }

    /// The request is being handled; idempotent.
    pub fn start(&self) {
        // A trusted connection is in no budget: nothing to mark.
        if self.visit.is_trusted() || self.on.swap(true, Ordering::AcqRel) {
            return;
        }
        self.visit.guests.busy(self.visit.id, true);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if *self.on.get_mut() {
            self.visit.guests.busy(self.visit.id, false);
        }
    }
}

impl Guests {
    pub fn new(limits: Limits) -> Arc<Self> {
        let limits = Limits {
            per_address: limits.per_address.max(1),
            total: limits.total.max(1),
            ..limits
        };
        Arc::new(Self {
            proxies: limits.proxies.iter().map(|ip| ip.to_canonical()).collect(),
            limits,
            inner: Mutex::default(),
        })
    }

    /// A new connection from `ip` as a guest, or `None` when the budget is
    /// full of guests that may not be closed yet (the connection is then
    /// closed at once).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Visit> {
        let address = Address::of(ip);
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap();
        let inner = &mut *inner;
        if !self.proxies.contains(&ip.to_canonical())
            && let Some(queue) = inner.by_address.get(&address)
            && queue.len() >= self.limits.per_address
        {
            let victim = queue.victim(&inner.entries, now, &self.limits)?;
            inner.evict(victim);
        }
        if inner.all.len() >= self.limits.total {
            let victim = inner.all.victim(&inner.entries, now, &self.limits)?;
            inner.evict(victim);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let evicted = CancellationToken::new();
        let entry = Entry {
            address,
            since: now,
            evict: evicted.clone(),
            requests: 0,
            busy_since: now,
        };
        inner
            .by_address
            .entry(address)
            .or_default()
            .insert(id, &entry);
        inner.all.insert(id, &entry);
        inner.entries.insert(id, entry);
        Some(Visit {
            guests: self.clone(),
            id,
            trusted: AtomicBool::new(false),
            evicted,
        })
    }

    fn leave(&self, id: u64) {
        self.inner.lock().unwrap().remove(id);
    }

    /// A request on guest `id` began (`true`) or ended.
    fn busy(&self, id: u64, began: bool) {
        let mut inner = self.inner.lock().unwrap();
        // Gone (trusted or closed since): nothing to count.
        let Some(entry) = inner.remove(id) else {
            return;
        };
        let mut entry = entry;
        if began {
            if entry.requests == 0 {
                entry.busy_since = Instant::now();
            }
            entry.requests += 1;
        } else {
            entry.requests = entry.requests.saturating_sub(1);
        }
        inner.put(id, entry);
    }

    /// Guests now held (all addresses).
    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().all.len()
    }
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.all.remove(id, &entry);
        if let Some(queue) = self.by_address.get_mut(&entry.address) {
            queue.remove(id, &entry);
            if queue.len() == 0 {
                self.by_address.remove(&entry.address);
            }
        }
        Some(entry)
    }

    fn put(&mut self, id: u64, entry: Entry) {
        self.by_address
            .entry(entry.address)
            .or_default()
            .insert(id, &entry);
        self.all.insert(id, &entry);
        self.entries.insert(id, entry);
    }

    fn evict(&mut self, id: u64) {
        if let Some(entry) = self.remove(id) {
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

    fn guests(per_address: usize, total: usize, grace: Duration) -> Arc<Guests> {
        Guests::new(Limits {
            per_address,
            total,
            grace,
            busy_grace: Duration::from_secs(3600),
            proxies: vec![ip("10.9.9.9")],
        })
    }

    #[test]
    fn an_address_holds_its_budget_and_trusted_connections_leave_it() {
        let guests = guests(2, 100, Duration::from_secs(3600));
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
        let guests = guests(1, 100, Duration::ZERO);
        let old = guests.admit(ip("2001:db8::1")).unwrap();
        let new = guests.admit(ip("2001:db8::2")).unwrap();
        assert!(old.evicted.is_cancelled(), "same /64");
        assert!(!new.evicted.is_cancelled());
        drop(old);
        assert_eq!(guests.count(), 1);
    }

    #[test]
    fn the_total_budget_is_shared_by_all_addresses() {
        let guests = guests(10, 2, Duration::from_secs(3600));
        let _a = guests.admit(ip("10.0.0.1")).unwrap();
        let _b = guests.admit(ip("10.0.0.2")).unwrap();
        assert!(guests.admit(ip("10.0.0.3")).is_none());
    }

    #[test]
    fn busy_guests_give_way_last() {
        let guests = guests(2, 100, Duration::ZERO);
        let busy = Arc::new(guests.admit(ip("10.0.0.1")).unwrap());
        let idle = guests.admit(ip("10.0.0.1")).unwrap();
        let request = Busy::new(busy.clone());
        request.start();
        // The idle one goes, though younger; then the newcomer, now idle.
        let newcomer = guests.admit(ip("10.0.0.1")).unwrap();
        assert!(idle.evicted.is_cancelled());
        assert!(!busy.evicted.is_cancelled());
        let _next = guests.admit(ip("10.0.0.1")).unwrap();
        assert!(newcomer.evicted.is_cancelled());
        assert!(!busy.evicted.is_cancelled());
        // Only busy ones left, all within their grace: refused.
        let other = Busy::new(Arc::new(guests.admit(ip("10.0.0.1")).unwrap()));
        other.start();
        assert!(guests.admit(ip("10.0.0.1")).is_none());
        assert!(!busy.evicted.is_cancelled());
        // Its request over, the first is idle again and the oldest.
        drop(request);
        let _last = guests.admit(ip("10.0.0.1")).unwrap();
        assert!(busy.evicted.is_cancelled());
        assert_eq!(guests.count(), 2);
    }

    #[test]
    fn past_its_longer_grace_a_busy_guest_gives_way_too() {
        let guests = Guests::new(Limits {
            per_address: 1,
            total: 100,
            grace: Duration::ZERO,
            busy_grace: Duration::ZERO,
            proxies: vec![],
        });
        let first = Arc::new(guests.admit(ip("10.0.0.1")).unwrap());
        let request = Busy::new(first.clone());
        request.start();
        let _newcomer = guests.admit(ip("10.0.0.1")).expect("admitted");
        assert!(first.evicted.is_cancelled());
        drop(request);
        assert_eq!(guests.count(), 1);
    }

    #[test]
    fn a_proxy_is_held_to_the_total_only() {
        let guests = guests(1, 3, Duration::from_secs(3600));
        let _held: Vec<Visit> = (0..3)
            .map(|_| guests.admit(ip("::ffff:10.9.9.9")).expect("a proxy"))
            .collect();
        assert!(guests.admit(ip("10.9.9.9")).is_none(), "the total");
    }
}
