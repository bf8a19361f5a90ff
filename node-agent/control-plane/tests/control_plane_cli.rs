//! `minikind apiserver …` argument handling (the standalone entry point).

use minikind_control_plane::apiserver_cli_main;

fn run(args: &[&str]) -> i32 {
    let mut v = vec!["apiserver"];
    v.extend_from_slice(args);
    apiserver_cli_main(v.into_iter().map(Into::into).collect())
}

#[test]
fn control_plane_cli_refuses_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // Missing --data and an unparsable address are usage errors.
    assert_eq!(run(&[]), 2);
    assert_eq!(run(&["--data", data, "--listen", "nowhere"]), 2);
    assert_eq!(run(&["--data", data, "--service-cidr", "10.96.0.0/99"]), 2);
    // Plain HTTP only on loopback: refused before anything listens.
    assert_eq!(
        run(&["--data", data, "--listen", "0.0.0.0:0", "--insecure-http"]),
        1
    );
    assert_eq!(run(&["--help"]), 0);
}
