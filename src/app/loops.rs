//! The daemon's background loops besides the queue workers: polling each CRM
//! source's change tracking (one replica at a time, under a lease) and polling
//! Kaizala for answers in tenants that receive no webhooks.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::crm::{CrmError, CrmEventSink, CrmSource};
use crate::jobs::Correlations;
use crate::kaizala::poll::{
    poll_once as poll_responses, Outstanding, PollError as PollResponsesError,
};
use crate::kaizala::{Clients, Receiver};
use crate::queue::now_ms;
use crate::store::{namespaces, Leases, Store};

/// `kaizala_bridge_crm_poll_lag_seconds{crm}`: time since the source's last
/// successful poll (alert when it grows).
pub const CRM_POLL_LAG: &str = "kaizala_bridge_crm_poll_lag_seconds";
/// `kaizala_bridge_crm_last_poll_timestamp_seconds{crm}`: when the last successful
/// poll ended.
pub const CRM_LAST_POLL: &str = "kaizala_bridge_crm_last_poll_timestamp_seconds";
/// `kaizala_bridge_response_polls_total{tenant,outcome}`: passes over outstanding
/// actions, `ok` or `failed`.
pub const RESPONSE_POLLS_TOTAL: &str = "kaizala_bridge_response_polls_total";

/// Sleeps `duration`; false when `shutdown` came first.
async fn pause(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(duration) => true,
    }
}

/// Whether `holder` holds (or now takes) the poll lease `key`. Two replicas that both
/// poll once in a race are harmless: every event is deduplicated downstream.
async fn hold_lease(store: &dyn Store, key: &str, holder: &str, ttl: Duration) -> bool {
    match Leases::new(store, namespaces::LEASES)
        .hold(key, holder, ttl)
        .await
    {
        Ok(held) => held,
        Err(error) => {
            tracing::warn!(%error, key, "cannot read the poll lease; not polling this round");
            false
        }
    }
}

/// Gives the lease `key` up on the way out, so the next process (a restart, another
/// replica) polls at once instead of waiting for the lease to expire.
async fn release_lease(store: &dyn Store, key: &str, holder: &str) {
    if let Err(error) = Leases::new(store, namespaces::LEASES)
        .release(key, holder)
        .await
    {
        tracing::warn!(%error, key, "cannot release the poll lease; it expires by itself");
    }
}

/// Records that `crm` was polled successfully at `at_ms`, for the other replicas'
/// lag; a store of this process's own has no other replica to tell.
async fn record_polled(store: &dyn Store, crm: &str, at_ms: i64) {
    if store.is_shared() {
        let _ = store
            .put(namespaces::POLLED, crm, &at_ms.to_string(), None)
            .await;
    }
}

/// Seconds since any replica last polled `crm` successfully, as a shared store says;
/// since `own_ms` (this process's last success, or its start) when the store is this
/// process's own or cannot say (never polled, or unreachable).
async fn poll_lag_seconds(store: &dyn Store, crm: &str, own_ms: i64) -> f64 {
    let shared = match store.is_shared() {
        true => match store.get(namespaces::POLLED, crm).await {
            Ok(Some(text)) => text.parse::<i64>().ok(),
            _ => None,
        },
        false => None,
    };
    let last = shared.unwrap_or(own_ms).max(own_ms);
    (now_ms() - last).max(0) as f64 / 1000.0
}

/// One CRM source's polling: the source, how often, and where events go.
pub struct CrmPolling {
    /// The `[[crm]]` id.
    pub crm: String,
    /// What reads its changes.
    pub source: Arc<dyn CrmSource>,
    /// `crm[].poll_interval`.
    pub interval: Duration,
    /// Where events go (the rules and the queue).
    pub sink: Arc<dyn CrmEventSink>,
    /// The lease and the time of the last poll.
    pub store: Arc<dyn Store>,
    /// This process's name in the lease.
    pub holder: String,
}

