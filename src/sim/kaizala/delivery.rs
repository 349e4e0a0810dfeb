//! Delivering events to webhooks: each event is POSTed to the callback with
//! `kz-callback-token`, in order; a non-2xx answer or a timeout is retried with
//! exponential backoff, and a webhook still failing after the retry budget is
//! disabled until `PUT` makes it active again. Delivery is at-least-once, and the
//! fault settings can duplicate or reorder events on purpose.

use std::sync::Arc;

use super::state::{Delivery, DeliveryRecord};
use super::Shared;

/// Runs until the emulator stops: takes events from the outbox and delivers them.
pub async fn run(shared: Arc<Shared>) {
    let mut held: Option<Delivery> = None;
    loop {
        let woken = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = shared.deliverer.notified() => true,
            _ = tokio::time::sleep(shared.options.reorder_hold), if held.is_some() => false,
        };
        let batch: Vec<Delivery> = std::mem::take(&mut shared.world.lock().unwrap().outbox);
        if !woken && batch.is_empty() {
            if let Some(late) = held.take() {
                send_first(&shared, late).await;
            }
            continue;
        }
        for delivery in batch {
            let (duplicate, reorder) = {
                let mut faults = shared.faults.lock().unwrap();
                (faults.duplicate(), faults.reorder())
            };
            if reorder && held.is_none() {
                held = Some(delivery);
                continue;
            }
            if duplicate {
                send_first(&shared, delivery.clone()).await;
            }
            send_first(&shared, delivery).await;
            if let Some(late) = held.take() {
                send_first(&shared, late).await;
            }
        }
    }
}

/// The first attempt is awaited, so events leave in order; retries go on in the
/// background on their own schedule.
async fn send_first(shared: &Arc<Shared>, delivery: Delivery) {
    // An event queued while its webhook was active waits for nothing once it is not.
    let Some(generation) = shared.active_generation(&delivery.webhook_id) else {
        shared.record_stop(&delivery, 1, "skipped", "webhook is disabled");
        return;
    };
    if attempt(shared, &delivery, 1).await {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let options = &shared.options;
        for retry in 1..=options.delivery_retries {
            let backoff = options.delivery_retry_initial * 2u32.saturating_pow(retry - 1);
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            if shared.active_generation(&delivery.webhook_id) != Some(generation) {
                let why = "the webhook was disabled or re-enabled meanwhile; the event is dropped";
                shared.record_stop(&delivery, retry + 1, "dropped", why);
                return;
            }
            if attempt(&shared, &delivery, retry + 1).await {
                return;
            }
        }
        shared.disable(&delivery, generation);
    });
}

/// One POST; records its outcome and says whether it was delivered.
async fn attempt(shared: &Shared, delivery: &Delivery, number: u32) -> bool {
    let Some((url, token)) = shared.callback_of(&delivery.webhook_id) else {
        return true; // deleted meanwhile: nothing left to deliver to
    };
    let result = shared
        .http
        .post(&url)
        .header("kz-callback-token", token)
        .timeout(shared.options.delivery_timeout)
        .json(&delivery.payload)
        .send()
        .await;
    let (status, error) = match result {
        Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
        Ok(response) => (
            Some(response.status().as_u16()),
            Some(format!("answered {}", response.status())),
        ),
        Err(e) if e.is_timeout() => (None, Some("no answer in time".to_string())),
        Err(e) => (None, Some(format!("cannot reach the callback: {e}"))),
    };
    let delivered = error.is_none();
    shared
        .world
        .lock()
        .unwrap()
        .deliveries
        .push(DeliveryRecord {
            webhook_id: delivery.webhook_id.clone(),
            event_id: delivery.event_id.clone(),
            event_type: delivery.event_type.clone(),
            attempt: number,
            outcome: if delivered { "delivered" } else { "failed" }.into(),
            status,
            error,
        });
    delivered
}

impl Shared {
    fn callback_of(&self, webhook_id: &str) -> Option<(String, String)> {
        let world = self.world.lock().unwrap();
        let webhook = world.webhooks.iter().find(|w| w.id == webhook_id)?;
        Some((webhook.callback_url.clone(), webhook.callback_token.clone()))
    }

    /// The generation of the webhook, when it is active.
    fn active_generation(&self, webhook_id: &str) -> Option<u64> {
        let world = self.world.lock().unwrap();
        world
            .webhooks
            .iter()
            .find(|w| w.id == webhook_id && w.active)
            .map(|w| w.generation)
    }

    fn record_stop(&self, delivery: &Delivery, attempt: u32, outcome: &str, why: &str) {
        self.world.lock().unwrap().deliveries.push(DeliveryRecord {
            webhook_id: delivery.webhook_id.clone(),
            event_id: delivery.event_id.clone(),
            event_type: delivery.event_type.clone(),
            attempt,
            outcome: outcome.into(),
            status: None,
            error: Some(why.into()),
        });
    }

    /// Disables the webhook after its retry budget, unless it was re-enabled since
    /// the chain began.
    fn disable(&self, delivery: &Delivery, generation: u64) {
        let mut world = self.world.lock().unwrap();
        match world
            .webhooks
            .iter_mut()
            .find(|w| w.id == delivery.webhook_id)
        {
            Some(webhook) if webhook.generation == generation => webhook.active = false,
            _ => return,
        }
        if let Some(last) = world
            .deliveries
            .iter_mut()
            .rev()
            .find(|d| d.event_id == delivery.event_id && d.webhook_id == delivery.webhook_id)
        {
            last.outcome = "disabled".into();
        }
    }
}
