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
