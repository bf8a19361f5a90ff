//! Small helpers for object metadata: timestamps, uids, generated names, name validation.

use rand::Rng;
use serde_json::Value;

/// RFC 3339 time with second precision in UTC, as `metav1.Time` serializes.
pub fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// RFC 3339 time with microseconds, as `metav1.MicroTime` serializes.
pub fn format_micro(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

pub fn now_rfc3339() -> String {
    format_time(jiff::Timestamp::now())
}

pub fn now_micro() -> String {
    format_micro(jiff::Timestamp::now())
}

pub fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// A random (version 4) UUID.
pub fn new_uid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The alphabet Kubernetes uses for generated suffixes (no vowels, no confusable digits).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn random_suffix(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHANUMS[rng.random_range(0..ALPHANUMS.len())] as char)
        .collect()
}

/// `generateName` + 5 random characters, the base cut so the result stays within 63 chars.
pub fn generate_name(base: &str) -> String {
    let base: String = base.chars().take(58).collect();
    format!("{base}{}", random_suffix(5))
}

/// RFC 1123 subdomain (object names of most kinds); returns why not.
pub fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    let ok = !s.is_empty()
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into())
    }
}

/// RFC 1123 label (namespace names, container names).
pub fn check_dns_label(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    let ok = !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into())
    }
}

/// RFC 1035 label (service names: must start with a letter).
pub fn check_dns1035_label(s: &str) -> Result<(), String> {
    check_dns_label(s).map_err(|_| {
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string()
    })?;
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("a DNS-1035 label must start with an alphabetic character".into());
    }
    Ok(())
}

pub fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

pub fn name_of(v: &Value) -> &str {
    str_at(v, "/metadata/name").unwrap_or_default()
}

pub fn namespace_of(v: &Value) -> &str {
    str_at(v, "/metadata/namespace").unwrap_or_default()
}

/// `metadata` as a mutable map, created if missing.
/// Removes `finalizer` from the object's `metadata.finalizers`; true if it was there (the
/// update the finalizer's owner writes when its work is done).
pub fn remove_finalizer(v: &mut Value, finalizer: &str) -> bool {
    let Some(a) = v
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let before = a.len();
    a.retain(|f| f.as_str() != Some(finalizer));
    a.len() != before
}

pub fn metadata_mut(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !v.get("metadata").is_some_and(Value::is_object) {
        v["metadata"] = Value::Object(Default::default());
    }
    v["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// Human duration as kubectl prints ages: `45s`, `5m`, `3h`, `2d`, `4y` with a second unit where
/// the real printer uses one.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 600 {
        let m = s / 60;
        let r = s % 60;
        if r == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{r}s")
        }
    } else if s < 3 * 3600 {
        format!("{}m", s / 60)
    } else if s < 8 * 3600 {
        let h = s / 3600;
        let m = (s % 3600) / 60;
        if m == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{m}m")
        }
    } else if s < 48 * 3600 {
        format!("{}h", s / 3600)
    } else if s < 8 * 86400 {
        let d = s / 86400;
        let h = (s % 86400) / 3600;
        if h == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{h}h")
        }
    } else if s < 365 * 2 * 86400 {
        format!("{}d", s / 86400)
    } else {
        format!("{}y", s / (365 * 86400))
    }
}

/// Age of an object from its `creationTimestamp`, as kubectl prints it (`<unknown>` if absent).
pub fn age(v: &Value) -> String {
    match str_at(v, "/metadata/creationTimestamp").and_then(parse_time) {
        Some(t) => {
            let secs = jiff::Timestamp::now().as_second() - t.as_second();
            human_duration(secs)
        }
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_shape() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[test]
    fn names() {
        assert!(check_dns_subdomain("a.b-c").is_ok());
        assert!(check_dns_subdomain("A").is_err());
        assert!(check_dns1035_label("1abc").is_err());
        let g = generate_name("web-");
        assert_eq!(g.len(), 9);
        assert!(g.starts_with("web-"));
    }

    #[test]
    fn durations_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(700), "11m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(3 * 86400), "3d");
    }
}
