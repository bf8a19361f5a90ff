//! Where the nodes run. KIND keeps each container engine behind
//! `pkg/cluster/internal/providers` (docker, podman, nerdctl); minikind has one, [`docker`], and
//! the create steps, `delete`, `get` and `dns` reach the engine through it.

pub mod docker;
