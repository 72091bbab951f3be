//! What the server provides to the UI's server functions through context.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::pages::home::ServerStatus;

type StatusFuture = Pin<Box<dyn Future<Output = Result<ServerStatus, String>> + Send>>;

/// Reports the server's version and database health; the server supplies it
/// because only the server knows its database.
#[derive(Clone)]
pub struct StatusProbe(Arc<dyn Fn() -> StatusFuture + Send + Sync>);

impl StatusProbe {
    pub fn new<F, Fut>(probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ServerStatus, String>> + Send + 'static,
    {
        Self(Arc::new(move || Box::pin(probe())))
    }

    pub async fn status(&self) -> Result<ServerStatus, String> {
        (self.0)().await
    }
}
