//! The rate gate: calls on a key are spaced a full interval apart, a tenant's quota
//! holds all its connectors, a pause holds every caller of its key and only that key,
//! and on Redis several gates (replicas) share one budget.
//!
//! Timing assertions here only ever say "took at least": a slow machine can make a
//! run longer, never shorter, so they cannot flake the wrong way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kaizala_bridge::model::ConnectorRef;
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

/// Permits handed out by `gate` to `workers` callers over `run`, each taking its
/// connector's quota (three connectors, 40 per 2 s) and the tenant's (100 per 2 s).
async fn permits(gate: Arc<dyn RateGate>, workers: usize, run: Duration) -> usize {
    let period = Duration::from_secs(2);
    let deadline = Instant::now() + run;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let mut taken = 0;
            let mut n = w;
            while Instant::now() < deadline {
                let quotas = [
                    Quota::connector(&ConnectorRef::new("t", format!("c{}", n % 3)), 40, period),
                    Quota::tenant("t", 100, period),
                ];
                gate.acquire(&quotas).await.unwrap();
                taken += 1;
                n += workers;
            }
            taken
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_gate_hands_out_the_tenant_quota_and_no_more() {
    let redis = RedisServer::start();
    let gate: Arc<dyn RateGate> = Arc::new(RedisGate::connect(&redis.url(), "t").await.unwrap());
    let run = Duration::from_secs(4);
    let taken = permits(gate, 8, run).await;
    // 50 a second, less the 1% slack; the last waiters may finish just after the end.
    let quota = 50.0 * run.as_secs_f64();
    println!(
        "redis gate: {taken} permits in {run:?} ({:.1}% of the tenant quota)",
        taken as f64 / quota * 100.0
    );
    assert!(
        taken as f64 <= quota + 9.0,
        "{taken} permits: over the quota"
    );
    assert!(
        taken as f64 >= quota * 0.95,
        "{taken} permits: the quota is left idle"
    );
}

/// A process's gate remembers its last permits in the SQLite store: the next process
/// (a restart, after a SIGKILL) keeps the spacing instead of starting afresh, so the
/// two together never exceed the quota in Kaizala's minute. A key the first never
/// used is free at once.
#[tokio::test]
async fn a_restarted_process_keeps_the_killed_ones_spacing() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn kaizala_bridge::store::Store> = Arc::new(
        kaizala_bridge::store::SqliteStore::open(&dir.path().join("s.sqlite"))
            .await
            .unwrap(),
    );
    let quota = [fast("connector:c/a")];
    let killed = LocalGate::remembering(store.clone()).await.unwrap();
    take(&killed, &quota, 5).await;
    drop(killed);
    let restarted = LocalGate::remembering(store.clone()).await.unwrap();
    let started = Instant::now();
    take(&restarted, &[fast("connector:c/other")], 1).await;
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "an unused key waited {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    take(&restarted, &quota, 1).await;
    // The last permit written may be followed by a second of unwritten ones: the first
    // permit of the new process comes a second and an interval after it.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the first permit after the restart came after {:?}",
        started.elapsed()
    );
}

/// A replica killed while its attempts wait for permits must not leave slots reserved
/// that nobody will use: waiting callers hold no reservation until theirs is due.
#[tokio::test]
async fn callers_that_die_waiting_leave_no_slots_reserved_ahead() {
    let redis = RedisServer::start();
    let gate = Arc::new(RedisGate::connect(&redis.url(), "dying").await.unwrap());
    let slow = Quota {
        key: "connector:c/a".into(),
        calls: 60,
        period: Duration::from_secs(60),
    }; // one a second
    gate.acquire(std::slice::from_ref(&slow)).await.unwrap();
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let (gate, slow) = (gate.clone(), slow.clone());
            tokio::spawn(async move { gate.acquire(&[slow]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for waiter in &waiters {
        waiter.abort();
    }
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let reserved: usize = redis::cmd("ZCARD")
        .arg("dying:calendar:connector:c/a")
        .query_async(&mut connection)
        .await
        .unwrap();
    // The permit taken, and at most the next slot (due within the horizon); without
    // the rule the 8 dead callers would hold 8 more.
    assert!(
        reserved <= 2,
        "{reserved} slots reserved after 8 callers died waiting"
    );
}

/// A caller that will wait only so long is told at once when its permit is further
/// off, and takes nothing: the next caller still gets the next permit on time.
async fn a_far_permit_is_refused_at_once(gate: &dyn RateGate) {
    // One call per 2 s (30 a minute): after one, the next is about 2 s off.
    let quota = Quota::tenant("patient", 30, Duration::from_secs(60));
    let quotas = std::slice::from_ref(&quota);
    gate.acquire(quotas).await.unwrap();
    let within = Duration::from_secs(1);
    let asked = Instant::now();
    let later = gate
        .acquire_within(quotas, within)
        .await
        .unwrap()
        .expect("the next permit is 2 s off");
    assert!(
        asked.elapsed() < Duration::from_millis(900),
        "told after {:?}: it waited out its patience",
        asked.elapsed()
    );
    assert!(
        later >= within && later <= Duration::from_millis(2200),
        "{later:?}"
    );
    // Nothing was taken: the permit after next is still about 2 s away, not 4.
    let again = gate
        .acquire_within(quotas, within)
        .await
        .unwrap()
        .expect("still off");
    assert!(again <= Duration::from_millis(2200), "{again:?}");
}

#[tokio::test]
async fn the_local_gate_refuses_a_far_permit_at_once() {
    a_far_permit_is_refused_at_once(&LocalGate::new()).await;
}

#[tokio::test]
async fn the_shared_gate_refuses_a_far_permit_at_once() {
    let redis = RedisServer::start();
    let gate = RedisGate::connect(&redis.url(), "patient").await.unwrap();
    a_far_permit_is_refused_at_once(&gate).await;
}