/// Polls every watch of the source each interval, until `shutdown`. A 429 is waited
/// out for its `Retry-After` (never hammered); other failures back off up to the
/// interval and are logged; the delta link is only advanced by a pass that worked.
pub async fn poll_crm(polling: Arc<CrmPolling>, shutdown: CancellationToken) {
    let lease_key = format!("crm/{}", polling.crm);
    let lease_ttl = (polling.interval * 3).max(Duration::from_secs(30));
    let store = polling.store.as_ref();
    // The lag counts from the last success anyone had, or from our start: a source
    // nobody polls (every replica failing, or none holding the lease) shows a
    // growing lag, whatever the reason.
    let mut last_ok_ms = now_ms();
    let mut failures: u32 = 0;
    loop {
        let mut wait = polling.interval;
        if hold_lease(store, &lease_key, &polling.holder, lease_ttl).await {
            match poll_watches(&polling).await {
                Ok(()) => {
                    failures = 0;
                    last_ok_ms = now_ms();
                    record_polled(store, &polling.crm, last_ok_ms).await;
                    let now_s = last_ok_ms as f64 / 1000.0;
                    metrics::gauge!(CRM_LAST_POLL, "crm" => polling.crm.clone()).set(now_s);
                }
                Err(Some(retry_after)) => wait = wait.max(retry_after),
                Err(None) => {
                    failures += 1;
                    let backoff =
                        Duration::from_millis(500 * 2u64.saturating_pow(failures.min(10)));
                    wait = backoff.min(polling.interval);
                }
            }
        }
        let lag = poll_lag_seconds(store, &polling.crm, last_ok_ms).await;
        metrics::gauge!(CRM_POLL_LAG, "crm" => polling.crm.clone()).set(lag);
        if !pause(wait, &shutdown).await {
            release_lease(store, &lease_key, &polling.holder).await;
            return;
        }
    }
}

/// One pass over the source; on failure, `Some(wait)` when the CRM asked to be left
/// alone that long (a 429), `None` for any other failure.
async fn poll_watches(polling: &CrmPolling) -> Result<(), Option<Duration>> {
    match polling.source.poll(polling.sink.as_ref()).await {
        Ok(tables) => {
            for table in tables.iter().filter(|t| t.events > 0 || t.baseline) {
                tracing::info!(
                    crm = %polling.crm, entity_set = %table.table,
                    events = table.events, baseline = table.baseline, expired = table.expired,
                    "CRM changes read"
                );
            }
            Ok(())
        }
        Err(CrmError::Throttled { retry_after }) => {
            tracing::warn!(crm = %polling.crm, ?retry_after, "the CRM throttled the poll; waiting it out");
            Err(Some(retry_after))
        }
        Err(error) => {
            tracing::warn!(crm = %polling.crm, %error, "polling the CRM failed; trying again");
            Err(None)
        }
    }
}

/// One tenant's response polling: a client per connector and the receiver whose
/// dedup and sink every found answer passes.
pub struct ResponsePolling {
    /// The tenant.
    pub tenant: String,
    /// Its connectors' clients, keyed `tenant/connector`.
    pub clients: Clients,
    /// The receiver (dedup, then the queue).
    pub receiver: Arc<Receiver>,
    /// Our actions.
    pub correlations: Correlations,
    /// `kaizala.response_poll_interval`.
    pub interval: Duration,
    /// `kaizala.response_poll_grace`.
    pub grace: Duration,
    /// The lease, so one replica at a time polls the tenant.
    pub store: Arc<dyn Store>,
    /// This process's name in the lease.
    pub holder: String,
}

