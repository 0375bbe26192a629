//! The files a policy reads besides itself (secret, header, key, password and
//! credentials files): each read under a size cap, its bytes kept for the
//! policy's fingerprint, so rotating one is a change a reload applies.

use std::path::Path;

use sha2::Digest as _;

use super::super::raw::Str;
use super::Compiler;

impl Compiler<'_> {
    /// A secret, header value, key or password file's text (trailing line breaks cut),
    /// its bytes kept for the fingerprint so a rotated file is a change.
    pub(super) fn read_file(&mut self, s: &Str, path: &str) -> Option<String> {
        let name = self.string(s, path)?;
        let full = self.base_dir.join(&name);
        let read = read_capped(&full).and_then(|bytes| {
            String::from_utf8(bytes.clone())
                .map(|text| (text, bytes))
                .map_err(|_| "not UTF-8 text".to_owned())
        });
        match read {
            Ok((text, bytes)) => {
                self.included.push((full, bytes));
                Some(text.trim_end_matches(['\n', '\r']).to_owned())
            }
            Err(e) => {
                self.error(
                    path,
                    s.referenced,
                    format!("cannot read {}: {e}", full.display()),
                );
                None
            }
        }
    }

    /// Bytes of a file a source reads when it connects (TLS, credentials):
    /// kept for the fingerprint and returned as a digest for the source's
    /// entry, so a rotated file restarts that source on reload. A file that
    /// cannot be read is the source's error when it connects, as before.
    pub fn stamp_files(&mut self, files: &[&Path]) -> [u8; 32] {
        let mut digest = sha2::Sha256::new();
        for file in files {
            let bytes = read_capped(file).unwrap_or_else(|e| e.into_bytes());
            digest.update((bytes.len() as u64).to_le_bytes());
            digest.update(&bytes);
            self.included.push((file.to_path_buf(), bytes));
        }
        digest.finalize().into()
    }
}

/// Length-prefixed fields into one SHA-256, so `("ab","c")` ≠ `("a","bc")`:
/// what names a client (its certificate files, its proxy, its OAuth2
/// settings) without holding the secrets themselves.
pub(super) fn digest(fields: &[&[u8]]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for f in fields {
        h.update((f.len() as u64).to_le_bytes());
        h.update(f);
    }
    h.finalize().into()
}

/// Largest secret, header, key, password or credentials file read.
const MAX_SECRET_FILE_BYTES: u64 = 1024 * 1024;

/// A file's bytes, refused past [`MAX_SECRET_FILE_BYTES`]. Symlinks are
/// followed (mounted secrets are links swapped on rotation).
fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!("larger than {MAX_SECRET_FILE_BYTES} bytes"));
    }
    Ok(bytes)
}
