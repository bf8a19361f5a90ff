//! Decoding of Kubernetes protobuf request bodies (`k8s\0` + `runtime.Unknown`), which
//! kubectl's typed clients send for built-in kinds (`create deployment|secret|job…`,
//! `debug`, `create token`, `auth can-i`).
//!
//! The decoding follows tables generated from the upstream types ([`crate::protobuf_schema`],
//! by `tools/gen_protobuf_schema.py`) so that a body decodes to exactly the JSON the same Go
//! object would give: Go's marshaller writes every non-pointer field, so a zero scalar on the
//! wire is dropped where the JSON tag has `omitempty` and kept where the field is a pointer or
//! always written; inlined structs are flattened; times, quantities and int-or-strings take
//! their JSON forms.
//!
//! A body with a field or kind the tables do not know is refused with 415 naming it, never
//! decoded into a different object. client-go retries a 415 as JSON only for CBOR
//! (`UnsupportedMediaType` of the `rest` package's content-config provider), not for protobuf,
//! so kubectl reports that error as it is.

use crate::errors::{ApiError, ApiResult};
use crate::protobuf_schema::{KINDS, MESSAGES};
use base64::Engine;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

/// A field's value type in the JSON form.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Str,
    Int,
    Bool,
    /// Go `[]byte`: base64 in JSON.
    Bytes,
    /// Another message, by index in `MESSAGES`.
    Msg(usize),
    /// `metav1.Time`: RFC 3339, seconds.
    Time,
    /// `metav1.MicroTime`: RFC 3339, microseconds.
    MicroTime,
    /// `metav1.Duration`: Go's duration string.
    Duration,
    /// `runtime.RawExtension`, `metav1.FieldsV1`: raw JSON bytes.
    RawJson,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `intstr.IntOrString`.
    IntOrString,
}

#[derive(Debug, Clone, Copy)]
pub enum Card {
    One,
    Repeated,
    /// `map<string, ty>`.
    Map,
}

#[derive(Debug)]
pub struct Field {
    pub num: u64,
    pub json: &'static str,
    pub ty: Ty,
    pub card: Card,
    /// A zero scalar is a value (pointer field, or no `omitempty`), not an absence.
    pub keep_zero: bool,
    /// Go embeds the struct inline: its fields belong to the parent in JSON.
    pub inline: bool,
}

#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    /// A Go named `[]string` (`ExtraValue`): an array in JSON, `items` in protobuf.
    pub list: bool,
    pub fields: &'static [Field],
}

#[derive(Debug)]
pub struct Kind {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub message: usize,
}

/// One decoded protobuf field.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed64,
    Fixed32,
}

fn bad(what: &str) -> ApiError {
    ApiError::bad_request(format!("invalid protobuf body: {what}"))
}

fn unsupported(what: String) -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        format!(
            "application/vnd.kubernetes.protobuf: {what}; minikind decodes protobuf only for the \
             fields of its generated tables, send this object as JSON instead (e.g. with \
             kubectl apply -f)"
        ),
    )
}

fn varint(buf: &[u8], pos: &mut usize) -> ApiResult<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(bad("varint too long"))
}

fn fields(buf: &[u8]) -> ApiResult<Vec<(u64, Wire<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    let skip = |pos: &mut usize, n: usize| -> ApiResult<()> {
        *pos = pos
            .checked_add(n)
            .filter(|e| *e <= buf.len())
            .ok_or_else(|| bad("truncated field"))?;
        Ok(())
    };
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (num, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((num, Wire::Varint(varint(buf, &mut pos)?))),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| bad("length"))?;
                let start = pos;
                skip(&mut pos, len)?;
                out.push((num, Wire::Bytes(&buf[start..pos])));
            }
            1 => {
                skip(&mut pos, 8)?;
                out.push((num, Wire::Fixed64));
            }
            5 => {
                skip(&mut pos, 4)?;
                out.push((num, Wire::Fixed32));
            }
            _ => return Err(bad("unsupported wire type")),
        }
    }
    Ok(out)
}

fn string(b: &[u8]) -> ApiResult<String> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("string is not UTF-8"))
}

