//! Parts of a body as the server sent them. `-o json|yaml` prints what the
//! server sent, and a typed reading drops the fields this client does not
//! know (a newer server's), so what scripts get is cut from the body
//! itself; the typed reading of the same part is only for tables, filters
//! and lookups. With the feed's check of a message's `type`
//! (`feed.rs`), the only place in the CLI that reads JSON by field name.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Exit, fail};

/// A body, or a part of one, read as its xene-api type.
pub fn read<T: DeserializeOwned>(value: &Value) -> anyhow::Result<T> {
    T::deserialize(value).map_err(|e| {
        fail(
            Exit::Failed,
            format!("the server's answer is not what xenectl reads: {e}"),
        )
    })
}

/// The items of the list `field` of a body, each as sent, with its reading
/// as `T`. A body without the list has no items.
pub fn items<T: DeserializeOwned>(body: &Value, field: &str) -> anyhow::Result<Vec<(T, Value)>> {
    let Some(items) = body.get(field).and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|item| Ok((read(item)?, item.clone())))
        .collect()
}

/// The part of a body under `path`, field by field; `Null` when absent.
pub fn part(body: &Value, path: &[&str]) -> Value {
    path.iter()
        .try_fold(body, |value, field| value.get(field))
        .cloned()
        .unwrap_or(Value::Null)
}

/// `value` with `field` set to `to` (a value of the CLI's own beside what
/// the server sent); a value that is not an object is left as it is.
pub fn with_field(mut value: Value, field: &str, to: impl Into<Value>) -> Value {
    if let Value::Object(fields) = &mut value {
        fields.insert(field.to_string(), to.into());
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use xene_api::agents::AgentList;

    #[test]
    fn items_keep_the_fields_this_client_does_not_know() {
        let body = json!({"items": [{"a": 1, "newer": "x"}, {"a": 2}]});
        let items: Vec<(Value, Value)> = items(&body, "items").unwrap();
        assert_eq!(items[0].1, json!({"a": 1, "newer": "x"}));
        assert_eq!(items[1].1, json!({"a": 2}));
        assert!(
            super::items::<Value>(&json!({}), "items")
                .unwrap()
                .is_empty()
        );
        // An item that is not the type is an error, as the whole body's is.
        let bad = json!({"agents": [{"id": 1}]});
        assert!(super::items::<xene_api::agents::Agent>(&bad, "agents").is_err());
        assert!(read::<AgentList>(&json!({"agents": 1})).is_err());
    }

    #[test]
    fn parts_and_fields() {
        let body = json!({"spec": {"pipelines": {"p": {"tasks": {}}}}});
        assert_eq!(
            part(&body, &["spec", "pipelines", "p"]),
            json!({"tasks": {}})
        );
        assert_eq!(part(&body, &["spec", "pipelines", "q"]), Value::Null);
        assert_eq!(
            with_field(json!({"name": "p"}), "workflow", "w"),
            json!({"name": "p", "workflow": "w"})
        );
        assert_eq!(with_field(json!(1), "workflow", "w"), json!(1));
    }
}
