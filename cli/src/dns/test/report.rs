//! The results of `dns test` as a table (text), as JSON (`-o json`) and as JUnit XML
//! (`--junit FILE`: one testcase per check and transport; a failure carries its message, and
//! its `dns trace` as the testcase's system-out).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use serde::Serialize;

use super::run::Outcome;

/// How an outcome asked: dig's transport, or the tool's name.
fn how(o: &Outcome) -> &str {
    o.protocol.map_or(o.tool.as_str(), |t| t.as_proto())
}

/// The testcase name of an outcome: which check, its name, type and transport (or tool);
/// within its test when it belongs to one.
pub fn case_name(o: &Outcome) -> String {
    let case = format!("{} {} {}", o.name, o.rtype, how(o));
    match &o.test {
        Some(test) => format!("{test}: [{}] {case}", o.index),
        None => format!("checks[{}] {case}", o.index),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The table: one row per check and transport (under a line naming its test, for outcomes
/// that belong to one), then each failure's message and trace.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut rows = vec![
        [
            "CHECK", "FROM", "TYPE", "PROTO", "RESULT", "ATTEMPTS", "TIME",
        ]
        .map(String::from),
    ];
    // A test's name goes on a line of its own before its first row.
    let mut headings = Vec::new();
    for o in outcomes {
        if o.test.is_some() && headings.last().map(|(_, t)| t) != Some(&o.test) {
            headings.push((rows.len(), o.test.clone()));
        }
        rows.push([
            format!("{} {}", o.index, o.name),
            o.from.clone(),
            o.rtype.clone(),
            how(o).to_string(),
            if o.passed { "pass" } else { "FAIL" }.to_string(),
            o.attempts.to_string(),
            format!("{}s", secs(o.time)),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        if let Some((_, Some(test))) = headings.iter().find(|(at, _)| *at == i) {
            let _ = writeln!(out, "=== {test}");
        }
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed).collect();
    for o in &failed {
        let _ = writeln!(out, "\n--- FAIL {}: {}", case_name(o), o.message);
        if let Some(t) = &o.trace_text {
            out.push_str(t);
        }
    }
    let _ = writeln!(
        out,
        "\n{} passed, {} failed",
        outcomes.len() - failed.len(),
        failed.len()
    );
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    passed: usize,
    failed: usize,
    results: &'a [Outcome],
}

/// The JSON report: counts and every outcome (a failure with its trace).
pub fn json(outcomes: &[Outcome]) -> Result<String> {
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    serde_json::to_string_pretty(&JsonReport {
        passed: outcomes.len() - failed,
        failed,
        results: outcomes,
    })
    .context("writing the results as JSON")
}

/// Text as XML 1.0 may hold it: characters it forbids (most control characters) become
/// U+FFFD, so a stray byte in a tool's output cannot make the report unreadable.
fn xml_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// The JUnit XML report; `command` names the testsuites (`minikind dns test`), `suite` the
/// testsuite (the checks file).
pub fn junit(command: &str, suite: &str, outcomes: &[Outcome], total: Duration) -> Result<String> {
    let failed = outcomes.iter().filter(|o| !o.passed).count().to_string();
    let tests = outcomes.len().to_string();
    let time = secs(total);
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("testsuites")
        .with_attributes([
            ("name", command),
            ("tests", tests.as_str()),
            ("failures", failed.as_str()),
            ("errors", "0"),
            ("time", time.as_str()),
        ])
        .write_inner_content(|w| {
            w.create_element("testsuite")
                .with_attributes([
                    ("name", xml_text(suite).as_str()),
                    ("tests", tests.as_str()),
                    ("failures", failed.as_str()),
                    ("errors", "0"),
                    ("skipped", "0"),
                    ("time", time.as_str()),
                ])
                .write_inner_content(|w| {
                    for o in outcomes {
                        let class = match &o.test {
                            Some(t) => xml_text(t),
                            None => "minikind.dns.test".into(),
                        };
                        let case = w.create_element("testcase").with_attributes([
                            ("classname", class.as_str()),
                            ("name", xml_text(&case_name(o)).as_str()),
                            ("time", secs(o.time).as_str()),
                        ]);
                        if o.passed {
                            case.write_empty()?;
                            continue;
                        }
                        case.write_inner_content(|w| {
                            let message = xml_text(&o.message);
                            w.create_element("failure")
                                .with_attributes([
                                    ("message", message.as_str()),
                                    ("type", "DnsExpectation"),
                                ])
                                .write_text_content(BytesText::new(&message))?;
                            let trace = xml_text(o.trace_text.as_deref().unwrap_or(""));
                            w.create_element("system-out")
                                .write_text_content(BytesText::new(&trace))?;
                            Ok(())
                        })?;
                    }
                    Ok(())
                })?;
            Ok(())
        })?;
    let mut text = String::from_utf8(w.into_inner()).context("the report is UTF-8")?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use quick_xml::Reader;
    use quick_xml::events::Event;
    use quick_xml::name::QName;

    use super::super::answers::{Answer, Reply};
    use super::super::checks::Transport;
    use super::*;

    fn outcome(index: usize, passed: bool) -> Outcome {
        Outcome {
            test: None,
            index,
            name: "www.example.test".into(),
            rtype: "A".into(),
            tool: "dig".into(),
            protocol: Some(if index == 0 {
                Transport::Udp
            } else {
                Transport::Tcp
            }),
            from: "default/dns-test-x".into(),
            passed,
            message: if passed {
                String::new()
            } else {
                "expected answers [192.0.2.99], got NOERROR [192.0.2.10] <&\"'>\u{1b}".into()
            },
            attempts: 3,
            time: Duration::from_millis(1500),
            reply: Some(Reply {
                rcode: "NOERROR".into(),
                answers: vec![Answer::expected("A", "192.0.2.10").unwrap()],
            }),
            trace: None,
            trace_text: (!passed).then(|| {
                "attempt 1: www.example.test. A to 10.96.0.10#53\n  └ service rule <KUBE-SVC>\n"
                    .into()
            }),
        }
    }

    /// What a JUnit reader sees: (element, attributes) of each start/empty tag and the text
    /// inside `failure` and `system-out`.
    /// An element's name and attributes.
    type Tag = (String, Vec<(String, String)>);

    fn read_back(xml: &str) -> (Vec<Tag>, Vec<String>) {
        let mut reader = Reader::from_str(xml);
        let (mut tags, mut texts) = (Vec::new(), Vec::new());
        loop {
            let (e, start) = match reader.read_event().expect("well-formed XML") {
                Event::Start(e) => (e, true),
                Event::Empty(e) => (e, false),
                Event::Eof => break,
                _ => continue,
            };
            let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
            let attrs = e
                .attributes()
                .map(|a| {
                    let a = a.unwrap();
                    (
                        String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                        a.unescape_value().unwrap().into_owned(),
                    )
                })
                .collect();
            if start && (name == "failure" || name == "system-out") {
                let raw = reader.read_text(QName(name.as_bytes())).unwrap();
                texts.push(quick_xml::escape::unescape(&raw).unwrap().into_owned());
            }
            tags.push((name, attrs));
        }
        (tags, texts)
    }

    fn attr<'a>(tag: &'a Tag, key: &str) -> &'a str {
        &tag.1.iter().find(|(k, _)| k == key).unwrap().1
    }

    #[test]
    fn junit_has_one_testcase_per_result_and_the_failures_trace() {
        let outcomes = [outcome(0, true), outcome(1, false)];
        let xml = junit(
            "minikind dns test",
            "checks.yaml",
            &outcomes,
            Duration::from_secs(2),
        )
        .unwrap();
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            "{xml}"
        );
        let (tags, texts) = read_back(&xml);
        let names: Vec<&str> = tags.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "testsuites",
                "testsuite",
                "testcase",
                "testcase",
                "failure",
                "system-out"
            ]
        );
        assert_eq!(attr(&tags[0], "tests"), "2");
        assert_eq!(attr(&tags[0], "failures"), "1");
        assert_eq!(attr(&tags[1], "name"), "checks.yaml");
        assert_eq!(attr(&tags[2], "name"), "checks[0] www.example.test A udp");
        assert_eq!(attr(&tags[3], "name"), "checks[1] www.example.test A tcp");
        assert_eq!(attr(&tags[3], "time"), "1.500");
        // Markup characters survive the round trip; a control character does not break it.
        let message = "expected answers [192.0.2.99], got NOERROR [192.0.2.10] <&\"'>\u{FFFD}";
        assert_eq!(attr(&tags[4], "message"), message);
        assert_eq!(texts[0], message);
        assert!(texts[1].contains("service rule <KUBE-SVC>"), "{texts:?}");
    }

    #[test]
    fn outcomes_of_a_test_are_shown_under_its_name() {
        let mut outcomes = [outcome(0, true), outcome(1, false)];
        for o in &mut outcomes {
            o.test = Some("[sig-network] DNS should provide DNS for services".into());
        }
        outcomes[1].protocol = None;
        outcomes[1].tool = "getent".into();
        let t = table(&outcomes);
        assert_eq!(
            t.matches("=== [sig-network] DNS should provide DNS for services\n")
                .count(),
            1,
            "{t}"
        );
        assert!(
            t.contains("--- FAIL [sig-network] DNS should provide DNS for services: [1] www.example.test A getent:"),
            "{t}"
        );
        let xml = junit(
            "minikind dns conformance",
            "dns.go",
            &outcomes,
            Duration::ZERO,
        )
        .unwrap();
        let (tags, _) = read_back(&xml);
        assert_eq!(attr(&tags[0], "name"), "minikind dns conformance");
        assert_eq!(
            attr(&tags[2], "classname"),
            "[sig-network] DNS should provide DNS for services"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&outcomes).unwrap()).unwrap();
        assert_eq!(v["results"][1]["protocol"], serde_json::Value::Null);
        assert_eq!(v["results"][1]["tool"], "getent");
    }

    #[test]
    fn the_table_and_json_show_every_result() {
        let outcomes = [outcome(0, true), outcome(1, false)];
        let t = table(&outcomes);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("CHECK") && lines[0].ends_with("TIME"),
            "{t}"
        );
        assert!(lines[1].contains("pass") && lines[1].contains("udp"), "{t}");
        assert!(
            lines[2].contains("FAIL") && lines[2].contains("1.500s"),
            "{t}"
        );
        assert!(
            t.contains("--- FAIL checks[1] www.example.test A tcp: expected answers"),
            "{t}"
        );
        assert!(t.contains("service rule"), "{t}");
        assert!(t.ends_with("1 passed, 1 failed\n"), "{t}");
        let v: serde_json::Value = serde_json::from_str(&json(&outcomes).unwrap()).unwrap();
        assert_eq!(
            (v["passed"].as_u64(), v["failed"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(v["results"][1]["protocol"], "tcp");
        assert_eq!(v["results"][1]["time_ms"], 1500);
        assert_eq!(v["results"][0]["reply"]["answers"][0], "192.0.2.10");
    }
}
