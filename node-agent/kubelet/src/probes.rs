//! Container probes as the kubelet runs them: `exec` inside the pod's namespaces, `httpGet`
//! and `tcpSocket` from the node to the pod's IP, with `initialDelaySeconds`,
//! `periodSeconds`, `timeoutSeconds` and the success/failure thresholds.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::spawn::{self, ProcessSpec};

/// What a probe runs against.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    pub pod_ip: IpAddr,
    pub container: Container,
    /// The container's current process (its user, environment, directory) and the PID
    /// whose namespaces an exec probe enters; None while it is not running.
    pub process: Option<ProcessSpec>,
    pub pid: Option<i32>,
}

/// One probe result; failures say why.
pub type ProbeResult = Result<(), String>;

/// The timing of a probe with the API's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Resolves a probe port: a number, or the name of one of the container's ports.
fn port_of(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("port {name:?} is not a named port of the container"))
        }
    }
}

/// Runs `probe` once.
pub async fn run_once(probe: &Probe, target: &ProbeTarget) -> ProbeResult {
    let timeout = Timing::of(probe).timeout;
    if let Some(e) = &probe.exec {
        return exec_probe(e.command.as_deref().unwrap_or(&[]), target, timeout).await;
    }
    if let Some(h) = &probe.http_get {
        let port = port_of(&h.port, &target.container)?;
        let host: IpAddr = match h.host.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => h
                .parse()
                .map_err(|_| format!("httpGet host {h:?} is not an IP address"))?,
            None => target.pod_ip,
        };
        if h.scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
        {
            return Err("httpGet with scheme HTTPS is not supported by minikind's kubelet".into());
        }
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|hd| (hd.name.clone(), hd.value.clone()))
            .collect();
        let path = h.path.as_deref().unwrap_or("/");
        return tokio::time::timeout(
            timeout,
            http_get(SocketAddr::new(host, port), path, &headers),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "Get \"http://{host}:{port}{path}\": context deadline exceeded"
            ))
        });
    }
    if let Some(t) = &probe.tcp_socket {
        let port = port_of(&t.port, &target.container)?;
        let host: IpAddr = match t.host.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => h
                .parse()
                .map_err(|_| format!("tcpSocket host {h:?} is not an IP address"))?,
            None => target.pod_ip,
        };
        let addr = SocketAddr::new(host, port);
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
            Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if probe.grpc.is_some() {
        return Err("grpc probes are not supported by minikind's kubelet".into());
    }
    Err("probe has no handler (exec, httpGet or tcpSocket)".into())
}

async fn exec_probe(command: &[String], target: &ProbeTarget, timeout: Duration) -> ProbeResult {
    if command.is_empty() {
        return Err("exec probe has an empty command".into());
    }
    let (Some(process), Some(pid)) = (&target.process, target.pid) else {
        return Err("the container is not running".into());
    };
    let spec = ProcessSpec {
        argv: command.to_vec(),
        ..process.clone()
    };
    let mut prepared = spawn::enter_command(pid, &spec).map_err(|e| format!("{e:#}"))?;
    let cmd = &mut prepared.cmd;
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = prepared
        .spawn()
        .map_err(|e| format!("starting the probe: {e:#}"))?
        .child;
    let pgid = child.id().map(|p| p as i32);
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            Err(format!(
                "command {command:?} exited with {}: {}",
                out.status.code().unwrap_or(-1),
                text.trim()
            ))
        }
        Ok(Err(e)) => Err(format!("waiting for the probe: {e}")),
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(format!("command {command:?} timed out after {timeout:?}"))
        }
    }
}

/// A plain HTTP/1.1 GET: success is a status from 200 to 399, as the kubelet's prober counts it.
async fn http_get(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> ProbeResult {
    let url = format!("http://{addr}{path}");
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("Get \"{url}\": dial tcp {addr}: {e}"))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
    {
        req.push_str(&format!(
            "User-Agent: {}\r\n",
            minikind_contract::kubernetes::PROBE_USER_AGENT
        ));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
    {
        req.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// Consecutive equal results, counted against the thresholds as the kubelet's probe worker
/// counts them: a result only counts once it came `successThreshold` (or `failureThreshold`)
/// times in a row; below that the previous result stands.
#[derive(Debug, Clone, Default)]
pub struct Streak {
    last: Option<bool>,
    run: u32,
}

impl Streak {
    /// Records one result; Some(ok) when the streak reached its threshold.
    pub fn record(&mut self, ok: bool, timing: &Timing) -> Option<bool> {
        if self.last == Some(ok) {
            self.run += 1;
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok {
            timing.success_threshold
        } else {
            timing.failure_threshold
        };
        (self.run >= threshold).then_some(ok)
    }

    /// Starts counting anew (after a kill, for the next container).
    pub fn restart(&mut self) {
        self.run = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_and_thresholds() {
        let t = Timing::of(&probe(json!({"exec": {"command": ["true"]}})));
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        let t = Timing {
            success_threshold: 2,
            ..t
        };
        let mut s = Streak::default();
        assert_eq!(s.record(true, &t), None);
        assert_eq!(s.record(true, &t), Some(true));
        // At or past the threshold every result counts.
        assert_eq!(s.record(true, &t), Some(true));
        assert_eq!(s.record(false, &t), None);
        assert_eq!(s.record(false, &t), None);
        assert_eq!(s.record(false, &t), Some(false));
        // After a kill the failures count again from the next one.
        s.restart();
        assert_eq!(s.record(false, &t), None);
        assert_eq!(s.record(true, &t), None);
    }

    fn target(ports: serde_json::Value) -> ProbeTarget {
        ProbeTarget {
            pod_ip: IpAddr::from([127, 0, 0, 1]),
            container: serde_json::from_value(json!({"name": "c", "ports": ports})).unwrap(),
            process: None,
            pid: None,
        }
    }

    #[tokio::test]
    async fn tcp_and_http_probes_on_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let code = if n == 0 {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                n += 1;
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let t = target(json!([{"name": "http", "containerPort": port}]));
        let tcp = probe(json!({"tcpSocket": {"port": port}}));
        // The tcp probe's connection counts as the server's first request: answer 200 to it.
        assert_eq!(run_once(&tcp, &t).await, Ok(()));
        let http = probe(json!({"httpGet": {"port": "http", "path": "/ready"}}));
        let e = run_once(&http, &t).await.unwrap_err();
        assert_eq!(e, "HTTP probe failed with statuscode: 503");
        let named_missing = probe(json!({"httpGet": {"port": "nope"}}));
        assert!(
            run_once(&named_missing, &t)
                .await
                .unwrap_err()
                .contains("\"nope\"")
        );
        let closed = probe(json!({"tcpSocket": {"port": 1}}));
        assert!(
            run_once(&closed, &t)
                .await
                .unwrap_err()
                .starts_with("dial tcp 127.0.0.1:1")
        );
        assert!(
            run_once(&probe(json!({})), &t)
                .await
                .unwrap_err()
                .contains("no handler")
        );
    }
}
