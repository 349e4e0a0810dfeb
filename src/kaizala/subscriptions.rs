//! Keeping Kaizala's webhook subscriptions as the configuration wants them: for each
//! configured group exactly one webhook of ours, active, pointing at our receiver with
//! our token and the events we need. Ours are recognised by their callback context
//! (`kaizala-bridge:{tenant}`); anyone else's webhooks are never touched.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;

use super::api::{Webhook, WebhookRequest};
use super::client::KaizalaClient;
use super::error::KaizalaError;
use crate::model::ConnectorRef;

/// `kaizala_bridge_webhook_subscriptions_total{tenant,outcome}`: webhooks the
/// reconciler `created`, `updated`, `reenabled` (Kaizala had disabled them after
/// failed deliveries) or `deleted`, and passes that `failed`.
pub const SUBSCRIPTIONS_TOTAL: &str = "kaizala_bridge_webhook_subscriptions_total";

/// The events the bridge acts on: answers to what it posted.
pub const EVENT_TYPES: &[&str] = &["SurveyResponse", "ActionResponse", "JobResponse"];

/// The callback context that marks a webhook as the bridge's, for `tenant`.
pub fn context_of(tenant: &str) -> String {
    format!("kaizala-bridge:{tenant}")
}

/// What one connector's webhooks should be.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The tenant (its receiver URL and context).
    pub tenant: String,
    /// `{public_url}/webhooks/kaizala/{tenant}`.
    pub callback_url: String,
    /// The tenant's `callback_token`.
    pub callback_token: super::token::Token,
    /// Groups that must have our webhook, through this connector.
    pub groups: BTreeSet<String>,
    /// Groups of the tenant managed through another connector: left alone here.
    pub elsewhere: BTreeSet<String>,
}

/// What one reconciliation did, group by group.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Groups that got a new webhook.
    pub created: Vec<String>,
    /// Groups whose webhook was changed back to the configuration.
    pub updated: Vec<String>,
    /// Groups whose disabled webhook was made active again.
    pub reenabled: Vec<String>,
    /// Webhooks of ours removed (extras, or on groups no longer configured): group ids.
    pub deleted: Vec<String>,
    /// Groups already as configured.
    pub unchanged: Vec<String>,
}