/// Reads the answers of every outstanding action of the tenant each interval, until
/// `shutdown`; an action past its due date plus the grace period, or one Kaizala no
/// longer shows, is dropped. One replica at a time polls a tenant (a lease).
pub async fn poll_responses_loop(polling: Arc<ResponsePolling>, shutdown: CancellationToken) {
    let lease_key = format!("responses/{}", polling.tenant);
    let lease_ttl = (polling.interval * 3).max(Duration::from_secs(30));
    loop {
        if !hold_lease(
            polling.store.as_ref(),
            &lease_key,
            &polling.holder,
            lease_ttl,
        )
        .await
        {
            if !pause(polling.interval, &shutdown).await {
                return;
            }
            continue;
        }
        // Polling after shutdown started would only be cut off: give the lease up.
        if shutdown.is_cancelled() {
            release_lease(polling.store.as_ref(), &lease_key, &polling.holder).await;
            return;
        }
        match poll_tenant(&polling).await {
            Ok(found) => {
                metrics::counter!(RESPONSE_POLLS_TOTAL, "tenant" => polling.tenant.clone(), "outcome" => "ok").increment(1);
                if found > 0 {
                    tracing::info!(tenant = %polling.tenant, answers = found, "answers found by polling");
                }
            }
            Err(error) => {
                metrics::counter!(RESPONSE_POLLS_TOTAL, "tenant" => polling.tenant.clone(), "outcome" => "failed").increment(1);
                tracing::warn!(tenant = %polling.tenant, %error, "polling for answers failed; trying again");
            }
        }
        if !pause(polling.interval, &shutdown).await {
            release_lease(polling.store.as_ref(), &lease_key, &polling.holder).await;
            return;
        }
    }
}

async fn poll_tenant(polling: &ResponsePolling) -> Result<usize, String> {
    let actions = polling
        .correlations
        .open_actions()
        .await
        .map_err(|e| e.to_string())?;
    let mut found = 0;
    let mut failed = 0;
    for (action_id, correlation) in actions {
        if correlation.tenant != polling.tenant || correlation.polled_out {
            continue;
        }
        // An action with no due date (an announcement) takes no answers.
        let Some(due_ms) = correlation.due_ms else {
            continue;
        };
        let Some(client) = polling.clients.get(&correlation.connector_ref()) else {
            continue;
        };
        let outstanding = [Outstanding {
            group_id: correlation.group.to_string(),
            action_id: action_id.clone(),
            due_ms,
        }];
        // Each action on its own: one that fails does not hold up the others.
        let finished = match poll_responses(
            client,
            &polling.receiver,
            &polling.tenant,
            &outstanding,
            now_ms(),
            polling.grace,
        )
        .await
        {
            Ok(report) => {
                found += report.handed_on;
                !report.finished.is_empty()
            }
            Err(PollResponsesError::Kaizala(error)) if !error.is_retryable() => {
                tracing::warn!(tenant = %polling.tenant, %action_id, %error, "an action cannot be read any more (deleted, or its group no longer granted); no longer polling it");
                true
            }
            Err(PollResponsesError::Kaizala(error)) => {
                failed += 1;
                tracing::debug!(tenant = %polling.tenant, %action_id, %error, "an action could not be read this time");
                false
            }
            // The queue cannot take answers: the next pass offers them again.
            Err(error) => return Err(error.to_string()),
        };
        if finished {
            // Past due and grace (or gone): no more answers to read. The correlation
            // stays so a late webhook still lands; only its polling stops.
            let _ = polling
                .correlations
                .stop_polling(&polling.tenant, &action_id)
                .await;
        }
    }
    if failed > 0 {
        return Err(format!(
            "{failed} action(s) could not be read; they are tried again next time"
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lag an alert reads is the time since the last successful poll, whatever
    /// stopped the polls since: it grows while every pass fails.
    #[tokio::test]
    async fn the_poll_lag_is_the_time_since_the_last_successful_poll() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("s.sqlite"))
            .await
            .unwrap();
        let just_now = poll_lag_seconds(&store, "d365", now_ms()).await;
        assert!(just_now < 1.0, "{just_now}");
        let failing_for = poll_lag_seconds(&store, "d365", now_ms() - 90_000).await;
        assert!(
            (90.0..95.0).contains(&failing_for),
            "90 s without a successful poll read as {failing_for}"
        );
    }
}
