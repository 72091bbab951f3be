//! A pipeline's parameters: their declarations (type, default or required,
//! description, where a webhook's payload supplies them) and the check of
//! the values a run is requested with, which reports every fault at once.
//!
//! Values travel as strings: they reach steps as environment variables and
//! conditions compare them as text. A number keeps the text it was given;
//! a boolean is `true` or `false`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest value one param may take, in bytes: values become environment
/// variables, and a kernel refuses a single one past 128 KiB.
pub const MAX_PARAM_VALUE_BYTES: usize = 64 * 1024;
/// Most segments in a `from: body.a.b.c` path.
pub const MAX_FROM_DEPTH: usize = 16;
/// Most options of a `choice` param.
pub const MAX_OPTIONS: usize = 256;

/// What values a param takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// Any text.
    #[default]
    String,
    /// A decimal number, like `3`, `-1.5` or `2e3`.
    Number,
    /// `true` or `false`.
    Boolean,
    /// One of the declared `options`.
    Choice,
}

impl ParamType {
    /// The names a spec may write.
    pub const NAMES: &[&str] = &["string", "number", "boolean", "choice"];

    /// The type named `name` in a spec.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "string" => Self::String,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            "choice" => Self::Choice,
            _ => return None,
        })
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Choice => "choice",
        })
    }
}

/// One declared param. Written in a spec either as a plain default
/// (`version: "1.0"`, a string param) or as a mapping with `type`,
/// `default` or `required`, `description`, `options` and `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ParamWire", into = "ParamWire")]
pub struct Param {
    /// What values it takes.
    pub kind: ParamType,
    /// Its value when a run does not give one; `None` when `required`.
    pub default: Option<String>,
    /// A run must give a value.
    pub required: bool,
    /// For people (and the run form).
    pub description: String,
    /// The values a `choice` param may take.
    pub options: Vec<String>,
    /// Where a webhook delivery's JSON body supplies the value: the field
    /// names after `body.`, like `["repository", "full_name"]`.
    pub from: Option<Vec<String>>,
}

impl Param {
    /// A string param with a default: what `name: value` declares.
    pub fn plain(default: impl Into<String>) -> Self {
        Self {
            kind: ParamType::String,
            default: Some(default.into()),
            required: false,
            description: String::new(),
            options: Vec::new(),
            from: None,
        }
    }

    /// Why `value` is not a value of this param, if it is not; `value` as
    /// it will be kept otherwise (a boolean written in any case as `true`
    /// or `false`).
    pub fn check(&self, value: &str) -> Result<String, String> {
        if value.contains('\0') {
            return Err("holds a NUL character, which no environment variable can".into());
        }
        if value.len() > MAX_PARAM_VALUE_BYTES {
            return Err(format!(
                "is longer than {} KiB",
                MAX_PARAM_VALUE_BYTES / 1024
            ));
        }
        match self.kind {
            ParamType::String => Ok(value.to_string()),
            ParamType::Number => {
                let t = value.trim();
                match t.parse::<f64>() {
                    Ok(n) if n.is_finite() && !t.is_empty() && looks_decimal(t) => {
                        Ok(t.to_string())
                    }
                    _ => Err(format!("{} is not a number", quote(value))),
                }
            }
            ParamType::Boolean => match value.trim().to_ascii_lowercase().as_str() {
                "true" => Ok("true".into()),
                "false" => Ok("false".into()),
                _ => Err(format!("{} is not true or false", quote(value))),
            },
            ParamType::Choice => {
                if self.options.iter().any(|o| o == value) {
                    Ok(value.to_string())
                } else {
                    Err(format!(
                        "{} is not one of the options: {}",
                        quote(value),
                        self.options.join(", ")
                    ))
                }
            }
        }
    }
}

/// Rust's float parser also takes `inf`, `NaN` and `infinity`; a number
/// param takes digits, a sign, a point and an exponent only.
fn looks_decimal(t: &str) -> bool {
    t.chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
}

fn quote(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// A plain default stays a plain string on the wire, so specs and
/// dispatches written before params had types read the same.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ParamWire {
    Plain(String),
    Typed {
        #[serde(rename = "type", default)]
        kind: ParamType,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        required: bool,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        description: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        options: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Vec<String>>,
    },
}