/// Go's `time.Duration.String()` for `ns` nanoseconds (`1h0m0s`, `1.5s`, `300ms`).
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let frac = |v: u64, unit: u64| -> String {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.to_string().len() - 1;
        let f = format!("{rest:0digits$}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 1_000));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 1_000_000));
    }
    let secs = u % 60_000_000_000;
    let mins = u / 60_000_000_000;
    let s = format!("{}s", frac(secs, 1_000_000_000));
    if mins == 0 {
        return format!("{sign}{s}");
    }
    if mins < 60 {
        return format!("{sign}{mins}m{s}");
    }
    format!("{sign}{}h{}m{s}", mins / 60, mins % 60)
}

/// seconds (1) and nanos (2) of a `Time`/`MicroTime`; None for the zero time (JSON `null`,
/// the same as absent).
fn timestamp(b: &[u8]) -> ApiResult<Option<jiff::Timestamp>> {
    let (mut secs, mut nanos) = (0i64, 0i32);
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Varint(v)) => secs = v as i64,
            (2, Wire::Varint(v)) => nanos = v as i32,
            _ => return Err(bad("malformed time")),
        }
    }
    if secs == 0 && nanos == 0 {
        return Ok(None);
    }
    jiff::Timestamp::new(secs, nanos)
        .map(Some)
        .map_err(|_| bad("time out of range"))
}

fn int_or_string(b: &[u8]) -> ApiResult<Value> {
    let (mut ty, mut iv, mut sv) = (0u64, 0i64, String::new());
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Varint(t)) => ty = t,
            (2, Wire::Varint(i)) => iv = i as i32 as i64,
            (3, Wire::Bytes(s)) => sv = string(s)?,
            _ => return Err(bad("malformed IntOrString")),
        }
    }
    Ok(if ty == 1 { json!(sv) } else { json!(iv) })
}

fn single_bytes_field<'a>(b: &'a [u8], what: &str) -> ApiResult<&'a [u8]> {
    let mut out: &[u8] = &[];
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Bytes(x)) => out = x,
            _ => return Err(bad(&format!("malformed {what}"))),
        }
    }
    Ok(out)
}

