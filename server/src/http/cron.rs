//! `/api/v1/cron/next`: when a cron line would fire, for the editor to show
//! beside a trigger being typed (the browser bundle leaves the time zone
//! tables to the server).

use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use xene_core::cron::{Schedule, parse_timezone};

use super::AppState;
use super::error::ApiError;
use crate::controllers::cron::next_fires;
use crate::storage::now_ms;
use xene_api::workflows::NextFires;

/// Most fire times one answer lists.
const MAX_COUNT: usize = 20;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(next))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NextQuery {
    /// A cron line: five fields or `@daily` and the like.
    pub schedule: String,
    /// An IANA time zone; UTC when absent.
    pub timezone: Option<String>,
    /// How many fire times, 1 to 20 (5 when absent).
    pub count: Option<usize>,
}

/// The next times a cron line fires, from now.
#[utoipa::path(
    get, path = "/api/v1/cron/next", tag = "workflows", params(NextQuery),
    responses(
        (status = 200, body = NextFires),
        (status = 422, description = "The line or the time zone does not parse"),
    )
)]
async fn next(
    query: Result<Query<NextQuery>, QueryRejection>,
) -> Result<Json<NextFires>, ApiError> {
    let Query(q) = query?;
    if q.schedule.len() > 256 {
        return Err(ApiError::Unprocessable(
            "a cron line is at most 256 characters".into(),
        ));
    }
    Schedule::parse(&q.schedule).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    if let Some(tz) = &q.timezone {
        parse_timezone(tz).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    }
    let count = q.count.unwrap_or(5).clamp(1, MAX_COUNT);
    let trigger = xene_core::spec::Trigger::Cron {
        schedule: q.schedule,
        timezone: q.timezone,
        catchup: Default::default(),
        overlap: Default::default(),
    };
    Ok(Json(NextFires {
        fires: next_fires(&trigger, now_ms(), count),
    }))
}
