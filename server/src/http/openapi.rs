//! The rules of the API document that hold for every route, applied once to
//! the document the routes generate, so a route added later follows them
//! without repeating them: every 4xx and 5xx answer carries the error body
//! (422 the diagnostics body), statuses and triggers are enums, times are
//! UTC milliseconds, and the security schemes are declared. Also the
//! browsable view at `/api/v1/docs`: plain HTML rendered here, so it needs
//! nothing from the network, at build time or in the browser.

use std::fmt::Write;

use utoipa::PartialSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Ref, Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, RefOr};
use xene_api::agents::AgentState;
use xene_api::error::ErrorBody;
use xene_core::status::{RunStatus, StepStatus, TaskStatus};

/// An invalid workflow's 422: the error body, with every fault.
fn invalid_workflow() -> Ref {
    let mut body = Ref::from_schema_name("ErrorBody");
    body.description =
        "An invalid workflow's error body: `diagnostics` and `message` list every fault.".into();
    body
}

/// A string enum, its values taken from `core` where they are defined.
fn string_enum(description: &str, values: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(description))
        .enum_values(Some(values.iter().copied()))
        .into()
}

/// Which property of which schema holds which enum.
const ENUM_PROPERTIES: &[(&str, &str, &str)] = &[
    ("Run", "status", "RunStatus"),
    ("Run", "trigger", "Trigger"),
    ("Run", "scheduler_status", "SchedulerStatus"),
    ("RunDetail", "status", "RunStatus"),
    ("RunDetail", "trigger", "Trigger"),
    ("RunDetail", "scheduler_status", "SchedulerStatus"),
    ("TaskRun", "status", "TaskStatus"),
    ("StepRun", "status", "StepStatus"),
    ("TaskAttempt", "status", "AttemptStatus"),
    ("PipelineState", "trigger", "Trigger"),
    ("PipelineState", "scheduler_status", "SchedulerStatus"),
    ("PipelineSummary", "trigger", "Trigger"),
    ("LastRun", "status", "RunStatus"),
    ("Agent", "state", "AgentState"),
    ("CancelResponse", "status", "CancelStatus"),
    ("RunBrief", "status", "RunStatus"),
    ("RunBrief", "trigger", "Trigger"),
];

