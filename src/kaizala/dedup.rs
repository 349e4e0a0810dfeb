//! Remembering event ids for a while, so that a repeated delivery is handed on once.
//!
//! An id is claimed before its event is handed on and released if that fails, so
//! two concurrent deliveries of one event cannot both pass, and a delivery refused
//! with 503 is not mistaken for a duplicate when Kaizala retries it. This memory is
//! per process until the durable store lands.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Event ids seen recently.
pub struct Dedup {
    ttl: Duration,
    seen: Mutex<HashMap<String, Instant>>,
}

impl Dedup {
    /// Remembers ids for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// True when `id` was not seen within the ttl; it is then claimed.
    pub fn claim(&self, id: &str) -> bool {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap();
        if seen.len() > 10_000 {
            seen.retain(|_, at| now.duration_since(*at) < self.ttl);
        }
        match seen.get(id) {
            Some(at) if now.duration_since(*at) < self.ttl => false,
            _ => {
                seen.insert(id.to_string(), now);
                true
            }
        }
    }

    /// Gives up a claim, so the next delivery of the event is handed on.
    pub fn release(&self, id: &str) {
        self.seen.lock().unwrap().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_claimed_once_until_released_or_expired() {
        let dedup = Dedup::new(Duration::from_secs(60));
        assert!(dedup.claim("e1"));
        assert!(!dedup.claim("e1"));
        dedup.release("e1");
        assert!(dedup.claim("e1"));
        let short = Dedup::new(Duration::ZERO);
        assert!(
            short.claim("e2") && short.claim("e2"),
            "a zero ttl remembers nothing"
        );
    }
}
