//! The outcomes of the commands this node published and is waiting for:
//! the applier that applies one (after its local change and the stream
//! position are durable) hands its outcome to the waiting request. A
//! command published by another node, or redelivered after a restart, has
//! no one waiting here: its outcome is only its effect on the store.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::server::error::ApiResult;
use crate::server::replication::Outcome;

/// What applying a command answered (a refusal is an outcome too: every
/// replica refuses it alike).
pub type Answer = ApiResult<Outcome>;

/// Command id -> the request waiting for its outcome.
#[derive(Default)]
pub struct Outcomes(Mutex<HashMap<Uuid, oneshot::Sender<Answer>>>);

impl Outcomes {
    /// Wait for command `id`'s outcome (register before publishing it, so
    /// that a quick applier finds the waiter).
    pub fn expect(&self, id: Uuid) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        rx
    }

    /// No longer wait for `id` (the request gave up).
    pub fn forget(&self, id: &Uuid) {
        self.lock().remove(id);
    }

    /// Hand `answer` to whoever waits for `id`, if anyone.
    pub fn deliver(&self, id: &Uuid, answer: Answer) {
        if let Some(tx) = self.lock().remove(id) {
            let _ = tx.send(answer);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, oneshot::Sender<Answer>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
