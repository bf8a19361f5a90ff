//! Text forms shared by the tools: response codes, record data, dig's tab-aligned columns.

use std::str::FromStr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};

/// A record type as given on a command line (`aaaa`, `SRV`), in any case; `None` for a word
/// that is not a type hickory knows by name.
pub fn parse_record_type(word: &str) -> Option<RecordType> {
    match RecordType::from_str(&word.to_ascii_uppercase()) {
        Ok(RecordType::Unknown(_)) | Err(_) => None,
        Ok(t) => Some(t),
    }
}

/// The mnemonic dig prints (`NOERROR`, `NXDOMAIN`, …): the names CoreDNS's log uses
/// (`minikind-dns-log`), and BIND dig's `RESERVED<n>` where a code has none.
pub fn rcode_name(code: ResponseCode) -> String {
    let n = u16::from(code);
    match minikind_dns_log::rcode_name(n) {
        std::borrow::Cow::Borrowed(name) => name.to_string(),
        std::borrow::Cow::Owned(_) => format!("RESERVED{n}"),
    }
}

/// Record data in zone-file form: TXT strings quoted (dig and nslookup show them so),
/// everything else as hickory prints it.
pub fn rdata_text(data: &RData) -> String {
    match data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| {
                format!(
                    "\"{}\"",
                    String::from_utf8_lossy(s)
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => {
            let mut text = String::new();
            // OPT has no text form; it never reaches the record sections dig prints.
            if std::fmt::write(&mut text, format_args!("{other}")).is_err() {
                text = "\\# (no text form)".into();
            }
            text
        }
    }
}

/// Appends tabs until `column` (tab stops every 8 characters), at least one.
fn tab_to(out: &mut String, column: usize) {
    let mut current = out.chars().fold(0, |col, c| {
        if c == '\t' {
            (col / 8 + 1) * 8
        } else {
            col + 1
        }
    });
    loop {
        out.push('\t');
        current = (current / 8 + 1) * 8;
        if current >= column {
            break;
        }
    }
}

/// A record as dig prints it: name, TTL, class, type and data in columns 0, 24, 32, 40, 48.
pub fn dig_record_line(record: &Record) -> String {
    let mut line = record.name.to_string();
    tab_to(&mut line, 24);
    line.push_str(&record.ttl.to_string());
    tab_to(&mut line, 32);
    line.push_str(&record.dns_class.to_string());
    tab_to(&mut line, 40);
    line.push_str(&record.record_type().to_string());
    tab_to(&mut line, 48);
    line.push_str(&rdata_text(&record.data));
    line
}

/// A question as dig prints it: `;name`, then class and type from column 32.
pub fn dig_question_line(message: &Message) -> Vec<String> {
    message
        .queries
        .iter()
        .map(|q| {
            let mut line = format!(";{}", q.name());
            tab_to(&mut line, 32);
            line.push_str(&q.query_class().to_string());
            tab_to(&mut line, 40);
            line.push_str(&q.query_type().to_string());
            line
        })
        .collect()
}

/// dig's flag list: `qr aa tc rd ra ad cd`, those that are set.
pub fn dig_flags(message: &Message) -> String {
    let m = &message.metadata;
    let flags = [
        (
            m.message_type == hickory_proto::op::MessageType::Response,
            "qr",
        ),
        (m.authoritative, "aa"),
        (m.truncation, "tc"),
        (m.recursion_desired, "rd"),
        (m.recursion_available, "ra"),
        (m.authentic_data, "ad"),
        (m.checking_disabled, "cd"),
    ];
    flags
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, TXT};

    #[test]
    fn columns_match_dig() {
        let record = Record::from_rdata(
            Name::from_ascii("example.test.").unwrap(),
            600,
            RData::A(A::new(10, 0, 0, 1)),
        );
        assert_eq!(
            dig_record_line(&record),
            "example.test.\t\t600\tIN\tA\t10.0.0.1"
        );
        let long = Record::from_rdata(
            Name::from_ascii("_dns._udp.kube-dns.kube-system.svc.cluster.local.").unwrap(),
            30,
            RData::TXT(TXT::new(vec!["1.1.0".into(), "say \"hi\"".into()])),
        );
        assert_eq!(
            dig_record_line(&long),
            "_dns._udp.kube-dns.kube-system.svc.cluster.local.\t30\tIN\tTXT\t\"1.1.0\" \"say \\\"hi\\\"\""
        );
    }
}
