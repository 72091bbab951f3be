//! The web UI: Leptos pages rendered on the server and hydrated in the
//! browser, server functions, and the static bundle.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tower::ServiceExt;
use xene_app::ssr::{ApiBridge, ApiReply};
use xene_app::{App, shell};

use super::AppState;

/// The largest API answer a page reads in process (a page of runs, a log
/// page): anything bigger is refused rather than held in memory.
const MAX_BRIDGED_BYTES: usize = 16 * 1024 * 1024;

pub fn router(state: &AppState) -> Router<AppState> {
    let routes = generate_route_list(App);
    let options = state.leptos.clone();
    // Built once: every page, and the 404 page, reads the API through it.
    let api = super::api_only(state.clone());
    let fallback_api = api.clone();
    Router::new()
        .leptos_routes_with_context(
            state,
            routes,
            move || {
                provide_context(bridge(api.clone()));
            },
            move || shell(options.clone()),
        )
        .fallback(move |state: State<AppState>, req: Request| {
            static_or_not_found(state, req, fallback_api.clone())
        })
}

/// The bundle under `/pkg` (precompressed files when the browser takes
/// them, cached for a year when their name carries a content hash), and
/// Leptos' own handler for everything else (public files, the 404 page).
async fn static_or_not_found(State(state): State<AppState>, req: Request, api: Router) -> Response {
    if let Some(name) = req.uri().path().strip_prefix("/pkg/").map(str::to_owned) {
        let immutable = name.starts_with(&format!("{}-", xene_app::BUNDLE_NAME));
        let dir = std::path::Path::new(&*state.leptos.site_root).join(&*state.leptos.site_pkg_dir);
        let service = tower_http::services::ServeDir::new(dir)
            .precompressed_gzip()
            .precompressed_br();
        let (mut parts, body) = req.into_parts();
        parts.uri = format!("/{name}").parse().unwrap_or_default();
        let mut response = match service.oneshot(Request::from_parts(parts, body)).await {
            Ok(r) => r.map(Body::new),
            Err(e) => match e {},
        };
        let cache = if immutable && response.status().is_success() {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        return response;
    }
    // The 404 page is the app too: it reads the API (who is signed in, for
    // the top bar) through the same bridge as every other page.
    let uri = req.uri().clone();
    leptos_axum::file_and_error_handler_with_context::<AppState, _>(
        move || provide_context(bridge(api.clone())),
        shell,
    )(uri, State(state), req)
    .await
    .into_response()
}

fn bridge(api: Router) -> ApiBridge {
    ApiBridge::new(move |req: axum::http::Request<String>| {
        let api = api.clone();
        async move {
            // Of what the page's request carried, only the client's address
            // goes on: routing and the guard redo everything else.
            let (mut parts, body) = req.into_parts();
            let connect = parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .cloned();
            parts.extensions = Default::default();
            if let Some(connect) = connect {
                parts.extensions.insert(connect);
            }
            let req = axum::http::Request::from_parts(parts, Body::from(body));
            let Ok(response) = api.oneshot(req).await;
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), MAX_BRIDGED_BYTES)
                .await
                .map_err(|e| format!("reading the API's answer: {e}"))?;
            Ok(ApiReply {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        }
    })
}
