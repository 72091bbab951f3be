//! Stopping a server that runs inside the test's own process (the server's
//! library serves until a future completes).

use std::future::Future;

use tokio::sync::oneshot;

/// A sender that stops the server and the future to serve it until: send
/// `()` (or drop the sender) and the future completes.
pub fn stop_signal() -> (
    oneshot::Sender<()>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    (stop, async move {
        let _ = stopped.await;
    })
}
