//! Test images without a registry: a root filesystem assembled from host files (e.g. Debian's
//! `busybox-static`) and generated ones, imported with the engine's import endpoint
//! (`POST /images/create?fromSrc=-`, what `docker import -` calls).

use std::path::{Path, PathBuf};

use crate::Run;

/// A file of a test image.
pub enum ImageFile<'a> {
    /// A host file copied in (mode kept).
    Host(&'a Path, &'a str),
    /// Generated content.
    Bytes(&'a str, Vec<u8>, u32),
    /// A symlink (`bin/sh` → `busybox`).
    Symlink(&'a str, &'a str),
}

/// Builds and imports an image tagged `tag` holding `files` with `cmd` as its command; returns
/// its ID (`sha256:…`). Panics with the engine's message on failure (a test helper).
pub fn build_image(tag: &str, files: &[ImageFile<'_>], cmd: &[&str]) -> String {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    let mut add_dirs = |b: &mut tar::Builder<Vec<u8>>, path: &str| {
        let mut p = Path::new(path).parent();
        let mut chain = Vec::new();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            chain.push(d.to_path_buf());
            p = d.parent();
        }
        for d in chain.into_iter().rev() {
            if dirs.insert(d.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(0);
                b.append_data(&mut h, &d, std::io::empty()).unwrap();
            }
        }
    };
    for f in files {
        match f {
            ImageFile::Host(host, path) => {
                add_dirs(&mut b, path);
                let mut file =
                    std::fs::File::open(host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
                b.append_file(path, &mut file).unwrap();
            }
            ImageFile::Bytes(path, body, mode) => {
                add_dirs(&mut b, path);
                let mut h = tar::Header::new_gnu();
                h.set_mode(*mode);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(body.len() as u64);
                b.append_data(&mut h, path, &body[..]).unwrap();
            }
            ImageFile::Symlink(path, target) => {
                add_dirs(&mut b, path);
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    let tar = b.into_inner().unwrap();
    let change = format!("CMD {}", serde_json::to_string(cmd).unwrap());
    let out = std::process::Command::new("docker")
        .args(["import", "--change", &change, "-", tag])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&tar)?;
            child.wait_with_output()
        })
        .expect("running docker import");
    let run = Run::from(out);
    assert!(run.ok, "docker import {tag}: {}", run.stderr);
    run.stdout.trim().to_string()
}

/// Host images a test made, removed (`docker rmi`) when dropped — also when the test fails.
pub struct HostImages(Vec<String>);

impl HostImages {
    /// Owns the images tagged `tags` (made or not yet made).
    pub fn new(tags: &[&str]) -> HostImages {
        HostImages(tags.iter().map(|t| t.to_string()).collect())
    }
}

impl Drop for HostImages {
    fn drop(&mut self) {
        let mut args = vec!["rmi"];
        args.extend(self.0.iter().map(String::as_str));
        let _ = crate::docker(&args);
    }
}

/// A busybox image from the host's `busybox-static` (`/bin/busybox`; `apt-get install
/// busybox-static`), with `sh` and `sleep` linked to it, plus `padding` bytes of incompressible
/// filler to reach a size.
pub fn busybox_image(tag: &str, padding: usize) -> String {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: `apt-get install busybox-static` (`.ci/run` installs it)"
    );
    let mut filler = vec![0u8; padding];
    // A cheap xorshift: incompressible enough, reproducible per size.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ padding as u64;
    for chunk in filler.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    let mut files = vec![
        ImageFile::Host(busybox, "bin/busybox"),
        ImageFile::Symlink("bin/sh", "busybox"),
        ImageFile::Symlink("bin/sleep", "busybox"),
    ];
    if padding > 0 {
        files.push(ImageFile::Bytes("var/filler", filler, 0o644));
    }
    build_image(tag, &files, &["/bin/sh"])
}

