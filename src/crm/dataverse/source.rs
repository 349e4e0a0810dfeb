//! Dataverse as a [`CrmSource`]: one pass of change tracking over every watched
//! entity set, with the delta links kept in the state store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::poller::{poll_once, PollError, Watch};
use super::WebApi;
use crate::crm::{CrmError, CrmEventSink, CrmSource, TablePoll};
use crate::store::Store;

/// The watched entity sets of one Dataverse environment.
pub struct DataverseSource {
    api: Arc<WebApi>,
    watches: Vec<Watch>,
    links: Arc<dyn Store>,
}

impl DataverseSource {
    /// Polls `watches` through `api`, keeping each delta link in `links`.
    pub fn new(api: Arc<WebApi>, watches: Vec<Watch>, links: Arc<dyn Store>) -> Self {
        Self {
            api,
            watches,
            links,
        }
    }

    async fn poll_all(&self, sink: &dyn CrmEventSink) -> Result<Vec<TablePoll>, CrmError> {
        let mut tables = Vec::with_capacity(self.watches.len());
        for watch in &self.watches {
            let report = poll_once(&self.api, self.links.as_ref(), sink, watch)
                .await
                .map_err(|error| match error {
                    PollError::Dataverse(error) => CrmError::from(error),
                    // The store or the queue is away for now: the next pass tries again.
                    other => CrmError::Retryable(format!("{}: {other}", watch.entity_set)),
                })?;
            tables.push(TablePoll {
                table: watch.entity_set.clone(),
                events: report.events,
                baseline: report.baseline,
                expired: report.expired,
            });
        }
        Ok(tables)
    }
}

impl CrmSource for DataverseSource {
    fn poll<'a>(
        &'a self,
        sink: &'a dyn CrmEventSink,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<TablePoll>, CrmError>> + Send + 'a>> {
        Box::pin(self.poll_all(sink))
    }
}
