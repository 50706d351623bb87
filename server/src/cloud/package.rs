//! Deterministic artifact packaging: the same source gives the same zip bytes, so the
//! content-addressed S3 key is stable and unchanged code never updates a function.

use std::io::{Cursor, Write};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::stack::{Artifact, FileEntry, StackError, StackFiles};

/// A zipped artifact folder.
#[derive(Debug, Clone)]
pub struct Package {
    pub artifact: Artifact,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl Package {
    /// The content-addressed object key under which the zip is stored.
    pub fn key(&self, stack: &str) -> String {
        let slug: String = self
            .artifact
            .path
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("stackgate/{stack}/{slug}/{}.zip", self.sha256)
    }
}

/// Zips one artifact folder of a stack.
pub fn package(files: &dyn StackFiles, artifact: &Artifact) -> Result<Package, StackError> {
    let entries = files.walk(&artifact.path)?;
    if entries.is_empty() {
        return Err(StackError::Io {
            file: files.display(&artifact.path),
            message: "the artifact folder is empty".into(),
        });
    }
    let bytes = zip_entries(&entries).map_err(|e| StackError::Io {
        file: files.display(&artifact.path),
        message: format!("zipping failed: {e}"),
    })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Package {
        artifact: artifact.clone(),
        bytes,
        sha256,
    })
}

/// Sorted entries, the zip epoch as every timestamp, and only two modes: nothing of the
/// machine that built it leaks into the bytes.
pub fn zip_entries(entries: &[FileEntry]) -> zip::result::ZipResult<Vec<u8>> {
    let mut sorted: Vec<&FileEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for e in sorted {
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(6))
            .last_modified_time(DateTime::default())
            .unix_permissions(if e.executable { 0o755 } else { 0o644 });
        zip.start_file(e.path.as_str(), opts)?;
        zip.write_all(&e.contents)?;
    }
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::DirFiles;

    fn artifact() -> Artifact {
        Artifact {
            path: "code".into(),
            bucket_parameter: "B".into(),
            key_parameter: "K".into(),
        }
    }

    #[test]
    fn same_source_same_bytes_whatever_the_mtime_and_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for (root, order) in [
            (a.path(), ["x.py", "sub/y.py"]),
            (b.path(), ["sub/y.py", "x.py"]),
        ] {
            for name in order {
                let p = root.join("code").join(name);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, format!("# {name}\n")).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let pa = package(&DirFiles::open(a.path()).unwrap(), &artifact()).unwrap();
        let pb = package(&DirFiles::open(b.path()).unwrap(), &artifact()).unwrap();
        assert_eq!(pa.sha256, pb.sha256);
        assert_eq!(pa.bytes, pb.bytes);
        assert!(pa.key("web").starts_with("stackgate/web/code/"));

        std::fs::write(b.path().join("code/x.py"), "# changed\n").unwrap();
        let pc = package(&DirFiles::open(b.path()).unwrap(), &artifact()).unwrap();
        assert_ne!(pa.sha256, pc.sha256);
    }

    #[test]
    fn the_zip_holds_the_files() {
        let a = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(a.path().join("code")).unwrap();
        std::fs::write(
            a.path().join("code/handler.py"),
            "def handler(e, c): pass\n",
        )
        .unwrap();
        let p = package(&DirFiles::open(a.path()).unwrap(), &artifact()).unwrap();
        let mut z = zip::ZipArchive::new(Cursor::new(p.bytes)).unwrap();
        let mut f = z.by_name("handler.py").unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).unwrap();
        assert_eq!(s, "def handler(e, c): pass\n");
    }

    #[test]
    fn a_missing_folder_is_bad_input() {
        let a = tempfile::tempdir().unwrap();
        let err = package(&DirFiles::open(a.path()).unwrap(), &artifact()).unwrap_err();
        assert!(err.to_string().contains("code"), "{err}");
    }
}
