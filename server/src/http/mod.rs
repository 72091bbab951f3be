//! The HTTP surface: one router per feature, merged by `router()`.

use axum::Router;
use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;

use crate::storage::Db;

pub mod api;
pub mod error;
pub mod health;
pub mod ui;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub leptos: LeptosOptions,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

/// The whole application: API, health, and the web UI (which also serves the
/// static bundle and answers every other path).
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .nest("/api", api::router())
        .merge(ui::router(&state))
        .with_state(state)
}
