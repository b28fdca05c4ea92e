//! Kubernetes objects as etcd holds them, decoded to the JSON kubectl shows.
//!
//! kube-apiserver stores built-in types as protobuf in the `k8s\0` envelope (a
//! runtime.Unknown naming apiVersion and kind, around the object's bytes) and custom resources
//! as JSON. The protobuf is decoded with `types.json`: the shape of every stored type, read by
//! reflection from the published Go types (engine/kube/schema): protobuf field numbers, JSON
//! names, omitempty and inline rules, and which fields are pointers — so a stored zero that
//! means something (`replicas: 0`) is shown and a Go zero that means "unset" is not, as
//! kubectl would print them.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use crate::snapshot::wire::{Wire, fields};

/// What a stored value turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// An object (apiVersion and kind first), ready to print.
    Object(Value),
    /// Encrypted at rest: `k8s:enc:<provider>:v1:<key name>:`.
    Encrypted { provider: String, key: String },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("the value is neither Kubernetes protobuf (k8s\\0) nor JSON")]
    Unknown,
    #[error("the protobuf envelope is damaged")]
    Envelope,
    #[error("{api_version} {kind} is not a type this runbook knows (Kubernetes 1.34's types)")]
    UnknownKind { api_version: String, kind: String },
    #[error("{ty}: damaged protobuf")]
    Damaged { ty: String },
    #[error("{ty}: {what}")]
    Bad { ty: String, what: String },
    #[error("the JSON value does not parse: {0}")]
    Json(String),
}

/// Decodes one value read from etcd (already decrypted, if it was encrypted).
pub fn decode(value: &[u8]) -> Result<Stored, DecodeError> {
    if let Some((provider, key)) = crate::snapshot::contents::encryption_of(value) {
        return Ok(Stored::Encrypted {
            provider: provider.to_string(),
            key: key.to_string(),
        });
    }
    if let Some(envelope) = value.strip_prefix(b"k8s\0") {
        return decode_envelope(envelope).map(Stored::Object);
    }
    if value.first() == Some(&b'{') {
        let mut object: Value =
            serde_json::from_slice(value).map_err(|e| DecodeError::Json(e.to_string()))?;
        served(&mut object);
        return Ok(Stored::Object(sorted(object)));
    }
    Err(DecodeError::Unknown)
}

