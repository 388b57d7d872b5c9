//! Proxy-wide pin tables. A driver may continue a cursor or a transaction on any of its
//! connections to the proxy, so pins are shared by all client sessions, not per socket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntGauge;

use crate::address::ServerAddress;
use crate::command::CursorKind;

/// Server-side idle cursors die after 10 minutes; a pin unused for longer is garbage.
pub const CURSOR_PIN_TTL: Duration = Duration::from_secs(15 * 60);
/// logicalSessionTimeoutMinutes defaults to 30.
pub const TXN_PIN_TTL: Duration = Duration::from_secs(31 * 60);
/// Bounds on each table (about 100 bytes an entry): a client that opens cursors and
/// abandons them cannot grow the proxy without limit. Past the bound, expired pins are
/// swept and then the least recently used one is evicted (its next getMore gets the
/// server's own CursorNotFound from whichever member selection picks).
pub const MAX_CURSOR_PINS: usize = 200_000;
pub const MAX_TXN_PINS: usize = 100_000;

#[derive(Debug)]
struct Pin {
    address: ServerAddress,
    last_used: Instant,
    kind: CursorKind,
}

/// Makes room for one more entry in a bounded table: expired entries go first, then the
/// least recently used. Returns how many were evicted before their TTL.
fn make_room<K: Clone + Eq + std::hash::Hash>(map: &mut HashMap<K, Pin>, max: usize, ttl: Duration) -> usize {
    if map.len() < max {
        return 0;
    }
    let now = Instant::now();
    map.retain(|_, p| now.duration_since(p.last_used) < ttl);
    let mut evicted = 0;
    while map.len() >= max {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, p)| p.last_used)
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.remove(&oldest);
        evicted += 1;
    }
    evicted
}

#[derive(Debug)]
pub struct Pins {
    /// cursor id → member that owns it.
    cursors: Mutex<HashMap<i64, Pin>>,
    /// lsid bytes → member running that session's transaction.
    transactions: Mutex<HashMap<Vec<u8>, Pin>>,
    cursor_gauge: IntGauge,
    txn_gauge: IntGauge,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn set(g: &IntGauge, n: usize) {
    g.set(i64::try_from(n).unwrap_or(i64::MAX));
}

impl Pins {
    pub fn new(cursor_gauge: IntGauge, txn_gauge: IntGauge) -> Self {
        Self {
            cursors: Mutex::default(),
            transactions: Mutex::default(),
            cursor_gauge,
            txn_gauge,
        }
    }

    /// The member holding cursor `id`, and the cursor's kind.
    pub fn cursor(&self, id: i64) -> Option<(ServerAddress, CursorKind)> {
        let mut map = lock(&self.cursors);
        let pin = map.get_mut(&id)?;
        pin.last_used = Instant::now();
        Some((pin.address.clone(), pin.kind))
    }

    pub fn pin_cursor(&self, id: i64, address: &ServerAddress, kind: CursorKind) {
        if id == 0 {
            return;
        }
        let mut map = lock(&self.cursors);
        if !map.contains_key(&id) && make_room(&mut map, MAX_CURSOR_PINS, CURSOR_PIN_TTL) > 0 {
            tracing::warn!(
                max = MAX_CURSOR_PINS,
                "cursor pin table full: evicted the least recently used pin"
            );
        }
        map.insert(
            id,
            Pin {
                address: address.clone(),
                last_used: Instant::now(),
                kind,
            },
        );
        set(&self.cursor_gauge, map.len());
    }

    pub fn unpin_cursors(&self, ids: &[i64]) {
        if ids.is_empty() {
            return;
        }
        let mut map = lock(&self.cursors);
        for id in ids {
            map.remove(id);
        }
        set(&self.cursor_gauge, map.len());
    }

    pub fn transaction(&self, lsid: &[u8]) -> Option<ServerAddress> {
        let mut map = lock(&self.transactions);
        let pin = map.get_mut(lsid)?;
        pin.last_used = Instant::now();
        Some(pin.address.clone())
    }

