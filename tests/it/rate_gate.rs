//! The rate gate: calls on a key are spaced a full interval apart, a tenant's quota
//! holds all its connectors, a pause holds every caller of its key and only that key,
//! and on Redis several gates (replicas) share one budget.
//!
//! Timing assertions here only ever say "took at least": a slow machine can make a
//! run longer, never shorter, so they cannot flake the wrong way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kaizala_bridge::ratelimit::{LocalGate, Quota, RateGate, RedisGate};

use crate::support::redis::RedisServer;

/// 6000 a minute: one call per 10 ms.
fn fast(key: &str) -> Quota {
    Quota {
        key: key.into(),
        calls: 6000,
        period: Duration::from_secs(60),
    }
}

async fn take(gate: &dyn RateGate, quotas: &[Quota], n: usize) {
    for _ in 0..n {
        gate.acquire(quotas).await.unwrap();
    }
}

#[tokio::test]
async fn calls_on_one_key_are_spaced_a_full_interval() {
    let gate = LocalGate::new();
    let started = Instant::now();
    take(&gate, &[fast("connector:c/a")], 11).await;
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_tenant_quota_holds_all_its_connectors() {
    let gate = Arc::new(LocalGate::new());
    let tenant = Quota {
        key: "tenant:c".into(),
        calls: 3000,
        period: Duration::from_secs(60),
    }; // 20 ms
    let started = Instant::now();
    let a = {
        let (gate, tenant) = (gate.clone(), tenant.clone());
        tokio::spawn(async move { take(gate.as_ref(), &[fast("connector:c/a"), tenant], 5).await })
    };
    take(gate.as_ref(), &[fast("connector:c/b"), tenant], 6).await;
    a.await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "11 calls 20 ms apart: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_pause_holds_its_key_and_no_other() {
    let gate = Arc::new(LocalGate::new());
    gate.pause("connector:c/a", Duration::from_millis(500))
        .await
        .unwrap();
    let started = Instant::now();
    let held = {
        let gate = gate.clone();
        tokio::spawn(async move { gate.acquire(&[fast("connector:c/a")]).await.unwrap() })
    };
    gate.acquire(&[fast("connector:c/b")]).await.unwrap();
    assert!(
        !held.is_finished(),
        "the other connector went through while this one waits"
    );
    held.await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn replicas_on_redis_share_one_budget_and_one_pause() {
    let redis = RedisServer::start();
    let one = Arc::new(RedisGate::connect(&redis.url(), "test").await.unwrap());
    let two = Arc::new(RedisGate::connect(&redis.url(), "test").await.unwrap());
    let started = Instant::now();
    let other = {
        let two = two.clone();
        tokio::spawn(async move { take(two.as_ref(), &[fast("connector:c/a")], 10).await })
    };
    take(one.as_ref(), &[fast("connector:c/a")], 10).await;
    other.await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "20 calls 10 ms apart between two gates, not 10 each side by side: {:?}",
        started.elapsed()
    );

    one.pause("connector:c/a", Duration::from_millis(400))
        .await
        .unwrap();
    let started = Instant::now();
    two.acquire(&[fast("connector:c/a"), fast("tenant:c")])
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "the other replica honours the pause: {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    two.acquire(&[fast("connector:c/b")]).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "another connector is not paused"
    );
}