/// runtime.Unknown: 1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType.
fn decode_envelope(envelope: &[u8]) -> Result<Value, DecodeError> {
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for f in fields(envelope) {
        match f.map_err(|()| DecodeError::Envelope)? {
            (1, Wire::Bytes(type_meta)) => {
                for f in fields(type_meta) {
                    match f.map_err(|()| DecodeError::Envelope)? {
                        (1, Wire::Bytes(b)) => api_version = String::from_utf8_lossy(b).into(),
                        (2, Wire::Bytes(b)) => kind = String::from_utf8_lossy(b).into(),
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            (3, Wire::Bytes(b)) if !b.is_empty() => {
                return Err(DecodeError::Bad {
                    ty: kind,
                    what: format!("content encoding {:?}", String::from_utf8_lossy(b)),
                });
            }
            _ => {}
        }
    }
    let Some(ty) = TYPES.kinds.get(&format!("{api_version} {kind}")) else {
        return Err(DecodeError::UnknownKind { api_version, kind });
    };
    let mut object = Map::new();
    object.insert("apiVersion".into(), api_version.into());
    object.insert("kind".into(), kind.into());
    let Value::Object(body) = message(ty, raw)? else {
        return Err(DecodeError::Bad {
            ty: ty.clone(),
            what: "not an object".into(),
        });
    };
    object.extend(body);
    let mut object = Value::Object(object);
    served(&mut object);
    Ok(sorted(object))
}

/// The version kube-apiserver serves, where it stores another: CustomResourceDefinitions are
/// still stored as apiextensions.k8s.io/v1beta1, which no apiserver since 1.22 accepts, so they
/// are shown (and re-created) as v1, converted the way kube-apiserver converts them: the
/// top-level schema, subresources and printer columns of v1beta1 move into each version.
fn served(object: &mut Value) {
    if object["apiVersion"] != "apiextensions.k8s.io/v1beta1"
        || object["kind"] != "CustomResourceDefinition"
    {
        return;
    }
    object["apiVersion"] = "apiextensions.k8s.io/v1".into();
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.remove("version");
    let schema = spec.remove("validation");
    let subresources = spec.remove("subresources");
    let columns = spec.remove("additionalPrinterColumns");
    if spec.get("preserveUnknownFields") == Some(&Value::Bool(false)) {
        spec.remove("preserveUnknownFields");
    }
    // v1beta1 spells a printer column's path `JSONPath`; v1 `jsonPath`.
    let v1_columns = |c: Value| -> Value {
        let mut c = c;
        if let Some(list) = c.as_array_mut() {
            for col in list.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(p) = col.remove("JSONPath") {
                    col.insert("jsonPath".into(), p);
                }
            }
        }
        c
    };
    if let Some(versions) = spec.get_mut("versions").and_then(Value::as_array_mut) {
        for v in versions.iter_mut().filter_map(Value::as_object_mut) {
            for (field, top) in [("schema", &schema), ("subresources", &subresources)] {
                if let Some(top) = top.as_ref().filter(|_| !v.contains_key(field)) {
                    v.insert(field.into(), top.clone());
                }
            }
            let own = v
                .remove("additionalPrinterColumns")
                .or_else(|| columns.clone());
            if let Some(c) = own {
                v.insert("additionalPrinterColumns".into(), v1_columns(c));
            }
        }
    }
    // v1beta1 keeps the webhook's settings beside the strategy; v1 under `webhook`, and only
    // for the Webhook strategy.
    if let Some(conv) = spec.get_mut("conversion").and_then(Value::as_object_mut) {
        let client = conv.remove("webhookClientConfig");
        let reviews = conv.remove("conversionReviewVersions");
        if conv.get("strategy").and_then(Value::as_str) == Some("Webhook") {
            let mut webhook = Map::new();
            if let Some(c) = client {
                webhook.insert("clientConfig".into(), c);
            }
            if let Some(r) = reviews {
                webhook.insert("conversionReviewVersions".into(), r);
            }
            conv.insert("webhook".into(), Value::Object(webhook));
        }
    }
}

/// Keys in order at every level, as kubectl prints objects (it goes through unstructured maps).
pub fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The committed type shapes (see engine/kube/schema/main.go).
#[derive(Deserialize)]
struct Types {
    /// "GROUP/VERSION Kind" (the core group's is "v1 Kind") → type name.
    kinds: HashMap<String, String>,
    types: HashMap<String, Type>,
}

#[derive(Deserialize)]
struct Type {
    #[serde(default)]
    fields: Vec<Field>,
    /// Writes its own JSON: decoded by `special`.
    #[serde(default)]
    marshals: bool,
}

#[derive(Deserialize)]
struct Field {
    #[serde(default)]
    tag: u32,
    json: String,
    #[serde(default)]
    omitempty: bool,
    #[serde(default)]
    omitzero: bool,
    #[serde(default)]
    inline: bool,
    shape: Shape,
}

#[derive(Deserialize)]
struct Shape {
    k: Kind,
    #[serde(default)]
    t: String,
    e: Option<Box<Shape>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Bool,
    Int,
    Uint,
    Float,
    String,
    Bytes,
    Msg,
    List,
    Map,
    Ptr,
    Any,
}

static TYPES: LazyLock<Types> = LazyLock::new(|| {
    serde_json::from_str(include_str!("types.json")).expect("types.json is generated valid")
});

/// One message of type `ty` to its JSON, by Go's encoding/json rules.
fn message(ty: &str, bytes: &[u8]) -> Result<Value, DecodeError> {
    let t = TYPES.types.get(ty).ok_or_else(|| DecodeError::Bad {
        ty: ty.into(),
        what: "no shape recorded for this type".into(),
    })?;
    if t.marshals {
        return special(ty, bytes);
    }
    // The occurrences of each field number, in order (a repeated field is written once per
    // element, a map once per entry).
    let mut seen: HashMap<u32, Vec<Wire>> = HashMap::new();
    for f in fields(bytes) {
        let (n, w) = f.map_err(|()| DecodeError::Damaged { ty: ty.into() })?;
        seen.entry(n).or_default().push(w);
    }
    let mut out = Map::new();
    for field in &t.fields {
        let present = seen.get(&field.tag).filter(|_| field.tag > 0);
        let value = match present {
            Some(ws) => occurrences(ty, &field.shape, ws)?,
            None => zero(&field.shape),
        };
        if field.inline {
            if let Value::Object(m) = value {
                out.extend(m);
            }
            continue;
        }
        if (field.omitempty && empty(&field.shape, &value))
            || (field.omitzero && zero_value(&field.shape, &value))
        {
            continue;
        }
        out.insert(field.json.clone(), value);
    }
    Ok(Value::Object(out))
}

/// A present field's value from its occurrences.
fn occurrences(ty: &str, shape: &Shape, ws: &[Wire]) -> Result<Value, DecodeError> {
    match shape.k {
        Kind::List => {
            let e = elem(ty, shape)?;
            let mut items = Vec::new();
            for w in ws {
                match (w, e.k) {
                    // A packed run of numbers.
                    (Wire::Bytes(b), Kind::Int | Kind::Uint | Kind::Bool | Kind::Float) => {
                        for f in fields_packed(b, e.k) {
                            items.push(scalar(ty, e, f?)?);
                        }
                    }
                    _ => items.push(one(ty, e, *w)?),
                }
            }
            Ok(Value::Array(items))
        }
        Kind::Map => {
            let e = elem(ty, shape)?;
            let mut m = Map::new();
            for w in ws {
                let Wire::Bytes(entry) = w else {
                    return Err(DecodeError::Damaged { ty: ty.into() });
                };
                let (mut k, mut v) = (String::new(), None);
                for f in fields(entry) {
                    match f.map_err(|()| DecodeError::Damaged { ty: ty.into() })? {
                        (1, Wire::Bytes(b)) => k = String::from_utf8_lossy(b).into(),
                        (2, w) => v = Some(one(ty, e, w)?),
                        _ => {}
                    }
                }
                m.insert(k, v.unwrap_or_else(|| zero(e)));
            }
            Ok(Value::Object(m))
        }
        // The last occurrence wins for a singular field (protobuf's merge rule).
        _ => one(ty, shape, *ws.last().expect("present means at least one")),
    }
}

/// Unpacks a packed repeated scalar (written as one length-delimited run).
fn fields_packed(mut b: &[u8], k: Kind) -> Vec<Result<Wire<'_>, DecodeError>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if k == Kind::Float {
            match b.get(..8) {
                Some(x) => {
                    out.push(Ok(Wire::Fixed64(u64::from_le_bytes(
                        x.try_into().expect("8 bytes"),
                    ))));
                    b = &b[8..];
                }
                None => {
                    out.push(Err(DecodeError::Damaged {
                        ty: "packed".into(),
                    }));
                    break;
                }
            }
        } else {
            match crate::snapshot::wire::varint(b) {
                Some((v, rest)) => {
                    out.push(Ok(Wire::Varint(v)));
                    b = rest;
                }
                None => {
                    out.push(Err(DecodeError::Damaged {
                        ty: "packed".into(),
                    }));
                    break;
                }
            }
        }
    }
    out
}

