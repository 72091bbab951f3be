//! The API's live feeds (WebSockets) in the browser: each text frame read
//! as one of `xene_api::feed`'s messages and given to a callback, reopened after a drop with the URL the caller
//! computes then (so a run's feed resumes after its last cursor). Nothing
//! happens on the server, where pages render once.

/// Follows a feed while the calling component lives. `url` gives the path
/// and query (`/api/v1/runs/7/events?after=12`) each time it (re)connects;
/// `stop` tells it not to reopen (the run ended).
#[allow(unused_variables)]
pub fn follow<M: serde::de::DeserializeOwned + 'static>(
    url: impl Fn() -> String + Send + Sync + 'static,
    on_message: impl Fn(M) + Send + Sync + 'static,
    stop: impl Fn() -> bool + Send + Sync + 'static,
) {
    #[cfg(feature = "hydrate")]
    browser::follow(url, on_message, stop);
}

#[cfg(feature = "hydrate")]
mod browser {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use leptos::prelude::*;
    use send_wrapper::SendWrapper;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;
    use web_sys::{CloseEvent, MessageEvent, WebSocket};

    pub fn follow<M: serde::de::DeserializeOwned + 'static>(
        url: impl Fn() -> String + Send + Sync + 'static,
        on_message: impl Fn(M) + Send + Sync + 'static,
        stop: impl Fn() -> bool + Send + Sync + 'static,
    ) {
        let alive = Arc::new(AtomicBool::new(true));
        let current: Arc<std::sync::Mutex<Option<SendWrapper<WebSocket>>>> = Arc::default();
        let state = Arc::new(Feed {
            url: Box::new(url),
            on_message: Box::new(on_message),
            stop: Box::new(stop),
            alive: alive.clone(),
            current: current.clone(),
            failures: std::sync::atomic::AtomicU32::new(0),
        });
        open(state);
        on_cleanup(move || {
            alive.store(false, Ordering::SeqCst);
            if let Some(ws) = current.lock().ok().and_then(|mut c| c.take()) {
                let _ = ws.close();
            }
        });
    }

    type Url = Box<dyn Fn() -> String + Send + Sync>;
    type OnMessage<M> = Box<dyn Fn(M) + Send + Sync>;
    type Stop = Box<dyn Fn() -> bool + Send + Sync>;

    struct Feed<M> {
        url: Url,
        on_message: OnMessage<M>,
        stop: Stop,
        alive: Arc<AtomicBool>,
        current: Arc<std::sync::Mutex<Option<SendWrapper<WebSocket>>>>,
        failures: std::sync::atomic::AtomicU32,
    }

    fn open<M: serde::de::DeserializeOwned + 'static>(feed: Arc<Feed<M>>) {
        if !feed.alive.load(Ordering::SeqCst) || (feed.stop)() {
            return;
        }
        let location = window().location();
        let scheme = if location.protocol().ok().as_deref() == Some("https:") {
            "wss"
        } else {
            "ws"
        };
        let host = location.host().unwrap_or_default();
        let Ok(ws) = WebSocket::new(&format!("{scheme}://{host}{}", (feed.url)())) else {
            return;
        };
        let on_message = {
            let feed = feed.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                feed.failures.store(0, Ordering::SeqCst);
                // A message this UI does not know (a newer server's) is
                // skipped, as before.
                if let Some(text) = e.data().as_string()
                    && let Ok(message) = serde_json::from_str::<M>(&text)
                {
                    (feed.on_message)(message);
                }
            })
        };
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
        let on_close = {
            let feed = feed.clone();
            Closure::<dyn FnMut(CloseEvent)>::new(move |_: CloseEvent| {
                if !feed.alive.load(Ordering::SeqCst) || (feed.stop)() {
                    return;
                }
                // Back off up to 10 s; a feed that delivered resets it.
                let n = feed.failures.fetch_add(1, Ordering::SeqCst).min(5);
                let delay = 500u64 * (1 << n).min(20);
                let feed = feed.clone();
                set_timeout(move || open(feed), std::time::Duration::from_millis(delay));
            })
        };
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        on_close.forget();
        if let Ok(mut c) = feed.current.lock() {
            *c = Some(SendWrapper::new(ws));
        }
    }
}