fn enums() -> Vec<(&'static str, RefOr<Schema>)> {
    vec![
        (
            "RunStatus",
            string_enum(
                "The status of a run.",
                &RunStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "TaskStatus",
            string_enum(
                "The status of a task in a run.",
                &TaskStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "AttemptStatus",
            string_enum(
                "The status of a task attempt: `ready` waits for an agent; `unknown`, its agent went silent.",
                &xene_api::run::ATTEMPT_STATUSES,
            ),
        ),
        (
            "StepStatus",
            string_enum(
                "The status of a step in a task.",
                &StepStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "Trigger",
            string_enum(
                "What started a run, or what starts a pipeline.",
                &["manual", "webhook", "cron"],
            ),
        ),
        (
            "SchedulerStatus",
            string_enum(
                "The scheduler's latest decision about a run or pipeline.",
                &["scheduled", "not_scheduled"],
            ),
        ),
        (
            "AgentState",
            string_enum(
                "`revoked`: its credential no longer works.",
                &AgentState::ALL.map(AgentState::as_str),
            ),
        ),
        (
            "CancelStatus",
            string_enum(
                "`cancelled` when the run had not started; `cancelling` while its agent stops it.",
                &["cancelled", "cancelling"],
            ),
        ),
    ]
}

const TIME_DESCRIPTION: &str = "UTC time in milliseconds since the Unix epoch.";

/// Applies the document-wide rules to `doc`.
pub fn complete(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    // The error body is no route's answer type, so it and what it holds
    // are added here; an invalid workflow's 422 is the same body, named
    // for the faults it lists.
    for (name, schema) in [
        ("ErrorBody", ErrorBody::schema()),
        ("InvalidWorkflow", RefOr::Ref(invalid_workflow())),
        ("ParamFault", xene_core::params::ParamFault::schema()),
        ("Diagnostic", xene_core::Diagnostic::schema()),
    ]
    .into_iter()
    .chain(enums())
    {
        components.schemas.insert(name.to_string(), schema);
    }
    // Applied below to every operation whose rule asks for a role.
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API token, as `Authorization: Bearer TOKEN`."))
                .build(),
        ),
    );
    components.add_security_scheme(
        "session_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "xene_session",
            "The browser session of a signed-in person.",
        ))),
    );
    for (schema_name, schema) in components.schemas.iter_mut() {
        let RefOr::T(Schema::Object(object)) = schema else {
            continue;
        };
        for (property, value) in object.properties.iter_mut() {
            if let Some((_, _, enum_name)) = ENUM_PROPERTIES
                .iter()
                .find(|(s, p, _)| s == schema_name && p == property)
            {
                *value = RefOr::Ref(Ref::from_schema_name(*enum_name));
            } else if property.ends_with("_at") {
                describe_time(value);
            }
        }
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, operation) in [
            (axum::http::Method::GET, &mut item.get),
            (axum::http::Method::POST, &mut item.post),
            (axum::http::Method::PUT, &mut item.put),
            (axum::http::Method::DELETE, &mut item.delete),
            (axum::http::Method::PATCH, &mut item.patch),
        ]
        .into_iter()
        .filter_map(|(m, o)| o.as_mut().map(|o| (m, o)))
        {
            // The access rule decides: a role means a token or a session.
            if let Some(crate::access::rules::Access::Role(role)) =
                crate::access::rules::lookup(&method, path)
            {
                operation.security = Some(vec![
                    utoipa::openapi::security::SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    ),
                    utoipa::openapi::security::SecurityRequirement::new(
                        "session_cookie",
                        Vec::<String>::new(),
                    ),
                ]);
                let needs = format!("Needs the `{role}` role (or above).");
                operation.description = Some(match operation.description.take() {
                    Some(d) if !d.is_empty() => format!("{d}\n\n{needs}"),
                    _ => needs,
                });
            }
            // What every such route may answer, documented once here.
            let mut implied = Vec::new();
            if path.contains('{') {
                implied.push(("400", "A malformed path parameter or query"));
            }
            if let Some(crate::access::rules::Access::Role(_)) =
                crate::access::rules::lookup(&method, path)
            {
                implied.push((
                    "401",
                    "No credential, or one that is invalid, expired or revoked",
                ));
                implied.push(("403", "The caller's role is below the route's"));
            }
            for (status, description) in implied {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::T(utoipa::openapi::Response::new(description)));
            }
            let invalid_workflow =
                method == axum::http::Method::POST && path == "/api/v1/workflows";
            for (status, response) in operation.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if !(status.starts_with('4') || status.starts_with('5'))
                    || !response.content.is_empty()
                {
                    continue;
                }
                let body = if status == "422" && invalid_workflow {
                    "InvalidWorkflow"
                } else {
                    "ErrorBody"
                };
                response.content.insert(
                    "application/json".into(),
                    Content::new(Some(Ref::from_schema_name(body))),
                );
            }
        }
    }
}

/// Says what a `*_at` integer means (an optional one is `[integer, null]`).
fn describe_time(value: &mut RefOr<Schema>) {
    if let RefOr::T(Schema::Object(object)) = value
        && is_integer(object)
    {
        object.description = Some(TIME_DESCRIPTION.into());
    }
}

fn is_integer(object: &Object) -> bool {
    match &object.schema_type {
        SchemaType::Type(Type::Integer) => true,
        SchemaType::Array(types) => types.contains(&Type::Integer),
        _ => false,
    }
}

