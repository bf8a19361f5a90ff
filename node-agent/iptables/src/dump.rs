//! Reading `iptables-save` text (also `iptables -S`, which prints rules in the same syntax).

/// Rule lines in save output, counted as KIND's entrypoint does (`grep -c '^-'`).
pub fn count_rules(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with('-')).count()
}

/// Appended rules (`-A …` lines) only, leaving out chain declarations and `-N`/`-P` lines.
pub fn count_appended(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with("-A ")).count()
}

/// The chain names declared in save output (`:NAME POLICY [packets:bytes]`), in order.
pub fn chains(save: &str) -> Vec<String> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_chains() {
        let save = "*nat\n:OUTPUT ACCEPT [0:0]\n:KUBE-SVC-X - [0:0]\n-N KUBE-Y\n-A OUTPUT -j KUBE-SVC-X\nCOMMIT\n";
        assert_eq!(count_rules(save), 2);
        assert_eq!(count_appended(save), 1);
    }

    #[test]
    fn chains_from_save() {
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SVC-ABC - [0:0]\n-A X\nCOMMIT\n";
        assert_eq!(chains(save), vec!["PREROUTING", "KUBE-SVC-ABC"]);
    }
}
