//! The store's own events of a node (a download's
//! `audit_log.download_url.generated`, a full export's, a web sign-in's
//! `user.logged_in`) go through the organization's stream like any
//! ingested event, so that every node applying the partition holds them,
//! not only the node that served the request (docs/cluster.md, "Own
//! events").

use std::sync::mpsc;
use std::time::Duration;

use super::publisher::Publisher;
use crate::event::Event;
use crate::store::own_events::OwnEventSink;

/// Publishes a node's own events; [`OwnEventSink::record`] returns once
/// JetStream acknowledged the batch (or failed).
pub struct StreamSink {
    pub publisher: Publisher,
    pub runtime: tokio::runtime::Handle,
    /// The longest wait for the acknowledgement.
    pub patience: Duration,
}

impl OwnEventSink for StreamSink {
    fn record(&self, org: &str, event: &Event) -> crate::Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        let (publisher, org, event) = (self.publisher.clone(), org.to_owned(), event.clone());
        // On the runtime's workers, while this (blocking) thread waits.
        self.runtime.spawn(async move {
            let published = publisher.publish([(org.as_str(), &event)]).await;
            let _ = tx.send(published.map(|_| ()).map_err(|e| e.to_string()));
        });
        match rx.recv_timeout(self.patience) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(crate::Error::Unavailable(format!(
                "JetStream did not acknowledge it ({e}); try again"
            ))),
            Err(_) => Err(crate::Error::Unavailable(format!(
                "JetStream did not acknowledge it within {:?}; try again",
                self.patience
            ))),
        }
    }
}
