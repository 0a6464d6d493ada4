//! The hook through which a replicated deployment (the `cluster` feature,
//! `src/cluster/`) takes over the ingest path and guards the reads.
//!
//! The server knows only this trait; the cluster implements it. Without a
//! hook the server appends to its own store and reads it directly.

use std::future::Future;
use std::pin::Pin;

use super::error::ApiResult;
use crate::event::Event;
use crate::store::BatchReport;

/// A boxed future that may move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a replicated deployment does in place of the local store.
pub trait Replication: Send + Sync + 'static {
    /// Store `events` of `org` (validated, in body order): answer once
    /// every one that will be stored is durable by the deployment's rule,
    /// with the outcome of each event in order.
    fn ingest(&self, org: String, events: Vec<Event>) -> BoxFuture<'static, ApiResult<BatchReport>>;

    /// Wait until this node's store holds every write of `org` that was
    /// acknowledged before the call, or refuse (`503 unavailable`).
    fn before_read(&self, org: String) -> BoxFuture<'static, ApiResult<()>>;
}
