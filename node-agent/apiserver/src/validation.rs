//! The name and value rules of apimachinery's `util/validation` (`IsQualifiedName`,
//! `IsValidLabelValue`, `IsDNS1123Subdomain`, `IsConfigMapKey`), with its messages, so that label keys and values
//! are refused where kube-apiserver refuses them.

/// `[A-Za-z0-9]`, `[-A-Za-z0-9_.]*`, `[A-Za-z0-9]`: the shape of a qualified name's name part
/// and of a non-empty label value.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

const QUALIFIED_NAME_FMT: &str = "must consist of alphanumeric characters, '-', '_' or '.', and \
    must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
    '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

const LABEL_VALUE_FMT: &str = "a valid label must be an empty string or consist of alphanumeric \
    characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
    'MyValue',  or 'my_value',  or '12345', regex used for validation is \
    '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// The longest name part of a qualified name, and the longest label value.
pub const LABEL_MAX: usize = 63;
/// The longest DNS-1123 subdomain (a qualified name's prefix).
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;

/// A label key or annotation key: an optional DNS subdomain prefix and `/`, then a name part.
/// Returns what is wrong, empty when it is valid.
pub fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain_errors(prefix)
                        .into_iter()
                        .map(|e| format!("prefix part {e}")),
                );
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_FMT} with an optional DNS subdomain prefix and \
                 '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > LABEL_MAX {
        errs.push(format!(
            "name part must be no more than {LABEL_MAX} characters"
        ));
    }
    if !name.is_empty() && !is_qualified_name_part(name) {
        errs.push(format!("name part {QUALIFIED_NAME_FMT}"));
    }
    errs
}

/// A label value: empty, or up to 63 characters shaped like a name part.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_MAX {
        errs.push(format!("must be no more than {LABEL_MAX} characters"));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(LABEL_VALUE_FMT.to_string());
    }
    errs
}

/// A DNS-1123 subdomain: lower-case labels of `[a-z0-9]([-a-z0-9]*[a-z0-9])?` joined by dots.
pub fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    };
    if !value.split('.').all(label_ok) {
        errs.push(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character (e.g. \
             'example.com', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                .to_string(),
        );
    }
    errs
}

/// A key of a ConfigMap's or Secret's data (`IsConfigMapKey`): up to 253 of `[-._a-zA-Z0-9]`,
/// and not `.`, `..` or starting with `..` (it becomes a file name in volumes).
pub fn config_key_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    let shaped = !value.is_empty()
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c));
    if !shaped {
        errs.push(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. \
             'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is \
             '[-._a-zA-Z0-9]+')"
                .to_string(),
        );
    }
    if value == "." || value == ".." {
        errs.push(format!("must not be '{value}'"));
    } else if value.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys() {
        for ok in ["tls.crt", ".dockerconfigjson", "KEY_NAME", "key-name"] {
            assert!(config_key_errors(ok).is_empty(), "{ok}");
        }
        for bad in ["", "a/b", "..", "..x", "a b", &"k".repeat(254)] {
            assert!(!config_key_errors(bad).is_empty(), "{bad:?} accepted");
        }
    }

    #[test]
    fn qualified_names() {
        for ok in [
            "app",
            "a",
            "app.kubernetes.io/name",
            "example.com/My_Name-1",
            "k8s-app",
        ] {
            assert_eq!(qualified_name_errors(ok), Vec::<String>::new(), "{ok}");
        }
        for bad in [
            "",
            "x/y/z",
            "/name",
            "Example.com/name",
            "-app",
            "app-",
            "a b",
            "!!!",
            &"n".repeat(64),
        ] {
            assert!(!qualified_name_errors(bad).is_empty(), "{bad:?} accepted");
        }
    }

    #[test]
    fn label_values() {
        for ok in ["", "web", "v1.2_3-x", &"v".repeat(63)] {
            assert!(label_value_errors(ok).is_empty(), "{ok}");
        }
        for bad in ["-x", "x-", "a/b", "a b", &"v".repeat(64)] {
            assert!(!label_value_errors(bad).is_empty(), "{bad:?} accepted");
        }
    }
}
