//! `/api/v1/openapi.json`, generated from the code, describes what the console's JSON
//! endpoints really answer: each response of a fixture is checked against it.

use serde_json::Value;

use crate::harness::*;

/// What of `v` does not fit `schema` (JSON Schema as OpenAPI 3.1 uses it: `$ref`, `type`
/// (one or several), `enum`, `oneOf`/`anyOf`/`allOf`, `properties`, `required`, `items`,
/// `additionalProperties`). A property the schema does not name is a misfit too: the
/// schema must say everything the endpoint sends.
fn misfits(doc: &Value, schema: &Value, v: &Value, at: &str) -> Vec<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return vec![format!("{at}: no schema {name}")];
        }
        return misfits(doc, target, v, at);
    }
    let mut out = Vec::new();
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            out.extend(misfits(doc, s, v, at));
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(any) = schema[key].as_array()
            && !any.iter().any(|s| misfits(doc, s, v, at).is_empty())
        {
            out.push(format!("{at}: {v} fits none of {key}"));
        }
    }
    if let Some(e) = schema["enum"].as_array()
        && !e.contains(v)
    {
        out.push(format!("{at}: {v} is not one of {e:?}"));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let fits = |t: &str| match t {
        "null" => v.is_null(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|t| fits(t)) {
        out.push(format!("{at}: {v} is not {types:?}"));
        return out;
    }
    if let Some(obj) = v.as_object()
        && (schema.get("properties").is_some() || types.contains(&"object"))
    {
        for r in schema["required"].as_array().into_iter().flatten() {
            if let Some(r) = r.as_str()
                && !obj.contains_key(r)
            {
                out.push(format!("{at}: no {r}"));
            }
        }
        let props = schema["properties"].as_object();
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => out.extend(misfits(doc, s, val, &format!("{at}.{k}"))),
                None if schema["additionalProperties"].is_object() => out.extend(misfits(
                    doc,
                    &schema["additionalProperties"],
                    val,
                    &format!("{at}.{k}"),
                )),
                None if props.is_some() => out.push(format!("{at}.{k}: not in the schema")),
                None => {}
            }
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (i, item) in a.iter().enumerate() {
            out.extend(misfits(doc, items, item, &format!("{at}[{i}]")));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_endpoints_answer_what_their_openapi_document_says() {
    let (t, _) = crate::console::fixture().await;
    let doc = t.get("/api/v1/openapi.json").await.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    for (template, path) in [
        ("/api/v1/stacks", "/api/v1/stacks".to_string()),
        (
            "/api/v1/stacks",
            "/api/v1/stacks?state=deploying".to_string(),
        ),
        (
            "/api/v1/stacks/{owner}/{repo}/{stack}",
            format!("/api/v1/stacks/{REPO}/web"),
        ),
        (
            "/api/v1/stacks/{owner}/{repo}/{stack}",
            format!("/api/v1/stacks/{REPO}/queue"),
        ),
        ("/api/v1/runs/{id}", "/api/v1/runs/1".to_string()),
        ("/api/v1/runs/{id}", "/api/v1/runs/4".to_string()),
        ("/api/v1/runs/{id}", "/api/v1/runs/6".to_string()),
    ] {
        let schema = &doc["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        assert!(!schema.is_null(), "{template} has no 200 schema: {doc}");
        let body = t.get(&path).await.json();
        let wrong = misfits(&doc, schema, &body, "$");
        assert!(wrong.is_empty(), "{path}:\n{}", wrong.join("\n"));
    }
    // The check can fail: a response with a field the schema lacks, or of the wrong type.
    let schema = &doc["paths"]["/api/v1/runs/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    let mut run = t.get("/api/v1/runs/1").await.json();
    run["surprise"] = Value::Bool(true);
    run["id"] = Value::String("1".into());
    let wrong = misfits(&doc, schema, &run, "$");
    assert_eq!(wrong.len(), 2, "{wrong:?}");
}
