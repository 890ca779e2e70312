//! The Lambda package: our own binary as `bootstrap` in a zip, and where `deploy`,
//! `upgrade` and `lambda-export` find it.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where `scripts/build-lambda.sh` leaves the package, relative to the workspace root.
pub const BUILT_ZIP: &str = "target/lambda/bootstrap.zip";

/// Environment variable naming another package.
pub const ZIP_ENV: &str = "ZAEL_LAMBDA_ZIP";

/// The one-line hint when there is no package.
pub const BUILD_HINT: &str = "no Lambda package found: run scripts/build-lambda.sh (it builds \
     target/lambda/bootstrap.zip), or set ZAEL_LAMBDA_ZIP to a zip made by \
     'zae-limiter lambda-export --binary PATH'";

/// CRC-32 of `bytes` (names uploaded code by content).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Zip `binary` as the single executable file `bootstrap`.
pub fn zip_bootstrap(binary: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(binary).map_err(|e| format!("reading {}: {e}", binary.display()))?;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755)
        .large_file(bytes.len() > u32::MAX as usize);
    w.start_file("bootstrap", opts)
        .map_err(|e| format!("writing the zip: {e}"))?;
    w.write_all(&bytes)
        .map_err(|e| format!("writing the zip: {e}"))?;
    let out = w.finish().map_err(|e| format!("writing the zip: {e}"))?;
    Ok(out.into_inner())
}

/// The package to deploy: `$ZAEL_LAMBDA_ZIP`, else [`BUILT_ZIP`] under the current
/// directory or one of its parents, else under the directories above this executable
/// (`target/debug/zae-limiter` → `target/lambda/bootstrap.zip`).
pub fn find_zip() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(ZIP_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{ZIP_ENV}={} is not a file", p.display()))
        };
    }
    let mut starts = Vec::new();
    if let Ok(d) = std::env::current_dir() {
        starts.push(d);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            starts.push(d.to_path_buf());
        }
    }
    for s in starts {
        for dir in s.ancestors().take(8) {
            let p = dir.join(BUILT_ZIP);
            if p.is_file() {
                return Ok(p);
            }
            // from target/debug: target/lambda/bootstrap.zip is ../lambda/bootstrap.zip
            let p = dir.join("lambda/bootstrap.zip");
            if dir.ends_with("target") && p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(BUILD_HINT.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zips_one_executable_bootstrap() {
        let dir = std::env::temp_dir().join(format!("zael-pkg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("bin");
        std::fs::write(&bin, b"#!/bin/sh\necho hi\n").unwrap();
        let z = zip_bootstrap(&bin).unwrap();
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(z)).unwrap();
        assert_eq!(a.len(), 1);
        let mut f = a.by_index(0).unwrap();
        assert_eq!(f.name(), "bootstrap");
        assert_eq!(f.unix_mode().map(|m| m & 0o777), Some(0o755));
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).unwrap();
        assert_eq!(s, "#!/bin/sh\necho hi\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
