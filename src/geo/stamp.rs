//! Identity of a file on disk, to notice when it is replaced.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Device, inode, size and modification time (to the nanosecond) of a file.
/// Replacing a file by rename changes the inode even when the size and the
/// coarse mtime are unchanged; rewriting in place changes size or mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_s: i64,
    mtime_ns: i64,
}

impl FileStamp {
    /// The stamp of `path` now, or `None` if it cannot be read.
    pub fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_s: m.mtime(),
            mtime_ns: m.mtime_nsec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_over_with_same_size_and_mtime_changes_the_stamp() {
        let dir = std::env::temp_dir().join(format!("geosteer-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, b"same").unwrap();
        std::fs::write(&b, b"same").unwrap();
        // Same size, same mtime: only the inode tells them apart.
        let t = std::fs::metadata(&a).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&b)
            .unwrap()
            .set_modified(t)
            .unwrap();
        let before = FileStamp::of(&a).unwrap();
        assert_eq!(FileStamp::of(&a), Some(before));
        std::fs::rename(&b, &a).unwrap();
        assert_ne!(FileStamp::of(&a), Some(before));
        assert_eq!(FileStamp::of(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
