//! sha256 digests as the OCI spec writes them (`sha256:<64 hex>`), and a reader that hashes
//! what passes through it.

use std::io::{self, Read};

use anyhow::{Result, bail};
use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of these bytes.
pub fn of_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:<hex>` digest, checked: it becomes a file name in the store, so
/// anything but 64 lowercase hex digits is refused.
pub fn hex_of(digest: &str) -> Result<&str> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        bail!("digest {digest:?} is not a sha256 digest (only sha256 is supported)");
    };
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        bail!("digest {digest:?} is not 64 lowercase hex digits");
    }
    Ok(hex)
}

/// The chain ID of a layer stack (OCI image spec, "ChainID"): the first layer's is its diffID,
/// each next one `sha256(parent_chain + " " + diff_id)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => of_bytes(format!("{parent} {diff}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Hashes and counts every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Reads what is left (a tar's trailing padding counts in its digest) and returns the
    /// digest and the byte count.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.bytes,
        ))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Counts every byte read through it (for content whose digest is already known).
pub struct CountingReader<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> CountingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, bytes: 0 }
    }

    /// Reads what is left and returns the byte count.
    pub fn finish(mut self) -> io::Result<u64> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.bytes)
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = of_bytes(b"a");
        let b = of_bytes(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], of_bytes(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn only_sha256_hex_names_a_file() {
        assert!(hex_of(&of_bytes(b"x")).is_ok());
        assert!(hex_of("sha256:../../etc").is_err());
        assert!(hex_of("sha512:00").is_err());
        assert!(hex_of(&format!("sha256:{}", "A".repeat(64))).is_err());
    }
}
