//! The streaming subresources through the pinned kubectl: `kubectl port-forward` to a pod and
//! to a Service (kubectl picks one of its pods) reaches an HTTP server in the pod over the
//! WebSocket tunnel kubectl 1.31+ opens first and over the SPDY/3.1 upgrade it falls back to,
//! and a port nothing listens on comes back as the kubelet's error on the error stream.
//! Traffic goes only to the loopback (kubectl's listener) and, from the node's kubelet, to the
//! pod's own loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use minikind_test_support::{Cluster, kubectl, test_kubeconfig};

const HERMETIC: &str = "networking:\n  internal: true\ndns:\n  upstream: lab\n";
const PAGE: &str = "served-through-port-forward";

/// A running `kubectl port-forward`, killed when dropped, and the local port it listens on.
struct PortForward {
    child: Child,
    port: u16,
    stderr: mpsc::Receiver<String>,
}

impl PortForward {
    fn start(c: &Cluster, target: &str, remote: u16, websockets: bool) -> PortForward {
        let mut cmd = Command::new(kubectl());
        cmd.arg("--kubeconfig")
            .arg(test_kubeconfig())
            .args(["--context", &format!("minikind-{}", c.name)])
            .args(["port-forward", target, &format!(":{remote}")])
            // At 4, client-go says which dialer it ended up with.
            .arg("-v=4")
            // kubectl's switch between its WebSocket tunnel and the SPDY upgrade.
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("starting kubectl port-forward");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let tx_out = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx_out.send(l);
            }
        });
        let (etx, erx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = etx.send(l);
            }
        });
        // "Forwarding from 127.0.0.1:43567 -> 8080"
        let mut seen = Vec::new();
        let port = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) => {
                    if let Some(p) = l
                        .strip_prefix("Forwarding from 127.0.0.1:")
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|p| p.parse().ok())
                    {
                        break p;
                    }
                    seen.push(l);
                }
                Err(_) => {
                    let _ = child.kill();
                    let errs: Vec<String> = erx.try_iter().collect();
                    panic!("kubectl port-forward {target} printed no port: {seen:?} {errs:?}");
                }
            }
        };
        PortForward {
            child,
            port,
            stderr: erx,
        }
    }

    /// An HTTP/1.0 GET of `/` through the forwarded port: the whole answer.
    fn get(&self) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// kubectl's error lines within `wait`.
    fn errors(&self, wait: Duration) -> Vec<String> {
        let mut v = Vec::new();
        let end = std::time::Instant::now() + wait;
        while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(l) => v.push(l),
                Err(_) => break,
            }
        }
        v
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kubectl_port_forward_reaches_a_pod_and_a_service_over_websocket_and_spdy() {
    let c = Cluster::create(
        "streams-pf",
        &format!("nodes:\n- role: control-plane\n{HERMETIC}"),
    );
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {{app: web}}\nspec:\n  \
         containers:\n  - name: httpd\n    image: minikind/tools\n    command: [sh, -c, \
         \"mkdir -p /tmp/www && echo {PAGE} > /tmp/www/index.html && exec httpd -f -p 8080 -h \
         /tmp/www\"]\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  \
         selector: {{app: web}}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
    );
    let r = c.kubectl(&["apply", "-f", "-"], Some(&manifest));
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    c.wait_pod_ready("default", "web");

    for websockets in [true, false] {
        let pf = PortForward::start(&c, "pod/web", 8080, websockets);
        // Twice: each local connection is a new stream pair on the same connection.
        for _ in 0..2 {
            let answer = pf.get();
            assert!(
                answer.starts_with("HTTP/1."),
                "websockets={websockets}: {answer:?}"
            );
            assert!(answer.contains(PAGE), "websockets={websockets}: {answer:?}");
        }
        let log = pf.errors(Duration::from_millis(500)).join("\n");
        if websockets {
            // The WebSocket tunnel itself served, not the SPDY fallback behind it.
            assert!(log.contains("Negotiation complete"), "{log}");
            assert!(!log.contains("fallback to secondary dialer"), "{log}");
        }
        drop(pf);
        // The Service's port 80 is the pod's 8080: kubectl resolves both.
        let pf = PortForward::start(&c, "svc/web", 80, websockets);
        assert!(pf.get().contains(PAGE), "svc/web websockets={websockets}");
    }

    // Nothing listens on 9: the kubelet says so on the error stream, kubectl prints it.
    let pf = PortForward::start(&c, "pod/web", 9, true);
    let answer = pf.get();
    assert!(!answer.contains(PAGE), "{answer:?}");
    let errors = pf.errors(Duration::from_secs(5)).join("\n");
    assert!(
        errors.contains("error forwarding port 9 to pod default/web")
            && errors.contains("failed to connect to localhost:9 inside namespace"),
        "{errors}"
    );
}