/// A browsable page of the document: every operation with its parameters,
/// body and answers, then every schema with its properties.
pub fn docs_page(doc: &OpenApi) -> String {
    let mut out = String::new();
    let title = escape(&doc.info.title);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} reference</title><link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\
         <style>{STYLE}</style></head><body>\
         <header><h1>{title}</h1><p>{}</p><p>Version {} · \
         <a href=\"/api/v1/openapi.json\">openapi.json</a> for client generators</p></header><main>",
        prose(doc.info.description.as_deref().unwrap_or("")),
        escape(&doc.info.version),
    );
    out.push_str("<nav><h2>Operations</h2><ul>");
    let operations = operations(doc);
    for (method, path, _) in &operations {
        let _ = write!(
            out,
            "<li><a href=\"#{}\"><span class=\"method {m}\">{m}</span> <code>{}</code></a></li>",
            anchor(method, path),
            escape(path),
            m = method,
        );
    }
    out.push_str("</ul></nav>");
    for (method, path, operation) in &operations {
        let _ = write!(
            out,
            "<section class=\"operation\" id=\"{}\"><h2><span class=\"method {m}\">{m}</span> <code>{}</code></h2>",
            anchor(method, path),
            escape(path),
            m = method,
        );
        for text in [&operation.summary, &operation.description]
            .into_iter()
            .flatten()
        {
            let _ = write!(out, "<p>{}</p>", prose(text));
        }
        if let Some(parameters) = operation.parameters.as_ref().filter(|p| !p.is_empty()) {
            out.push_str("<h3>Parameters</h3><table><tr><th>name</th><th>in</th><th>type</th><th>description</th></tr>");
            for p in parameters {
                let place = serde_json::to_value(&p.parameter_in).unwrap_or_default();
                let _ = write!(
                    out,
                    "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&p.name),
                    if matches!(p.required, utoipa::openapi::Required::True) {
                        " (required)"
                    } else {
                        ""
                    },
                    escape(place.as_str().unwrap_or("")),
                    p.schema.as_ref().map(type_of).unwrap_or_default(),
                    prose(p.description.as_deref().unwrap_or("")),
                );
            }
            out.push_str("</table>");
        }
        if let Some(body) = &operation.request_body {
            out.push_str("<h3>Request body</h3><ul>");
            for (media, content) in &body.content {
                let _ = write!(
                    out,
                    "<li><code>{}</code>: {}</li>",
                    escape(media),
                    content.schema.as_ref().map(type_of).unwrap_or_default()
                );
            }
            out.push_str("</ul>");
            if let Some(description) = &body.description {
                let _ = write!(out, "<p>{}</p>", prose(description));
            }
        }
        out.push_str(
            "<h3>Responses</h3><table><tr><th>status</th><th>description</th><th>body</th></tr>",
        );
        for (status, response) in &operation.responses.responses {
            let (description, body) = match response {
                RefOr::T(r) => (
                    r.description.clone(),
                    r.content
                        .values()
                        .filter_map(|c| c.schema.as_ref().map(type_of))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                RefOr::Ref(r) => (String::new(), link(&r.ref_location)),
            };
            let _ = write!(
                out,
                "<tr><td class=\"status\">{}</td><td>{}</td><td>{body}</td></tr>",
                escape(status),
                prose(&description)
            );
        }
        out.push_str("</table></section>");
    }
    if let Some(components) = &doc.components {
        out.push_str("<h2 id=\"schemas\">Schemas</h2>");
        for (name, schema) in &components.schemas {
            let _ = write!(
                out,
                "<section class=\"schema\" id=\"schema-{0}\"><h3>{0}</h3>",
                escape(name)
            );
            if let RefOr::T(Schema::Object(object)) = schema {
                if let Some(description) = &object.description {
                    let _ = write!(out, "<p>{}</p>", prose(description));
                }
                if let Some(values) = &object.enum_values {
                    let values: Vec<String> = values
                        .iter()
                        .map(|v| format!("<code>{}</code>", escape(v.as_str().unwrap_or_default())))
                        .collect();
                    let _ = write!(out, "<p>One of: {}</p>", values.join(" "));
                }
                if !object.properties.is_empty() {
                    out.push_str(
                        "<table><tr><th>property</th><th>type</th><th>description</th></tr>",
                    );
                    for (property, value) in &object.properties {
                        let description = match value {
                            RefOr::T(Schema::Object(o)) => {
                                o.description.clone().unwrap_or_default()
                            }
                            _ => String::new(),
                        };
                        let _ = write!(
                            out,
                            "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
                            escape(property),
                            if object.required.contains(property) {
                                " (required)"
                            } else {
                                ""
                            },
                            type_of(value),
                            prose(&description)
                        );
                    }
                    out.push_str("</table>");
                }
            } else {
                let _ = write!(out, "<p>{}</p>", type_of(schema));
            }
            out.push_str("</section>");
        }
        if !components.security_schemes.is_empty() {
            out.push_str("<h2>Security schemes</h2><ul>");
            for (name, scheme) in &components.security_schemes {
                // The description as prose, the rest as the document has it.
                let mut value = serde_json::to_value(scheme).unwrap_or_default();
                let description = value
                    .as_object_mut()
                    .and_then(|o| o.remove("description"))
                    .and_then(|d| d.as_str().map(str::to_string))
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    "<li><code>{}</code>: {} <code>{}</code></li>",
                    escape(name),
                    prose(&description),
                    escape(&value.to_string())
                );
            }
            out.push_str("</ul>");
        }
    }
    out.push_str("</main></body></html>");
    out
}

type Operations<'a> = Vec<(&'static str, &'a str, &'a utoipa::openapi::path::Operation)>;