/// The JSON value of one occurrence of a field, None when it means "absent".
fn value(f: &Field, msg: &Message, w: Wire<'_>) -> ApiResult<Option<Value>> {
    let mismatch = || {
        bad(&format!(
            "field {} ({}) of {} has the wrong wire type",
            f.num, f.json, msg.name
        ))
    };
    let v = match (f.ty, w) {
        (Ty::Int, Wire::Varint(v)) => json!(v as i64),
        (Ty::Bool, Wire::Varint(v)) => json!(v != 0),
        (Ty::Str, Wire::Bytes(b)) => json!(string(b)?),
        (Ty::Bytes, Wire::Bytes(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        (Ty::Msg(i), Wire::Bytes(b)) => decode_message(i, b)?,
        (Ty::Time, Wire::Bytes(b)) => match timestamp(b)? {
            Some(t) => json!(crate::meta::format_time(t)),
            None => return Ok(None),
        },
        (Ty::MicroTime, Wire::Bytes(b)) => match timestamp(b)? {
            Some(t) => json!(crate::meta::format_micro(t)),
            None => return Ok(None),
        },
        (Ty::Duration, Wire::Bytes(b)) => {
            let mut ns = 0i64;
            for (n, w) in fields(b)? {
                match (n, w) {
                    (1, Wire::Varint(v)) => ns = v as i64,
                    _ => return Err(bad("malformed Duration")),
                }
            }
            json!(go_duration(ns))
        }
        (Ty::RawJson, Wire::Bytes(b)) => {
            let raw = single_bytes_field(b, "raw JSON")?;
            if raw.is_empty() {
                return Ok(None);
            }
            serde_json::from_slice(raw).map_err(|e| {
                bad(&format!(
                    "field {} of {} is not JSON: {e}",
                    f.json, msg.name
                ))
            })?
        }
        (Ty::Quantity, Wire::Bytes(b)) => json!(string(single_bytes_field(b, "Quantity")?)?),
        (Ty::IntOrString, Wire::Bytes(b)) => int_or_string(b)?,
        _ => return Err(mismatch()),
    };
    let zero = match &v {
        Value::String(s) => s.is_empty() && matches!(f.ty, Ty::Str | Ty::Bytes),
        Value::Number(n) => n.as_i64() == Some(0) && matches!(f.ty, Ty::Int),
        Value::Bool(b) => !b,
        _ => false,
    };
    Ok(if zero && !f.keep_zero && matches!(f.card, Card::One) {
        None
    } else {
        Some(v)
    })
}

/// Decodes message `idx` to its JSON form.
fn decode_message(idx: usize, buf: &[u8]) -> ApiResult<Value> {
    let msg = &MESSAGES[idx];
    let mut out = Map::new();
    for (num, w) in fields(buf)? {
        let Some(f) = msg.fields.iter().find(|f| f.num == num) else {
            return Err(unsupported(format!(
                "field number {num} of {} is not known",
                msg.name
            )));
        };
        match f.card {
            Card::One => match value(f, msg, w)? {
                Some(Value::Object(inner)) if f.inline => out.extend(inner),
                Some(v) => {
                    out.insert(f.json.into(), v);
                }
                None => {
                    out.remove(f.json);
                }
            },
            Card::Repeated => {
                let mut items = Vec::new();
                match (f.ty, w) {
                    // Packed scalars (proto3 style); Go writes them unpacked, both are valid.
                    (Ty::Int | Ty::Bool, Wire::Bytes(b)) => {
                        let mut pos = 0;
                        while pos < b.len() {
                            let v = varint(b, &mut pos)?;
                            items.push(value(f, msg, Wire::Varint(v))?.unwrap_or(Value::Null));
                        }
                    }
                    (_, w) => items.push(value(f, msg, w)?.unwrap_or(Value::Null)),
                }
                let slot = out.entry(f.json).or_insert_with(|| json!([]));
                if let Some(a) = slot.as_array_mut() {
                    a.extend(items);
                }
            }
            Card::Map => {
                let Wire::Bytes(entry) = w else {
                    return Err(bad(&format!("map {} of {} is malformed", f.json, msg.name)));
                };
                let (mut key, mut val) = (String::new(), None);
                for (n, ew) in fields(entry)? {
                    match (n, ew) {
                        (1, Wire::Bytes(k)) => key = string(k)?,
                        (2, ew) => val = value(f, msg, ew)?,
                        _ => {
                            return Err(bad(&format!(
                                "map {} of {} is malformed",
                                f.json, msg.name
                            )));
                        }
                    }
                }
                // An entry's absent value is the type's zero value.
                let val = val.unwrap_or_else(|| match f.ty {
                    Ty::Int => json!(0),
                    Ty::Bool => json!(false),
                    Ty::Msg(_) => json!({}),
                    _ => json!(""),
                });
                let slot = out.entry(f.json).or_insert_with(|| json!({}));
                if let Some(m) = slot.as_object_mut() {
                    m.insert(key, val);
                }
            }
        }
    }
    if msg.list {
        return Ok(out.remove("items").unwrap_or_else(|| json!([])));
    }
    Ok(Value::Object(out))
}

/// Decodes a protobuf request body to the JSON form of the object.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s protobuf magic prefix"))?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Wire::Bytes(tm)) => {
                for (n2, f2) in fields(tm)? {
                    match (n2, f2) {
                        (1, Wire::Bytes(x)) => api_version = string(x)?,
                        (2, Wire::Bytes(x)) => kind = string(x)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(x)) => raw = x,
            // contentEncoding (3) and contentType (4): Go leaves them empty for objects.
            (3 | 4, Wire::Bytes([])) => {}
            (3 | 4, _) => return Err(unsupported("an encoded or typed raw body".into())),
            _ => return Err(bad("unknown field of runtime.Unknown")),
        }
    }
    let Some(k) = KINDS
        .iter()
        .find(|k| k.api_version == api_version && k.kind == kind)
    else {
        return Err(unsupported(format!(
            "kind {api_version}/{kind} is not decoded"
        )));
    };
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    if let Value::Object(fields) = decode_message(k.message, raw)? {
        obj.extend(fields);
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests;
