//! Snapshot files: the store's bytes at a raft index, written atomically.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Result;

/// The directory of snapshot files, named `<index>-<term>.snap`.
pub(crate) struct SnapDir {
    dir: PathBuf,
}

impl SnapDir {
    pub(crate) fn open(dir: PathBuf) -> Result<SnapDir> {
        fs::create_dir_all(&dir)?;
        // Leftovers of a write cut short are never referenced: drop them.
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(path);
            }
        }
        Ok(SnapDir { dir })
    }

    fn path(&self, index: u64, term: u64) -> PathBuf {
        self.dir.join(format!("{index:020}-{term:020}.snap"))
    }

    /// Writes the file and makes it durable (file and directory fsync).
    pub(crate) fn write(&self, index: u64, term: u64, data: &[u8]) -> Result<()> {
        let path = self.path(index, term);
        let tmp = path.with_extension("tmp");
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)
    }

    pub(crate) fn read(&self, index: u64, term: u64) -> Result<Vec<u8>> {
        Ok(fs::read(self.path(index, term))?)
    }

    /// Deletes all but the newest `1 + keep_old` snapshot files.
    pub(crate) fn prune(&self, keep_old: u64) -> Result<()> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "snap"))
            .collect();
        files.sort();
        let keep = (1 + keep_old) as usize;
        if files.len() > keep {
            for old in &files[..files.len() - keep] {
                fs::remove_file(old)?;
            }
        }
        Ok(())
    }

    /// Number of snapshot files on disk.
    pub(crate) fn count(&self) -> usize {
        fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
                    .count()
            })
            .unwrap_or(0)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_prune() {
        let tmp = tempfile::tempdir().unwrap();
        let d = SnapDir::open(tmp.path().join("snap")).unwrap();
        for i in 1..=4 {
            d.write(i * 10, 2, &[i as u8; 3]).unwrap();
        }
        d.prune(1).unwrap();
        assert_eq!(d.count(), 2);
        assert_eq!(d.read(40, 2).unwrap(), vec![4; 3]);
        assert!(d.read(10, 2).is_err());
    }
}
