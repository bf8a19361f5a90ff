//! Test images without a registry: a root filesystem assembled from host files (e.g. Debian's
//! `busybox-static`) and generated ones, imported with the engine's import endpoint
//! (`POST /images/create?fromSrc=-`, what `docker import -` calls).

use std::path::Path;

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

/// Compiles the resolver probe (`examples/resolver-libraries/resolve.c`: one `getaddrinfo`
/// lookup, printing each address) with `compiler` and `flags` into a temporary directory.
fn compile_probe(compiler: &str, flags: &[&str], package: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("resolve");
    let r = std::process::Command::new(compiler)
        .args(flags)
        .arg("-O2")
        .arg("-o")
        .arg(&out)
        .arg(crate::example("resolver-libraries/resolve.c"))
        .output()
        .unwrap_or_else(|e| panic!("running {compiler}: {e} (`apt-get install {package}`)"));
    let run = Run::from(r);
    assert!(run.ok, "{compiler} resolve.c: {}", run.stderr);
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

/// A glibc image: the resolver probe built with the host's C compiler against its glibc, with
/// every shared library it loads (found from its ELF dependencies, as the node image's are), an
/// `nsswitch.conf` (`hosts: files dns`) and busybox — glibc's own resolver, as a Debian-based
/// image has it. Needs `gcc` (`apt-get install gcc`).
pub fn glibc_probe_image(tag: &str) -> String {
    let dir = compile_probe("cc", &[], "gcc");
    let probe = dir.path().join("resolve");
    let libs = minikind_images::elf_deps::closure(
        std::slice::from_ref(&probe),
        &minikind_images::elf_deps::host_library_dirs(),
    )
    .expect("the probe's shared libraries");
    let lib_names: Vec<(std::path::PathBuf, String)> = libs
        .iter()
        .map(|l| {
            (
                l.clone(),
                l.display().to_string().trim_start_matches('/').to_string(),
            )
        })
        .collect();
    let mut files = busybox_files();
    files.push(ImageFile::Host(&probe, "usr/local/bin/resolve"));
    for (host, path) in &lib_names {
        files.push(ImageFile::Host(host, path));
    }
    files.push(ImageFile::Bytes(
        "etc/nsswitch.conf",
        b"hosts: files dns\n".to_vec(),
        0o644,
    ));
    files.push(ImageFile::Bytes(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        0o644,
    ));
    build_image(tag, &files, &["/bin/sh"])
}

/// A musl image: the same probe linked statically against musl (`musl-gcc -static`, Debian's
/// `musl-tools`) and busybox — musl's resolver, as an Alpine-based image has it.
pub fn musl_probe_image(tag: &str) -> String {
    let dir = compile_probe("musl-gcc", &["-static"], "musl-tools");
    let probe = dir.path().join("resolve");
    let mut files = busybox_files();
    files.push(ImageFile::Host(&probe, "usr/local/bin/resolve"));
    files.push(ImageFile::Bytes(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        0o644,
    ));
    build_image(tag, &files, &["/bin/sh"])
}
