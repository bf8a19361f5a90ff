//! One check over one transport: `dig` run in the pod through the API server's exec (as
//! `minikind exec`), again and again until the reply meets the expectation or the check's
//! deadline passes (a Service just made takes a moment to resolve); a failure then gets the
//! `dns trace` of its name from the same pod.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde::Serialize;
use tokio::time::Instant;

use super::answers::{self, Reply};
use super::checks::{Check, Transport, Via};
use crate::dns::trace;

/// The pause between two tries of a check.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// The longest one dig query waits for its reply (`+time`).
const QUERY_TIME: u64 = 2;
/// What the exec itself may add to a query's time before the try counts as hung.
const EXEC_SLACK: Duration = Duration::from_secs(10);

/// The pod a check runs in.
#[derive(Debug, Clone)]
pub struct PodAt {
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
}

impl PodAt {
    /// `namespace/pod`, and the container when one is named.
    pub fn display(&self) -> String {
        match &self.container {
            Some(c) => format!("{}/{} ({c})", self.namespace, self.pod),
            None => format!("{}/{}", self.namespace, self.pod),
        }
    }
}

/// A check's result over one transport.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The test the check belongs to (`dns conformance`: the upstream e2e test's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// The check's index in the file (or in its test).
    pub index: usize,
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    /// What asked: dig, getent, or (`dns conformance`) a command whose output is checked.
    pub tool: String,
    /// dig's transport (`None` for the other tools).
    pub protocol: Option<Transport>,
    /// The pod asked from (`namespace/name`).
    pub from: String,
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub message: String,
    pub attempts: u32,
    #[serde(rename = "time_ms")]
    #[serde(serialize_with = "millis")]
    pub time: Duration,
    /// The last reply, if any came.
    pub reply: Option<Reply>,
    /// The `dns trace` of a failed check, as `dns trace -o json` prints it.
    pub trace: Option<serde_json::Value>,
    /// The same as text (or why it could not be made).
    #[serde(skip)]
    pub trace_text: Option<String>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The command line of one try: dig's over `transport` (`None`: UDP, dig's default), or
/// getent's.
pub fn command(check: &Check, transport: Option<Transport>, time: u64) -> Vec<String> {
    match check.via {
        Via::Dig => dig_command(check, transport.unwrap_or(Transport::Udp), time),
        Via::Getent => vec!["getent".into(), "hosts".into(), check.name.clone()],
    }
}

/// dig's command line for one try: only the header and the answers printed, one query of at
/// most `time` seconds, over `transport`.
pub fn dig_command(check: &Check, transport: Transport, time: u64) -> Vec<String> {
    let mut argv: Vec<String> = ["dig", "+noall", "+comments", "+answer", "+tries=1"]
        .map(String::from)
        .to_vec();
    argv.push(format!("+time={time}"));
    if transport == Transport::Tcp {
        argv.push("+tcp".into());
    }
    if check.search {
        argv.push("+search".into());
    }
    argv.extend(["-t".to_string(), check.rtype.clone(), check.name.clone()]);
    argv
}

/// The name the trace looks up: as the check asked it (absolute unless the check walks the
/// search list, so the trace shows the same one query).
fn trace_name(check: &Check) -> String {
    if check.search || check.via == Via::Getent || check.name.ends_with('.') {
        check.name.clone()
    } else {
        format!("{}.", check.name)
    }
}

/// What one try came to.
enum Try {
    Reply(Reply),
    /// No reply, or the exec failed: worth another try.
    Again(String),
    /// dig could not run at all (missing, bad usage): another try would say the same.
    Broken(String),
}

async fn one_try(
    pods: &Api<Pod>,
    at: &PodAt,
    (via, argv): (Via, &[String]),
    rtype: &str,
    limit: Duration,
) -> Try {
    let run = trace::exec_capture(pods, &at.pod, at.container.as_deref(), argv);
    match tokio::time::timeout(limit, run).await {
        Err(_) => Try::Again(format!("dig did not finish within {}s", limit.as_secs())),
        Ok(Err(e)) => Try::Again(format!("{e:#}")),
        Ok(Ok(out)) if via == Via::Getent => match out.code {
            // 0: found; 2: not found (getent's exit codes).
            0 => match answers::parse_getent(&out.stdout, rtype) {
                Some(reply) => Try::Reply(reply),
                None => Try::Again("getent found the name but printed nothing".into()),
            },
            2 => Try::Again(format!("{}: not found", argv.join(" "))),
            code => Try::Broken(format!(
                "getent exited {code} in pod {}: {}{}",
                at.display(),
                out.stdout.trim(),
                out.stderr.trim()
            )),
        },
        Ok(Ok(out)) => match out.code {
            // 0: a reply (whatever its code); 9: no reply (dig's exit codes).
            0 => match answers::parse_dig(&out.stdout, rtype) {
                Some(reply) => Try::Reply(reply),
                None => Try::Broken(format!(
                    "dig printed no `status:` line (is it dig?): {}",
                    out.stdout.trim()
                )),
            },
            9 => Try::Again(format!("no reply: {}", out.stdout.trim())),
            code => Try::Broken(format!(
                "dig exited {code} in pod {}: {}{}",
                at.display(),
                out.stdout.trim(),
                out.stderr.trim()
            )),
        },
    }
}