    pub fn pin_transaction(&self, lsid: &[u8], address: &ServerAddress) {
        let mut map = lock(&self.transactions);
        if !map.contains_key(lsid) && make_room(&mut map, MAX_TXN_PINS, TXN_PIN_TTL) > 0 {
            tracing::warn!(
                max = MAX_TXN_PINS,
                "transaction pin table full: evicted the least recently used pin"
            );
        }
        map.insert(
            lsid.to_vec(),
            Pin {
                address: address.clone(),
                last_used: Instant::now(),
                kind: CursorKind::Plain,
            },
        );
        set(&self.txn_gauge, map.len());
    }

    pub fn unpin_transaction(&self, lsid: &[u8]) {
        let mut map = lock(&self.transactions);
        map.remove(lsid);
        set(&self.txn_gauge, map.len());
    }

    /// Drops every pin to a member that is gone (killed, removed from the set).
    /// Returns the number of cursor pins dropped.
    pub fn drop_member(&self, address: &ServerAddress) -> usize {
        let mut cursors = lock(&self.cursors);
        let before = cursors.len();
        cursors.retain(|_, p| &p.address != address);
        let dropped = before - cursors.len();
        set(&self.cursor_gauge, cursors.len());
        drop(cursors);
        let mut txns = lock(&self.transactions);
        txns.retain(|_, p| &p.address != address);
        set(&self.txn_gauge, txns.len());
        dropped
    }

    /// Forgets pins unused for longer than their TTL.
    pub fn sweep(&self, now: Instant) {
        let mut cursors = lock(&self.cursors);
        cursors.retain(|_, p| now.duration_since(p.last_used) < CURSOR_PIN_TTL);
        set(&self.cursor_gauge, cursors.len());
        drop(cursors);
        let mut txns = lock(&self.transactions);
        txns.retain(|_, p| now.duration_since(p.last_used) < TXN_PIN_TTL);
        set(&self.txn_gauge, txns.len());
    }

    pub fn counts(&self) -> (usize, usize) {
        (lock(&self.cursors).len(), lock(&self.transactions).len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_and_unpins() {
        let p = Pins::new(IntGauge::new("a", "a").unwrap(), IntGauge::new("b", "b").unwrap());
        let s1 = ServerAddress::new("s1", 1);
        p.pin_cursor(7, &s1, CursorKind::ChangeStream);
        p.pin_cursor(0, &s1, CursorKind::Plain);
        assert_eq!(p.cursor(7), Some((s1.clone(), CursorKind::ChangeStream)));
        assert_eq!(p.counts(), (1, 0));
        p.pin_transaction(b"lsid", &s1);
        assert_eq!(p.drop_member(&s1), 1);
        assert_eq!(p.counts(), (0, 0));
        p.pin_cursor(8, &s1, CursorKind::Plain);
        p.sweep(Instant::now() + CURSOR_PIN_TTL + Duration::from_secs(1));
        assert_eq!(p.cursor(8), None);
    }

    #[test]
    fn tables_are_bounded_least_recently_used_first() {
        let mut map = HashMap::new();
        let s1 = ServerAddress::new("s1", 1);
        let t0 = Instant::now();
        for (k, age) in [(1, 30), (2, 10), (3, 20)] {
            map.insert(
                k,
                Pin {
                    address: s1.clone(),
                    last_used: t0 - Duration::from_secs(age),
                    kind: CursorKind::Plain,
                },
            );
        }
        assert_eq!(make_room(&mut map, 4, CURSOR_PIN_TTL), 0);
        assert_eq!(make_room(&mut map, 3, CURSOR_PIN_TTL), 1);
        assert!(!map.contains_key(&1), "the least recently used pin goes first");
        assert_eq!(
            make_room(&mut map, 2, Duration::from_secs(15)),
            0,
            "expired pins are swept, not counted"
        );
        assert_eq!(map.len(), 1);
    }
}
