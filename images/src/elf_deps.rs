//! Finds every shared library an ELF executable needs, the way the dynamic loader would.
//!
//! iptables and minikind are dynamically linked; copying them into an empty rootfs is only useful
//! with their interpreter and the transitive closure of their `DT_NEEDED` entries.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use goblin::elf::Elf;

#[derive(Debug, thiserror::Error)]
pub enum ElfDepsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a readable ELF file: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} needs {library}, which is in none of the library directories ({searched})")]
    NotFound {
        path: PathBuf,
        library: String,
        searched: String,
    },
}

/// The loader's search directories on this host: `/etc/ld.so.conf` (with its `include`s)
/// followed by the built-in defaults.
pub fn host_library_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    read_ld_so_conf(Path::new("/etc/ld.so.conf"), &mut dirs, 0);
    for d in [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    let mut seen = BTreeSet::new();
    dirs.retain(|d| d.is_dir() && seen.insert(d.clone()));
    dirs
}

fn read_ld_so_conf(path: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    // Includes may nest; a cycle would be a broken host, so give up quietly past a few levels.
    if depth > 4 {
        return;
    }
    let Ok(text) = fs::read_to_string(path) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pattern) = line.strip_prefix("include") {
            for file in glob_conf(pattern.trim()) {
                read_ld_so_conf(&file, out, depth + 1);
            }
        } else if !line.is_empty() {
            out.push(PathBuf::from(line));
        }
    }
}

/// The only glob ld.so.conf uses in practice: `<dir>/*.conf`.
fn glob_conf(pattern: &str) -> Vec<PathBuf> {
    let p = Path::new(pattern);
    let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let suffix = name.trim_start_matches('*');
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                f.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    if name.starts_with('*') {
                        n.ends_with(suffix)
                    } else {
                        n == name
                    }
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// What one ELF file asks of the loader.
#[derive(Debug, Default)]
pub struct ElfNeeds {
    pub interpreter: Option<PathBuf>,
    pub needed: Vec<String>,
    pub search: Vec<PathBuf>,
}

pub fn read_needs(path: &Path) -> Result<Option<ElfNeeds>, ElfDepsError> {
    let bytes = fs::read(path).map_err(|source| ElfDepsError::Read {
        path: path.to_owned(),
        source,
    })?;
    if !bytes.starts_with(b"\x7fELF") {
        // Scripts and data files have no dependencies of their own.
        return Ok(None);
    }
    let elf = Elf::parse(&bytes).map_err(|e| ElfDepsError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let origin = path.parent().unwrap_or(Path::new("/"));
    let search = elf
        .runpaths
        .iter()
        .chain(elf.rpaths.iter())
        .flat_map(|p| p.split(':'))
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(p.replace("$ORIGIN", &origin.to_string_lossy())))
        .collect();
    Ok(Some(ElfNeeds {
        interpreter: elf.interpreter.map(PathBuf::from),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        search,
    }))
}

/// Every file the loader opens to run `roots`: interpreters and the transitive closure of the
/// needed libraries, as the paths the loader would find (possibly symlinks; the rootfs builder
/// mirrors those).
pub fn closure(roots: &[PathBuf], lib_dirs: &[PathBuf]) -> Result<BTreeSet<PathBuf>, ElfDepsError> {
    let mut found = BTreeSet::new();
    let mut todo: Vec<PathBuf> = roots.to_vec();
    let mut visited = BTreeSet::new();
    while let Some(file) = todo.pop() {
        let real = fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        if !visited.insert(real) {
            continue;
        }
        let Some(needs) = read_needs(&file)? else {
            continue;
        };
        if let Some(interp) = needs.interpreter
            && found.insert(interp.clone())
        {
            todo.push(interp);
        }
        for lib in needs.needed {
            let dirs = needs.search.iter().chain(lib_dirs.iter());
            let hit = dirs.map(|d| d.join(&lib)).find(|p| p.is_file());
            match hit {
                Some(p) => {
                    if found.insert(p.clone()) {
                        todo.push(p);
                    }
                }
                None => {
                    return Err(ElfDepsError::NotFound {
                        path: file.clone(),
                        library: lib,
                        searched: lib_dirs
                            .iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_test_binary_needs_libc_and_an_interpreter() {
        let me = std::env::current_exe().unwrap();
        let needs = read_needs(&me).unwrap().expect("test binary is ELF");
        assert!(
            needs.interpreter.is_some(),
            "a dynamically linked binary has PT_INTERP"
        );
        assert!(needs.needed.iter().any(|l| l.starts_with("libc.so")));
        let all = closure(&[me], &host_library_dirs()).unwrap();
        assert!(all.iter().any(|p| p.to_string_lossy().contains("libc.so")));
        assert!(all.iter().any(|p| p.to_string_lossy().contains("ld-linux")));
    }

    #[test]
    fn a_script_has_no_needs() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.sh");
        fs::write(&f, "#!/bin/sh\necho hi\n").unwrap();
        assert!(read_needs(&f).unwrap().is_none());
    }

    #[test]
    fn a_missing_library_names_the_file_and_the_library() {
        // A copy of the test binary searched only in an empty directory cannot find libc.
        let empty = tempfile::tempdir().unwrap();
        let me = std::env::current_exe().unwrap();
        let err = closure(&[me], &[empty.path().to_owned()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("needs lib"), "{msg}");
    }
}
