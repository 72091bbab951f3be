//! What the server provides to the UI's server functions through context.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// An answer of the REST API, as the UI's server functions see it.
#[derive(Debug, Clone)]
pub struct ApiReply {
    pub status: u16,
    pub body: String,
}

type ApiFuture = Pin<Box<dyn Future<Output = Result<ApiReply, String>> + Send>>;

/// Calls the server's own REST API in process with the caller's headers
/// (cookie, origin checks), so pages and server functions pass the same
/// guard and rules as any API client.
#[derive(Clone)]
pub struct ApiBridge(Arc<dyn Fn(http::Request<String>) -> ApiFuture + Send + Sync>);

impl ApiBridge {
    pub fn new<F, Fut>(call: F) -> Self
    where
        F: Fn(http::Request<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ApiReply, String>> + Send + 'static,
    {
        Self(Arc::new(move |req| Box::pin(call(req))))
    }

    pub async fn call(&self, req: http::Request<String>) -> Result<ApiReply, String> {
        (self.0)(req).await
    }
}
