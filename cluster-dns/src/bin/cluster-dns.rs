fn main() {
    std::process::exit(minikind_cluster_dns::cli_main(
        std::env::args_os().collect(),
    ));
}