/// The prober programs (`examples/resolver-libraries/`): `resolve` (one `getaddrinfo` lookup,
/// printing each address) and `getent` (the `hosts`/`ahosts` databases of glibc's getent), both
/// compiled with `compiler` and `flags` into a temporary directory.
fn compile_probes(compiler: &str, flags: &[&str], package: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for program in ["resolve", "getent"] {
        let out = dir.path().join(program);
        let r = std::process::Command::new(compiler)
            .args(flags)
            .arg("-O2")
            .arg("-o")
            .arg(&out)
            .arg(crate::example(&format!("resolver-libraries/{program}.c")))
            .output()
            .unwrap_or_else(|e| panic!("running {compiler}: {e} (`apt-get install {package}`)"));
        let run = Run::from(r);
        assert!(run.ok, "{compiler} {program}.c: {}", run.stderr);
    }
    dir
}

/// busybox (`sh`, `sleep`, `cat`) for a probe image.
fn busybox_files() -> Vec<ImageFile<'static>> {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: `apt-get install busybox-static` (`.ci/run` installs it)"
    );
    vec![
        ImageFile::Host(busybox, "bin/busybox"),
        ImageFile::Symlink("bin/sh", "busybox"),
        ImageFile::Symlink("bin/sleep", "busybox"),
        ImageFile::Symlink("bin/cat", "busybox"),
    ]
}

/// ISC's `dig` as Debian ships it (`bind9-dnsutils`), the prober images' DNS client.
const ISC_DIG: &str = "/usr/bin/dig";

/// The shared libraries `programs` load (their ELF dependencies, found as the node image's
/// are), each with its path inside an image.
fn libraries_of(programs: &[PathBuf]) -> Vec<(PathBuf, String)> {
    minikind_images::elf_deps::closure(programs, &minikind_images::elf_deps::host_library_dirs())
        .expect("the probe programs' shared libraries")
        .into_iter()
        .map(|l| {
            let inside = l.display().to_string().trim_start_matches('/').to_string();
            (l, inside)
        })
        .collect()
}

/// A prober image: busybox, the probes compiled into `probes`, ISC's `dig`, the shared
/// libraries of every dynamically linked program among them, and `extra` files.
fn probe_image(tag: &str, probes: &Path, extra: Vec<ImageFile<'_>>) -> String {
    let dig = Path::new(ISC_DIG);
    assert!(
        dig.is_file(),
        "{ISC_DIG} is missing: `apt-get install bind9-dnsutils` (`.ci/run` installs it)"
    );
    let (resolve, getent) = (probes.join("resolve"), probes.join("getent"));
    // The closure of a static program is empty, so the musl image gets only dig's libraries.
    let libs = libraries_of(&[resolve.clone(), getent.clone(), dig.to_path_buf()]);
    let mut files = busybox_files();
    files.push(ImageFile::Host(&resolve, "usr/local/bin/resolve"));
    files.push(ImageFile::Host(&getent, "usr/bin/getent"));
    files.push(ImageFile::Host(dig, "usr/bin/dig"));
    files.extend(libs.iter().map(|(host, path)| ImageFile::Host(host, path)));
    files.push(ImageFile::Bytes(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        0o644,
    ));
    files.extend(extra);
    build_image(tag, &files, &["/bin/sh"])
}

/// A glibc image: the resolver probes built with the host's C compiler against its glibc, an
/// `nsswitch.conf` (`hosts: files dns`), ISC's `dig` and busybox — glibc's own resolver, as a
/// Debian-based image with `dnsutils` has it (upstream's glibc prober). Needs `gcc` and
/// `bind9-dnsutils`.
pub fn glibc_probe_image(tag: &str) -> String {
    let dir = compile_probes("cc", &[], "gcc");
    let nsswitch = ImageFile::Bytes("etc/nsswitch.conf", b"hosts: files dns\n".to_vec(), 0o644);
    probe_image(tag, dir.path(), vec![nsswitch])
}

/// A musl image: the same probes linked statically against musl (`musl-gcc -static`, Debian's
/// `musl-tools`), ISC's `dig` and busybox — musl's resolver, as an Alpine-based image with
/// `bind-tools` has it. `dig` brings glibc's libraries along for itself alone: it resolves with
/// ISC's own library, never the C library's, so which libc runs it does not change its
/// queries; `getent` and `resolve` are musl's.
pub fn musl_probe_image(tag: &str) -> String {
    let dir = compile_probes("musl-gcc", &["-static"], "musl-tools");
    probe_image(tag, dir.path(), Vec::new())
}
