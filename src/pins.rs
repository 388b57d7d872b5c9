//! Proxy-wide pin tables. A driver may continue a cursor or a transaction on any of its
//! connections to the proxy, so pins are shared by all client sessions, not per socket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntGauge;

use crate::address::ServerAddress;

/// Server-side idle cursors die after 10 minutes; a pin unused for longer is garbage.
pub const CURSOR_PIN_TTL: Duration = Duration::from_secs(15 * 60);
/// logicalSessionTimeoutMinutes defaults to 30.
pub const TXN_PIN_TTL: Duration = Duration::from_secs(31 * 60);

#[derive(Debug)]
struct Pin {
    address: ServerAddress,
    last_used: Instant,
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

    pub fn cursor(&self, id: i64) -> Option<ServerAddress> {
        let mut map = lock(&self.cursors);
        let pin = map.get_mut(&id)?;
        pin.last_used = Instant::now();
        Some(pin.address.clone())
    }

    pub fn pin_cursor(&self, id: i64, address: &ServerAddress) {
        if id == 0 {
            return;
        }
        let mut map = lock(&self.cursors);
        map.insert(
            id,
            Pin {
                address: address.clone(),
                last_used: Instant::now(),
            },
        );
        set(&self.cursor_gauge, map.len());
    }

    pub fn unpin_cursors(&self, ids: &[i64]) {
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
        map.insert(
            lsid.to_vec(),
            Pin {
                address: address.clone(),
                last_used: Instant::now(),
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
        p.pin_cursor(7, &s1);
        p.pin_cursor(0, &s1);
        assert_eq!(p.cursor(7), Some(s1.clone()));
        assert_eq!(p.counts(), (1, 0));
        p.pin_transaction(b"lsid", &s1);
        assert_eq!(p.drop_member(&s1), 1);
        assert_eq!(p.counts(), (0, 0));
        p.pin_cursor(8, &s1);
        p.sweep(Instant::now() + CURSOR_PIN_TTL + Duration::from_secs(1));
        assert_eq!(p.cursor(8), None);
    }
}