impl From<ParamWire> for Param {
    fn from(w: ParamWire) -> Self {
        match w {
            ParamWire::Plain(default) => Param::plain(default),
            ParamWire::Typed {
                kind,
                default,
                required,
                description,
                options,
                from,
            } => Param {
                kind,
                default,
                required,
                description,
                options,
                from,
            },
        }
    }
}

impl From<Param> for ParamWire {
    fn from(p: Param) -> Self {
        match p {
            Param {
                kind: ParamType::String,
                default: Some(default),
                required: false,
                description,
                options,
                from: None,
            } if description.is_empty() && options.is_empty() => ParamWire::Plain(default),
            Param {
                kind,
                default,
                required,
                description,
                options,
                from,
            } => ParamWire::Typed {
                kind,
                default,
                required,
                description,
                options,
                from,
            },
        }
    }
}

/// One thing wrong with the values a run was requested with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[error("param {param:?}: {message}")]
pub struct ParamFault {
    /// The param's name.
    pub param: String,
    /// What is wrong.
    pub message: String,
}

/// The values a run gets: `given` checked against `declared`, defaults for
/// the rest. Every fault is reported: unknown names, missing required
/// params, values of the wrong type, choices not offered.
pub fn resolve(
    declared: &BTreeMap<String, Param>,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Vec<ParamFault>> {
    let mut faults = Vec::new();
    for name in given.keys().filter(|n| !declared.contains_key(*n)) {
        let known: Vec<&str> = declared.keys().map(String::as_str).collect();
        faults.push(ParamFault {
            param: name.clone(),
            message: if known.is_empty() {
                "the pipeline declares no params".into()
            } else {
                format!("no such param; the pipeline declares: {}", known.join(", "))
            },
        });
    }
    let mut values = BTreeMap::new();
    for (name, param) in declared {
        // An empty or blank value is no value: a form left empty, or a
        // webhook's empty field, does not satisfy `required`.
        let given = given
            .get(name)
            .filter(|v| !(param.required && v.trim().is_empty()));
        let value = match (given, &param.default) {
            (Some(v), _) => v,
            (None, Some(d)) => d,
            (None, None) => {
                faults.push(ParamFault {
                    param: name.clone(),
                    message: format!("required {} param without a value", param.kind),
                });
                continue;
            }
        };
        match param.check(value) {
            Ok(v) => {
                values.insert(name.clone(), v);
            }
            Err(message) => faults.push(ParamFault {
                param: name.clone(),
                message,
            }),
        }
    }
    if faults.is_empty() {
        Ok(values)
    } else {
        Err(faults)
    }
}

/// The values a webhook delivery's JSON body gives the params that declare
/// a `from`. A field that is absent or null gives nothing (the default, or
/// a fault for a required param); a string is taken as is, a number or a
/// boolean as its JSON text, an object or a list as compact JSON.
pub fn from_body(
    declared: &BTreeMap<String, Param>,
    body: &serde_json::Value,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, param) in declared {
        let Some(path) = &param.from else { continue };
        let mut at = body;
        let mut found = true;
        for seg in path {
            let next = match at {
                serde_json::Value::Object(map) => map.get(seg),
                serde_json::Value::Array(list) => {
                    seg.parse::<usize>().ok().and_then(|i| list.get(i))
                }
                _ => None,
            };
            match next {
                Some(v) => at = v,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let value = match at {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.insert(name.clone(), value);
    }
    out
}

/// Parses `body.a.b.0` into its segments after `body`; `Err` says why not.
pub fn parse_from(text: &str) -> Result<Vec<String>, String> {
    let mut parts = text.split('.');
    if parts.next() != Some("body") {
        return Err(format!(
            "{} does not start with \"body.\": write a path like body.ref or body.repository.full_name",
            quote(text)
        ));
    }
    let segs: Vec<String> = parts.map(str::to_string).collect();
    if segs.is_empty() {
        return Err("a path needs at least one field after \"body.\"".into());
    }
    if segs.len() > MAX_FROM_DEPTH {
        return Err(format!(
            "a path has at most {MAX_FROM_DEPTH} fields after \"body.\""
        ));
    }
    if let Some(bad) = segs.iter().find(|s| {
        s.is_empty()
            || s.len() > 128
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(format!(
            "field {} in the path: use letters, digits, \"_\" and \"-\"",
            quote(bad)
        ));
    }
    Ok(segs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: ParamType, default: Option<&str>, options: &[&str]) -> Param {
        Param {
            kind,
            default: default.map(str::to_string),
            required: default.is_none(),
            description: String::new(),
            options: options.iter().map(|s| s.to_string()).collect(),
            from: None,
        }
    }

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_fault_is_reported_at_once() {
        let declared = BTreeMap::from([
            ("tag".to_string(), typed(ParamType::String, None, &[])),
            (
                "count".to_string(),
                typed(ParamType::Number, Some("1"), &[]),
            ),
            (
                "dry".to_string(),
                typed(ParamType::Boolean, Some("false"), &[]),
            ),
            (
                "env".to_string(),
                typed(ParamType::Choice, Some("dev"), &["dev", "prod"]),
            ),
        ]);
        let faults = resolve(
            &declared,
            &given(&[
                ("count", "many"),
                ("dry", "yes"),
                ("env", "staging"),
                ("typo", "x"),
            ]),
        )
        .unwrap_err();
        let text: Vec<String> = faults.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "param \"typo\": no such param; the pipeline declares: count, dry, env, tag",
                "param \"count\": \"many\" is not a number",
                "param \"dry\": \"yes\" is not true or false",
                "param \"env\": \"staging\" is not one of the options: dev, prod",
                "param \"tag\": required string param without a value",
            ]
        );
        // An empty or blank value does not satisfy `required`.
        for blank in ["", "  ", "\t\n"] {
            let faults = resolve(&declared, &given(&[("tag", blank)])).unwrap_err();
            let text: Vec<String> = faults.iter().map(ToString::to_string).collect();
            assert_eq!(
                text,
                ["param \"tag\": required string param without a value"],
                "{blank:?}"
            );
        }
        let ok = resolve(
            &declared,
            &given(&[("tag", "v1"), ("dry", "TRUE"), ("count", " 2.5e1 ")]),
        )
        .unwrap();
        assert_eq!(
            ok,
            given(&[
                ("count", "2.5e1"),
                ("dry", "true"),
                ("env", "dev"),
                ("tag", "v1")
            ])
        );
        for bad in ["inf", "NaN", "", "1e999", "0x10"] {
            assert!(declared["count"].check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_params_stay_plain_on_the_wire() {
        let params = BTreeMap::from([
            ("a".to_string(), Param::plain("1.0")),
            (
                "b".to_string(),
                typed(ParamType::Choice, Some("x"), &["x", "y"]),
            ),
        ]);
        let json = serde_json::to_string(&params).unwrap();
        assert_eq!(
            json,
            r#"{"a":"1.0","b":{"type":"choice","default":"x","options":["x","y"]}}"#
        );
        assert_eq!(
            serde_json::from_str::<BTreeMap<String, Param>>(&json).unwrap(),
            params
        );
    }

    #[test]
    fn body_fields_become_values() {
        let mut declared = BTreeMap::new();
        for (name, path) in [
            ("r", "body.ref"),
            ("n", "body.repository.full_name"),
            ("first", "body.commits.0.id"),
            ("num", "body.number"),
            ("obj", "body.repository"),
            ("gone", "body.nothing.here"),
            ("null", "body.nil"),
        ] {
            let mut p = Param::plain("d");
            p.from = Some(parse_from(path).unwrap());
            declared.insert(name.to_string(), p);
        }
        let body = serde_json::json!({
            "ref": "refs/heads/main; rm -rf ~",
            "repository": {"full_name": "o/r"},
            "commits": [{"id": "abc"}],
            "number": 7,
            "nil": null,
        });
        let got = from_body(&declared, &body);
        assert_eq!(
            got,
            given(&[
                ("first", "abc"),
                ("n", "o/r"),
                ("num", "7"),
                ("obj", r#"{"full_name":"o/r"}"#),
                ("r", "refs/heads/main; rm -rf ~"),
            ])
        );
        assert!(parse_from("headers.x").is_err());
        assert!(parse_from("body").is_err());
        assert!(parse_from("body..x").is_err());
        assert!(parse_from(&format!("body{}", ".a".repeat(17))).is_err());
    }
}
