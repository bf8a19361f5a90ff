//! The search-list expansion and `ndots` rule, as glibc's `res_nsearch` applies them
//! (glibc resolv/res_query.c); shared by dig `+search`, nslookup and getent.

/// The names to query for `name`, in order, each fully qualified (trailing dot):
///
/// - a trailing dot: the name itself only;
/// - at least `ndots` dots: the name as is first, then with each search domain;
/// - fewer dots: with each search domain first, then as is.
///
/// With `ndots:5` and the pod search list, `baidu.com` costs three NXDOMAIN answers before
/// the query for `baidu.com.` itself.
pub fn candidate_names(name: &str, search: &[String], ndots: u8) -> Vec<String> {
    if name.ends_with('.') {
        return vec![name.to_string()];
    }
    let as_is = format!("{name}.");
    let dots = name.matches('.').count();
    let mut names = Vec::with_capacity(search.len() + 1);
    if dots >= usize::from(ndots) {
        names.push(as_is.clone());
    }
    for domain in search {
        let domain = domain.trim_end_matches('.');
        let candidate = if domain.is_empty() {
            as_is.clone()
        } else {
            format!("{name}.{domain}.")
        };
        if !names.contains(&candidate) {
            names.push(candidate);
        }
    }
    if dots < usize::from(ndots) && !names.contains(&as_is) {
        names.push(as_is);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_search() -> Vec<String> {
        [
            "default.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn few_dots_try_search_first() {
        assert_eq!(
            candidate_names("baidu.com", &pod_search(), 5),
            vec![
                "baidu.com.default.svc.cluster.local.",
                "baidu.com.svc.cluster.local.",
                "baidu.com.cluster.local.",
                "baidu.com.",
            ]
        );
    }

    #[test]
    fn enough_dots_try_as_is_first() {
        assert_eq!(
            candidate_names("a.b.c.d.e.f", &pod_search(), 5)[0],
            "a.b.c.d.e.f."
        );
        assert_eq!(candidate_names("a.b.c.d.e.f", &pod_search(), 5).len(), 4);
        assert_eq!(
            candidate_names("a.b.c.d.e", &pod_search(), 5)[3],
            "a.b.c.d.e."
        );
        // ndots:0 (Docker's default) and a single label: as is, then the search list.
        assert_eq!(
            candidate_names("web", &["lab.example".to_string()], 0),
            vec!["web.", "web.lab.example."]
        );
    }

    #[test]
    fn trailing_dot_means_no_search() {
        assert_eq!(
            candidate_names("kubernetes.default.", &pod_search(), 5),
            vec!["kubernetes.default."]
        );
        assert_eq!(candidate_names("x", &[], 1), vec!["x."]);
    }
}