/// Runs `check` over `transport` from `at` until it passes or its deadline passes.
pub async fn run(
    client: &kube::Client,
    check: &Check,
    transport: Option<Transport>,
    at: &PodAt,
) -> Outcome {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &at.namespace);
    let started = Instant::now();
    let deadline = started + check.deadline();
    let mut attempts = 0;
    let mut last_reply = None;
    let (passed, message) = loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let time = remaining.as_secs().clamp(1, QUERY_TIME);
        let argv = command(check, transport, time);
        let tried = (check.via, argv.as_slice());
        let why = match one_try(&pods, at, tried, &check.rtype, remaining + EXEC_SLACK).await {
            Try::Broken(why) => break (false, why),
            Try::Again(why) => why,
            Try::Reply(reply) => {
                let why = answers::mismatch(
                    &reply,
                    check.expect.answers.as_deref(),
                    check.expect.rcode.as_deref(),
                );
                last_reply = Some(reply);
                match (why, check.expect.within) {
                    (None, Some(within)) if started.elapsed() > within => {
                        break (
                            false,
                            format!(
                                "met the expectation only after {:.1}s, not within {}",
                                started.elapsed().as_secs_f64(),
                                humantime::format_duration(within)
                            ),
                        );
                    }
                    (None, _) => break (true, String::new()),
                    (Some(why), _) => why,
                }
            }
        };
        if Instant::now() + RETRY_PAUSE >= deadline {
            break (
                false,
                format!(
                    "{why} (after {attempts} tries in {})",
                    humantime::format_duration(check.deadline())
                ),
            );
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    };
    Outcome {
        test: None,
        index: check.index,
        name: check.name.clone(),
        rtype: check.rtype.clone(),
        tool: check.via.name().into(),
        protocol: transport,
        from: at.display(),
        passed,
        message,
        attempts,
        time: started.elapsed(),
        reply: last_reply,
        trace: None,
        trace_text: None,
    }
}

/// Adds the `dns trace` of the check's name from the same pod to a failed outcome (or, in
/// its place, why there is none).
pub async fn add_trace(target: &trace::Target, check: &Check, at: &PodAt, outcome: &mut Outcome) {
    let traced = trace::trace(
        target,
        &at.namespace,
        &at.pod,
        at.container.as_deref(),
        &trace_name(check),
        &check.rtype,
    )
    .await;
    match traced {
        Ok(t) => {
            let mut text = trace::render_text(&t);
            match outcome.protocol {
                Some(Transport::Tcp) => text.push_str(
                    "(the trace's lookup is nslookup's, over UDP; the check asked over TCP)\n",
                ),
                None => text.push_str(&format!(
                    "(the trace's lookup is nslookup's, over DNS; the check asked {}, which \
                     reads /etc/hosts first)\n",
                    outcome.tool
                )),
                Some(Transport::Udp) => {}
            }
            if t.attempts.is_empty() {
                text.push_str(&format!("lookup: {}\n", t.outcome));
            }
            outcome.trace = serde_json::to_value(&t).ok();
            outcome.trace_text = Some(text);
        }
        Err(e) => outcome.trace_text = Some(format!("no trace: {e:#}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::checks;
    use super::*;

    #[test]
    fn the_dig_command_asks_once_over_the_transport() {
        let c = &checks::parse(
            "checks:\n- name: www.example.test\n  type: AAAA\n- name: abc\n  search: true\n",
            "f",
            checks::DEFAULT_TIMEOUT,
            "tools",
        )
        .unwrap();
        assert_eq!(
            dig_command(&c[0], Transport::Tcp, 2),
            [
                "dig",
                "+noall",
                "+comments",
                "+answer",
                "+tries=1",
                "+time=2",
                "+tcp",
                "-t",
                "AAAA",
                "www.example.test"
            ]
        );
        assert_eq!(
            dig_command(&c[1], Transport::Udp, 1)[5..],
            ["+time=1", "+search", "-t", "A", "abc"]
        );
        assert_eq!(trace_name(&c[0]), "www.example.test.");
        let g = &checks::parse(
            "checks:\n- name: dns-querier-1\n  via: getent\n",
            "f",
            checks::DEFAULT_TIMEOUT,
            "tools",
        )
        .unwrap()[0];
        assert_eq!(command(g, None, 2), ["getent", "hosts", "dns-querier-1"]);
        assert_eq!(
            trace_name(g),
            "dns-querier-1",
            "getent walks the search list"
        );
        assert_eq!(command(&c[0], Some(Transport::Tcp), 2)[6], "+tcp");
        assert_eq!(trace_name(&c[1]), "abc");
    }
}
