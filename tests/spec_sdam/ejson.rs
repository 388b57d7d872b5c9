//! Extended JSON (as the spec files write it) to BSON. bson's own converter sits behind a
//! feature this crate does not enable, and the files only use a handful of wrappers.

use bson::oid::ObjectId;
use bson::{Bson, DateTime, Document};
use serde_json::{Map, Value};

pub fn to_bson(value: &Value) -> Result<Bson, String> {
    Ok(match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => number(n)?,
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(to_bson).collect::<Result<_, _>>()?),
        Value::Object(map) => match wrapper(map)? {
            Some(b) => b,
            None => Bson::Document(object(map)?),
        },
    })
}

pub fn to_document(value: &Value) -> Result<Document, String> {
    match value {
        Value::Object(map) => object(map),
        other => Err(format!("expected a JSON object, got {other}")),
    }
}

fn object(map: &Map<String, Value>) -> Result<Document, String> {
    map.iter().map(|(k, v)| Ok((k.clone(), to_bson(v)?))).collect()
}

fn number(n: &serde_json::Number) -> Result<Bson, String> {
    if let Some(i) = n.as_i64() {
        return Ok(i32::try_from(i).map_or(Bson::Int64(i), Bson::Int32));
    }
    n.as_f64()
        .map(Bson::Double)
        .ok_or_else(|| format!("unrepresentable number {n}"))
}

/// `{"$oid": ..}`, `{"$numberLong": ..}`, `{"$numberInt": ..}`, `{"$numberDouble": ..}`,
/// `{"$date": ..}`; anything else is a plain document.
fn wrapper(map: &Map<String, Value>) -> Result<Option<Bson>, String> {
    let mut entries = map.iter();
    let (Some((key, value)), None) = (entries.next(), entries.next()) else {
        return Ok(None);
    };
    let text = || value.as_str().ok_or_else(|| format!("{key} wants a string"));
    let bad = |e: &dyn std::fmt::Display| format!("bad {key}: {e}");
    Ok(Some(match key.as_str() {
        "$oid" => Bson::ObjectId(ObjectId::parse_str(text()?).map_err(|e| bad(&e))?),
        "$numberLong" => Bson::Int64(text()?.parse().map_err(|e| bad(&e))?),
        "$numberInt" => Bson::Int32(text()?.parse().map_err(|e| bad(&e))?),
        "$numberDouble" => Bson::Double(text()?.parse().map_err(|e| bad(&e))?),
        "$date" => Bson::DateTime(date(value)?),
        _ => return Ok(None),
    }))
}

fn date(value: &Value) -> Result<DateTime, String> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(DateTime::from_millis)
            .ok_or_else(|| format!("bad $date {n}")),
        Value::Object(map) => match wrapper(map)? {
            Some(Bson::Int64(ms)) => Ok(DateTime::from_millis(ms)),
            _ => Err("bad $date".into()),
        },
        Value::String(s) => DateTime::parse_rfc3339_str(s).map_err(|e| format!("bad $date: {e}")),
        other => Err(format!("bad $date {other}")),
    }
}

/// An integer from a plain JSON number or a `$numberLong`/`$numberInt` wrapper.
pub fn int(value: &Value) -> Option<i64> {
    match to_bson(value).ok()? {
        Bson::Int32(i) => Some(i64::from(i)),
        Bson::Int64(i) => Some(i),
        _ => None,
    }
}