/// Makes the connector's webhooks match `desired`, looking at every group the
/// connector can see.
pub async fn reconcile(
    client: &KaizalaClient,
    desired: &Desired,
) -> Result<SyncReport, KaizalaError> {
    let mut report = SyncReport::default();
    let context = context_of(&desired.tenant);
    let visible: BTreeSet<String> = client
        .groups()
        .await?
        .into_iter()
        .map(|g| g.group_id)
        .collect();
    // A group that fails does not hold up the others; the first failure is reported
    // once every group had its turn.
    let mut failure = None;
    for group in visible
        .union(&desired.groups)
        .filter(|g| !desired.elsewhere.contains(*g))
    {
        if let Err(error) = reconcile_group(client, desired, group, &context, &mut report).await {
            tracing::debug!(%group, %error, "a group's webhook could not be reconciled");
            failure.get_or_insert(error);
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(report),
    }
}

/// Makes one group's webhooks of ours match `desired`.
async fn reconcile_group(
    client: &KaizalaClient,
    desired: &Desired,
    group: &String,
    context: &str,
    report: &mut SyncReport,
) -> Result<(), KaizalaError> {
    let ours: Vec<Webhook> = client
        .list_webhooks(group, "Group")
        .await?
        .into_iter()
        .filter(|w| w.callback_context == context)
        .collect();
    if !desired.groups.contains(group) {
        for webhook in ours {
            client.delete_webhook(&webhook.id).await?;
            report.deleted.push(group.clone());
        }
        return Ok(());
    }
    let mut ours = ours.into_iter();
    let Some(keep) = ours.next() else {
        client
            .create_webhook(&request(desired, group, context))
            .await?;
        report.created.push(group.clone());
        return Ok(());
    };
    for extra in ours {
        client.delete_webhook(&extra.id).await?;
        report.deleted.push(group.clone());
    }
    let wanted: BTreeSet<&str> = EVENT_TYPES.iter().copied().collect();
    let subscribed: BTreeSet<&str> = keep.events.iter().map(String::as_str).collect();
    let drifted = keep.callback_url != desired.callback_url
        || keep
            .callback_token
            .as_ref()
            .is_some_and(|t| *t != desired.callback_token)
        || subscribed != wanted;
    if drifted {
        let changes = json!({
            "callBackUrl": desired.callback_url,
            "callBackToken": desired.callback_token.expose(),
            "eventTypes": EVENT_TYPES,
            "Active": true,
        });
        client.update_webhook(&keep.id, &changes).await?;
        report.updated.push(group.clone());
    } else if !keep.active {
        client
            .update_webhook(&keep.id, &json!({ "Active": true }))
            .await?;
        report.reenabled.push(group.clone());
    } else {
        report.unchanged.push(group.clone());
    }
    Ok(())
}

fn request(desired: &Desired, group: &str, context: &str) -> WebhookRequest {
    WebhookRequest {
        object_id: group.to_string(),
        object_type: "Group".into(),
        event_types: EVENT_TYPES.iter().map(|e| e.to_string()).collect(),
        call_back_url: desired.callback_url.clone(),
        call_back_token: desired.callback_token.clone(),
        call_back_context: context.to_string(),
    }
}

/// A connector of the configuration, with its client and what its webhooks should be.
pub struct Managed {
    /// The connector and its tenant.
    pub connector: ConnectorRef,
    /// Its client.
    pub client: Arc<KaizalaClient>,
    /// What its webhooks should be.
    pub desired: Desired,
}

/// Why the configuration cannot drive webhook subscriptions.
#[derive(Debug, thiserror::Error)]
pub enum SyncSetupError {
    /// No `server.public_url`: Kaizala would not know where to call.
    #[error("server.public_url: required to register webhooks (the address Kaizala calls)")]
    NoPublicUrl,
    /// A tenant without `callback_token`.
    #[error("tenants[{0}].callback_token: required to register webhooks")]
    NoCallbackToken(usize),
    /// A client could not be built.
    #[error(transparent)]
    Client(#[from] KaizalaError),
}

/// Every connector of `config` with the webhooks it manages, each with a client of
/// its own. A group granted to several connectors of a tenant is managed by the first
/// that lists it.
pub fn managed(
    config: &crate::config::Config,
    store: Arc<dyn crate::store::Store>,
) -> Result<Vec<Managed>, SyncSetupError> {
    let clients = super::client::clients(config, store, None)?;
    managed_with(config, &clients)
}

/// Like [`managed`], through the clients already built, so
/// that webhook calls pass the same rate gate as everything else.
pub fn managed_with(
    config: &crate::config::Config,
    clients: &super::client::Clients,
) -> Result<Vec<Managed>, SyncSetupError> {
    let public_url = config
        .server
        .public_url
        .as_ref()
        .ok_or(SyncSetupError::NoPublicUrl)?;
    let mut managed = Vec::new();
    for (t, tenant) in config.tenants.iter().enumerate() {
        if tenant.responses == crate::config::ResponseMode::Poll {
            // Answers are polled in this tenant: it wants no webhooks.
            continue;
        }
        let token = tenant
            .callback_token
            .as_ref()
            .ok_or(SyncSetupError::NoCallbackToken(t))?;
        let mut url = public_url.clone();
        url.path_segments_mut()
            .map_err(|()| SyncSetupError::NoPublicUrl)?
            .pop_if_empty()
            .extend(["webhooks", "kaizala", &tenant.id]);
        let mut taken = BTreeSet::new();
        let mut per_connector = Vec::new();
        for connector in &tenant.connectors {
            let groups: BTreeSet<String> = connector
                .groups
                .iter()
                .filter(|g| taken.insert((*g).clone()))
                .cloned()
                .collect();
            per_connector.push((connector, groups));
        }
        for (connector, groups) in &per_connector {
            let elsewhere = per_connector
                .iter()
                .flat_map(|(_, g)| g.iter())
                .filter(|g| !groups.contains(*g))
                .cloned()
                .collect();
            let key = ConnectorRef::new(&tenant.id, &connector.id);
            let Some(client) = clients.get(&key) else {
                continue;
            };
            managed.push(Managed {
                connector: key,
                client: client.clone(),
                desired: Desired {
                    tenant: tenant.id.clone(),
                    callback_url: url.to_string(),
                    callback_token: token.expose().into(),
                    groups: groups.clone(),
                    elsewhere,
                },
            });
        }
    }
    Ok(managed)
}

/// What `run` keeps reconciled: every managed connector, how often, and the store
/// whose per-tenant lease lets one replica at a time reconcile a tenant.
pub struct Reconciling {
    /// The connectors and the webhooks they should have.
    pub managed: Vec<Managed>,
    /// `kaizala.webhook_sync_interval`.
    pub interval: std::time::Duration,
    /// Where the leases live (shared by replicas on Redis).
    pub store: Arc<dyn crate::store::Store>,
    /// This process's name in the leases.
    pub holder: String,
}

/// How long a replica may take over one tenant's pass before another may start one.
const RECONCILE_LEASE: std::time::Duration = std::time::Duration::from_secs(120);

/// Reconciles every connector's webhooks now and then every `interval`, until
/// `shutdown`; a failing pass is logged and tried again at the next interval. Each
/// tenant's pass runs under a lease, so two replicas starting together never both
/// find a group without our webhook and both register one: the second waits for the
/// lease and then finds the first one's webhook.
pub async fn keep_reconciled(
    reconciling: Arc<Reconciling>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let leases =
        crate::store::Leases::new(reconciling.store.as_ref(), crate::store::namespaces::LEASES);
    let mut tenants: Vec<&str> = reconciling
        .managed
        .iter()
        .map(|m| m.connector.tenant.as_str())
        .collect();
    tenants.dedup();
    loop {
        for tenant in &tenants {
            let key = format!("webhooks/{tenant}");
            match wait_for_lease(&leases, &key, &reconciling.holder, &shutdown).await {
                Some(true) => {}
                Some(false) => continue,
                None => return,
            }
            for m in reconciling
                .managed
                .iter()
                .filter(|m| m.connector.tenant == *tenant)
            {
                reconcile_logged(m).await;
            }
            let _ = leases.release(&key, &reconciling.holder).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(reconciling.interval) => {}
        }
    }
}

/// Takes the lease `key`, waiting while another replica holds it (it is reconciling
/// the tenant now: this one then looks at what it left). `Some(false)` when the
/// store cannot say (reconcile later), `None` at shutdown.
async fn wait_for_lease(
    leases: &crate::store::Leases<'_>,
    key: &str,
    holder: &str,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<bool> {
    loop {
        match leases.hold(key, holder, RECONCILE_LEASE).await {
            Ok(true) => return Some(true),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(key, %error, "cannot take the webhook lease; reconciling later");
                return Some(false);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
    }
}

/// One connector's pass, counted and logged.
async fn reconcile_logged(m: &Managed) {
    match reconcile(&m.client, &m.desired).await {
        Ok(report) => {
            for (outcome, groups) in [
                ("created", report.created.len()),
                ("updated", report.updated.len()),
                ("reenabled", report.reenabled.len()),
                ("deleted", report.deleted.len()),
            ] {
                metrics::counter!(SUBSCRIPTIONS_TOTAL, "tenant" => m.connector.tenant.to_string(), "outcome" => outcome)
                    .increment(groups as u64);
            }
            tracing::info!(
                connector = %m.connector,
                created = report.created.len(),
                updated = report.updated.len(),
                reenabled = report.reenabled.len(),
                deleted = report.deleted.len(),
                unchanged = report.unchanged.len(),
                "webhook subscriptions reconciled"
            )
        }
        Err(error) => {
            metrics::counter!(SUBSCRIPTIONS_TOTAL, "tenant" => m.connector.tenant.to_string(), "outcome" => "failed")
                .increment(1);
            tracing::warn!(connector = %m.connector, %error, "webhook reconciliation failed; trying again later")
        }
    }
}