fn elem<'s>(ty: &str, shape: &'s Shape) -> Result<&'s Shape, DecodeError> {
    shape.e.as_deref().ok_or_else(|| DecodeError::Bad {
        ty: ty.into(),
        what: "a list or map without an element type".into(),
    })
}

/// One value of `shape` from one occurrence.
fn one(ty: &str, shape: &Shape, w: Wire) -> Result<Value, DecodeError> {
    match shape.k {
        Kind::Ptr => one(ty, elem(ty, shape)?, w),
        Kind::Msg => match w {
            Wire::Bytes(b) => message(&shape.t, b),
            _ => Err(DecodeError::Damaged { ty: ty.into() }),
        },
        Kind::List | Kind::Map => occurrences(ty, shape, &[w]),
        _ => scalar(ty, shape, w),
    }
}

fn scalar(ty: &str, shape: &Shape, w: Wire) -> Result<Value, DecodeError> {
    let damaged = || DecodeError::Damaged { ty: ty.into() };
    Ok(match (shape.k, w) {
        (Kind::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        // int32 and int64 are both written as the two's complement varint.
        (Kind::Int, Wire::Varint(v)) => Value::from(v as i64),
        (Kind::Uint, Wire::Varint(v)) => Value::from(v),
        (Kind::Float, Wire::Fixed64(v)) => float(f64::from_bits(v)),
        (Kind::Float, Wire::Fixed32(v)) => float(f64::from(f32::from_bits(v))),
        (Kind::String, Wire::Bytes(b)) => Value::String(String::from_utf8_lossy(b).into()),
        (Kind::Bytes, Wire::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        _ => return Err(damaged()),
    })
}

/// Go writes a whole float64 without a fraction (`5`, not `5.0`).
fn float(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        Value::from(f as i64)
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// The JSON of a field the bytes do not carry: Go's zero value for its type.
fn zero(shape: &Shape) -> Value {
    match shape.k {
        Kind::Bool => Value::Bool(false),
        Kind::Int | Kind::Uint | Kind::Float => Value::from(0),
        Kind::String => Value::String(String::new()),
        Kind::Msg => message(&shape.t, &[]).unwrap_or(Value::Null),
        Kind::Bytes | Kind::List | Kind::Map | Kind::Ptr | Kind::Any => Value::Null,
    }
}

/// encoding/json's omitempty: false, 0, "", a nil pointer, an empty list or map. A struct is
/// never empty; a present pointer is never empty, whatever it points to.
fn empty(shape: &Shape, v: &Value) -> bool {
    match shape.k {
        Kind::Msg => false,
        Kind::Ptr | Kind::Any => v.is_null(),
        Kind::List => v.as_array().is_none_or(Vec::is_empty),
        Kind::Map => v.as_object().is_none_or(Map::is_empty),
        Kind::Bytes => v.as_str().is_none_or(str::is_empty) || v.is_null(),
        _ => zero_value(shape, v),
    }
}

/// encoding/json's omitzero: the type's zero value (a zero time is `null` here).
fn zero_value(shape: &Shape, v: &Value) -> bool {
    match shape.k {
        Kind::Msg => *v == zero(shape),
        Kind::Ptr | Kind::Any | Kind::Bytes | Kind::List | Kind::Map => v.is_null(),
        _ => match v {
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            _ => v.is_null(),
        },
    }
}

/// The types that write their own JSON, by their protobuf layout.
fn special(ty: &str, bytes: &[u8]) -> Result<Value, DecodeError> {
    let name = ty.rsplit_once('.').map_or(ty, |(_, n)| n);
    let package = ty.rsplit_once('.').map_or("", |(p, _)| p);
    let damaged = || DecodeError::Damaged { ty: ty.into() };
    // Every field by number, the last occurrence of each (all of these are singular but the
    // lists named below).
    let mut varints: HashMap<u32, u64> = HashMap::new();
    let mut bytes_of: HashMap<u32, Vec<&[u8]>> = HashMap::new();
    for f in fields(bytes) {
        match f.map_err(|()| damaged())? {
            (n, Wire::Varint(v)) => {
                varints.insert(n, v);
            }
            (n, Wire::Bytes(b)) => bytes_of.entry(n).or_default().push(b),
            _ => return Err(damaged()),
        }
    }
    let last = |n: u32| bytes_of.get(&n).and_then(|v| v.last().copied());
    let text = |n: u32| last(n).map(|b| String::from_utf8_lossy(b).into_owned());
    let raw_json = |n: u32| -> Result<Value, DecodeError> {
        match last(n) {
            None | Some([]) => Ok(Value::Null),
            Some(b) => serde_json::from_slice(b).map_err(|e| DecodeError::Bad {
                ty: ty.into(),
                what: format!("embedded JSON does not parse: {e}"),
            }),
        }
    };
    let schema = |b: &[u8]| message(&format!("{package}.JSONSchemaProps"), b);
    Ok(match name {
        // seconds (1) and nanos (2) since the epoch; zero is `null`.
        "Time" | "MicroTime" => {
            let secs = varints.get(&1).copied().unwrap_or(0) as i64;
            let nanos = varints.get(&2).copied().unwrap_or(0) as i64;
            if secs == 0 && nanos == 0 {
                Value::Null
            } else {
                Value::String(rfc3339(secs, nanos, name == "MicroTime"))
            }
        }
        "Duration" => Value::String(go_duration(varints.get(&1).copied().unwrap_or(0) as i64)),
        "Quantity" => Value::String(text(1).unwrap_or_else(|| "0".into())),
        // type (0 int, 1 string), intVal, strVal.
        "IntOrString" => match varints.get(&1).copied().unwrap_or(0) {
            1 => Value::String(text(3).unwrap_or_default()),
            _ => Value::from(varints.get(&2).copied().unwrap_or(0) as i32),
        },
        "RawExtension" | "FieldsV1" | "JSON" => raw_json(1)?,
        // schema (1) or a list of schemas (2).
        "JSONSchemaPropsOrArray" => match (last(1), bytes_of.get(&2)) {
            (Some(s), _) => schema(s)?,
            (None, Some(list)) => {
                Value::Array(list.iter().map(|b| schema(b)).collect::<Result<_, _>>()?)
            }
            (None, None) => Value::Null,
        },
        // allows (1) or a schema (2).
        "JSONSchemaPropsOrBool" => match last(2) {
            Some(s) => schema(s)?,
            None => Value::Bool(varints.get(&1).copied().unwrap_or(0) != 0),
        },
        // a schema (1) or a list of property names (2).
        "JSONSchemaPropsOrStringArray" => match (bytes_of.get(&2), last(1)) {
            (Some(props), _) => Value::Array(
                props
                    .iter()
                    .map(|b| Value::String(String::from_utf8_lossy(b).into()))
                    .collect(),
            ),
            (None, Some(s)) => schema(s)?,
            (None, None) => Value::Null,
        },
        _ => {
            return Err(DecodeError::Bad {
                ty: ty.into(),
                what: "writes its own JSON in a way this runbook does not know".into(),
            });
        }
    })
}

/// `2026-12-02T04:54:00Z` (Time, whole seconds) or `...00.123456Z` (MicroTime), in UTC.
fn rfc3339(secs: i64, nanos: i64, micro: bool) -> String {
    let t = chrono::DateTime::from_timestamp(secs, u32::try_from(nanos).unwrap_or(0))
        .unwrap_or_default();
    if micro {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

/// Go's time.Duration.String: `1h2m3s`, `1.5s`, `300ms`, `0s`.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let ns = ns.unsigned_abs();
    if ns < 1_000_000_000 {
        let (unit, div) = match ns {
            0..1_000 => ("ns", 1),
            1_000..1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{sign}{}{unit}", trim_fraction(ns, div));
    }
    let (h, rest) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
    let (m, s_ns) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let s = trim_fraction(s_ns, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// `n / div` with its fraction, trailing zeros dropped: 1500/1000 → "1.5".
fn trim_fraction(n: u64, div: u64) -> String {
    let (whole, frac) = (n / div, n % div);
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let f = format!("{frac:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Protobuf writer for the tests: field number, then bytes or a varint.
    fn bytes(n: u32, b: &[u8]) -> Vec<u8> {
        let mut out = varint((u64::from(n) << 3) | 2);
        out.extend(varint(b.len() as u64));
        out.extend(b);
        out
    }
    fn num(n: u32, v: u64) -> Vec<u8> {
        let mut out = varint(u64::from(n) << 3);
        out.extend(varint(v));
        out
    }
    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }
    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [bytes(1, api_version.as_bytes()), bytes(2, kind.as_bytes())].concat();
        [b"k8s\0".to_vec(), bytes(1, &type_meta), bytes(2, raw)].concat()
    }

    #[test]
    fn a_deployment_scaled_to_zero_keeps_its_zero_and_drops_go_zeros() {
        let meta = [
            bytes(1, b"web"),
            bytes(2, b""),
            bytes(3, b"shop"),
            bytes(5, b"uid-1"),
            num(7, 3),
            bytes(8, &[num(1, 1_764_651_240), num(2, 0)].concat()),
        ]
        .concat();
        // spec: replicas (1) = 0 present, strategy (4) empty, minReadySeconds (5) = 0.
        let spec = [num(1, 0), bytes(4, b""), num(5, 0)].concat();
        let raw = [bytes(1, &meta), bytes(2, &spec), bytes(3, b"")].concat();
        let Stored::Object(v) = decode(&envelope("apps/v1", "Deployment", &raw)).unwrap() else {
            panic!()
        };
        assert_eq!(v["apiVersion"], "apps/v1");
        assert_eq!(v["kind"], "Deployment");
        assert_eq!(v["metadata"]["name"], "web");
        assert_eq!(v["metadata"]["namespace"], "shop");
        assert_eq!(v["metadata"]["generation"], 3);
        assert_eq!(v["metadata"]["creationTimestamp"], "2025-12-02T04:54:00Z");
        assert!(v["metadata"].get("generateName").is_none());
        assert_eq!(v["spec"]["replicas"], 0, "a pointer's zero is a choice");
        assert!(v["spec"].get("minReadySeconds").is_none());
        assert_eq!(v["spec"]["strategy"], serde_json::json!({}));
        // The pod template's zero creationTimestamp is left out (omitzero, since 1.33).
        assert_eq!(v["spec"]["template"]["metadata"], serde_json::json!({}));
        assert_eq!(v["status"], serde_json::json!({}));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec", "status"]);
    }

    #[test]
    fn secrets_maps_int_or_string_and_quantities() {
        let meta = bytes(1, &bytes(1, b"db"));
        let entry = [bytes(1, b"password"), bytes(2, b"s3cret")].concat();
        let raw = [meta, bytes(2, &entry), bytes(3, b"Opaque")].concat();
        let Stored::Object(v) = decode(&envelope("v1", "Secret", &raw)).unwrap() else {
            panic!()
        };
        assert_eq!(v["data"]["password"], "czNjcmV0");
        assert_eq!(v["type"], "Opaque");

        let ios =
            |raw: &[u8]| special("k8s.io/apimachinery/pkg/util/intstr.IntOrString", raw).unwrap();
        assert_eq!(ios(&[num(1, 0), num(2, 8080)].concat()), 8080);
        assert_eq!(ios(&[num(1, 1), bytes(3, b"25%")].concat()), "25%");
        let q = special(
            "k8s.io/apimachinery/pkg/api/resource.Quantity",
            &bytes(1, b"128Mi"),
        );
        assert_eq!(q.unwrap(), "128Mi");
    }

    #[test]
    fn custom_resources_pass_through_and_encrypted_values_are_named_not_guessed() {
        let cr = br#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"}}"#;
        let Stored::Object(v) = decode(cr).unwrap() else {
            panic!()
        };
        assert_eq!(v["kind"], "Widget");
        assert_eq!(
            decode(b"k8s:enc:aescbc:v1:key1:\x01\x02\x03").unwrap(),
            Stored::Encrypted {
                provider: "aescbc".into(),
                key: "key1".into()
            }
        );
        assert_eq!(decode(b"\x00\x01"), Err(DecodeError::Unknown));
        assert!(matches!(
            decode(&envelope("example.com/v9", "Gadget", b"")),
            Err(DecodeError::UnknownKind { .. })
        ));
        assert!(matches!(
            decode(&envelope("v1", "Secret", &[0x0a, 0x05, 0x01])),
            Err(DecodeError::Damaged { .. })
        ));
    }

    #[test]
    fn durations_read_as_go_prints_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(300_000_000), "300ms");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(60_000_000_000), "1m0s");
        assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
        assert_eq!(rfc3339(0, 5_000, true), "1970-01-01T00:00:00.000005Z");
    }
}
