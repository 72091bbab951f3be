//! The API document: its snapshot (so every change to it is reviewed), the
//! rules every route follows, and the browsable page.

use serde_json::Value;

use crate::util::{Backend, TestDb, TestServer};

async fn document(server: &TestServer) -> Value {
    let (status, doc) = server.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    doc
}

#[tokio::test]
async fn the_api_document_matches_its_reviewed_snapshot() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let doc = document(&server).await;
    server.stop().await;
    insta::assert_snapshot!("openapi", serde_json::to_string_pretty(&doc).unwrap());
}

#[tokio::test]
async fn every_route_follows_the_document_rules() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let doc = document(&server).await;
    server.stop().await;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut faults = Vec::new();
    for (name, schema) in schemas {
        let Some(properties) = schema["properties"].as_object() else {
            continue;
        };
        for (property, value) in properties {
            let enum_like =
                ["status", "trigger", "state", "scheduler_status"].contains(&property.as_str());
            if enum_like {
                let target = value["$ref"].as_str().and_then(|r| r.rsplit('/').next());
                let is_enum = target
                    .and_then(|t| schemas.get(t))
                    .is_some_and(|s| s["enum"].is_array());
                if !is_enum {
                    faults.push(format!("{name}.{property} is not an enum: {value}"));
                }
            }
            if property.ends_with("_at")
                && value["description"] != "UTC time in milliseconds since the Unix epoch."
            {
                faults.push(format!(
                    "{name}.{property} does not say it is UTC ms: {value}"
                ));
            }
        }
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let body = &response["content"]["application/json"]["schema"]["$ref"];
                    // Only an invalid workflow's 422 lists its faults; a
                    // refused webhook delivery is answered as accepted ones
                    // are (a hook that does not exist, with the error body).
                    let expected = if status == "422"
                        && method == "post"
                        && path == "/api/v1/workflows"
                    {
                        "#/components/schemas/InvalidWorkflow"
                    } else if method == "post" && path == "/api/v1/hooks/{id}" && status != "404" {
                        "#/components/schemas/DeliveryAnswer"
                    } else {
                        "#/components/schemas/ErrorBody"
                    };
                    if body != expected {
                        faults.push(format!(
                            "{method} {path} {status} has no error body: {response}"
                        ));
                    }
                }
            }
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
    assert_eq!(
        schemas["RunStatus"]["enum"],
        serde_json::json!([
            "queued",
            "starting_up",
            "running",
            "success",
            "error",
            "cancelled",
            "shutting_down",
            "unknown"
        ])
    );
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["session_cookie"]["in"], "cookie", "{schemes}");
}

#[tokio::test]
async fn the_docs_page_shows_every_operation_and_schema() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let doc = document(&server).await;
    let response = reqwest::get(server.url("/api/v1/docs")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    server.stop().await;
    assert!(
        !page.contains("<script"),
        "the page needs nothing from the network"
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let heading = format!(
                "<span class=\"method {method}\">{method}</span> <code>{}</code></h2>",
                path.replace('&', "&amp;")
            );
            assert!(page.contains(&heading), "no section for {method} {path}");
        }
    }
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            page.contains(&format!("id=\"schema-{name}\"")),
            "no schema {name}"
        );
    }
}
