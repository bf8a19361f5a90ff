//! `minikind`: the host command line, and — the same executable — the node agent and the small
//! tools that nodes and pods run (dispatched on the name it was started as, busybox-style).

mod cloud_provider;
mod cluster;
mod commands;
mod config;
mod coreutils;
mod dns;
mod images;
mod interrupt;
mod multicall;
mod node_images;
mod objects;
mod pod_commands;
mod progress;
mod provider;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = multicall::dispatch(&args) {
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    commands::main(args)
}