fn operations(doc: &OpenApi) -> Operations<'_> {
    let mut all = Vec::new();
    for (path, item) in &doc.paths.paths {
        for (method, operation) in [
            ("get", &item.get),
            ("post", &item.post),
            ("put", &item.put),
            ("patch", &item.patch),
            ("delete", &item.delete),
        ] {
            if let Some(operation) = operation {
                all.push((method, path.as_str(), operation));
            }
        }
    }
    all
}

fn anchor(method: &str, path: &str) -> String {
    let path: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{method}{path}")
}

/// A schema's type in a few words, with links to named schemas.
fn type_of(schema: &RefOr<Schema>) -> String {
    match schema {
        RefOr::Ref(r) => link(&r.ref_location),
        RefOr::T(Schema::Array(array)) => match &array.items {
            utoipa::openapi::schema::ArrayItems::RefOrSchema(items) => {
                format!("array of {}", type_of(items))
            }
            _ => "array".into(),
        },
        RefOr::T(Schema::Object(object)) => {
            let base = match &object.schema_type {
                SchemaType::Type(t) => type_name(t),
                SchemaType::Array(types) => {
                    types.iter().map(type_name).collect::<Vec<_>>().join(" or ")
                }
                SchemaType::AnyValue => "any".into(),
            };
            match &object.additional_properties {
                Some(extra) if object.properties.is_empty() => match extra.as_ref() {
                    utoipa::openapi::schema::AdditionalProperties::RefOr(value) => {
                        format!("map of {}", type_of(value))
                    }
                    _ => base,
                },
                _ => base,
            }
        }
        RefOr::T(Schema::OneOf(one)) => one
            .items
            .iter()
            .map(type_of)
            .collect::<Vec<_>>()
            .join(" or "),
        RefOr::T(Schema::AllOf(all)) => all
            .items
            .iter()
            .map(type_of)
            .collect::<Vec<_>>()
            .join(" and "),
        RefOr::T(_) => "any".into(),
    }
}

fn type_name(t: &Type) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "any".into())
}

fn link(location: &str) -> String {
    let name = location.rsplit('/').next().unwrap_or(location);
    format!("<a href=\"#schema-{0}\">{0}</a>", escape(name))
}

/// Text written for people, with `code` between backticks as in the
/// doc comments it comes from: escaped, and each such span as `<code>`.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut parts = text.split('`');
    if let Some(first) = parts.next() {
        out.push_str(&escape(first));
    }
    let rest: Vec<&str> = parts.collect();
    // An odd backtick out stays as it is.
    let pairs = rest.len() / 2 * 2;
    for (i, part) in rest.iter().enumerate() {
        if i >= pairs {
            out.push('`');
            out.push_str(&escape(part));
        } else if i % 2 == 0 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The CSP source that lets the docs page's one `<style>` apply (the
/// fallback policy of `headers.rs` carries it): its SHA-256, in base64.
pub fn style_source() -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()))
    )
}

const STYLE: &str = "\
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2330;background:#f7f8fa}\
header{background:#1d2330;color:#fff;padding:1rem 2rem}header a{color:#9cc4ff}\
main{max-width:70rem;margin:0 auto;padding:1rem 2rem}\
nav ul{columns:22rem;list-style:none;padding:0}nav a{text-decoration:none;color:inherit}\
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:0.5rem 1rem;margin:1rem 0}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:0.25rem 0.5rem;border-bottom:1px solid #eef0f4;vertical-align:top}\
.method{display:inline-block;min-width:4em;text-transform:uppercase;font-weight:600;font-size:0.8em;padding:0.1em 0.4em;border-radius:4px;background:#e8ecf3}\
.get{background:#dff0e1}.post{background:#dde9fb}.delete{background:#fbe0dd}.put,.patch{background:#fbf1d8}\
code{font-family:ui-monospace,monospace;overflow-wrap:anywhere}.status{font-weight:600}";

#[cfg(test)]
mod tests {
    use super::prose;

    #[test]
    fn backticks_become_code() {
        assert_eq!(
            prose("Needs the `viewer` role (or `a<b`)."),
            "Needs the <code>viewer</code> role (or <code>a&lt;b</code>)."
        );
        assert_eq!(prose("one ` alone"), "one ` alone");
        assert_eq!(prose("`a` and ` b"), "<code>a</code> and ` b");
        assert_eq!(prose("plain"), "plain");
    }
}
