//! The end-to-end tests (`tests/`) and benchmarks (`benches/`): real clusters on the local
//! Docker engine. Their fixtures live in `minikind-test-support`, shared with every crate's tests.
