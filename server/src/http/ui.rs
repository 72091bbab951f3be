//! The web UI: Leptos pages rendered on the server and hydrated in the
//! browser, server functions, and the static bundle.

use axum::Router;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use xene_app::ssr::StatusProbe;
use xene_app::{App, ServerStatus, shell};

use super::AppState;
use crate::storage::Db;

pub fn router(state: &AppState) -> Router<AppState> {
    let routes = generate_route_list(App);
    let db = state.db.clone();
    let options = state.leptos.clone();
    Router::new()
        .leptos_routes_with_context(
            state,
            routes,
            move || provide_context(status_probe(db.clone())),
            move || shell(options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
}

fn status_probe(db: Db) -> StatusProbe {
    StatusProbe::new(move || {
        let db = db.clone();
        async move {
            db.ping().await.map_err(|e| e.to_string())?;
            Ok(ServerStatus {
                version: env!("CARGO_PKG_VERSION").to_string(),
                database: db.backend().name().to_string(),
            })
        }
    })
}
