//! The local state file on disk.
//!
//! - One run at a time: an exclusive `flock` on `<state>.lock`, taken without waiting. The
//!   kernel drops it when the process ends, however it ends, so a crash leaves no stale lock.
//!   The holder writes who/when/what into the lock file so a refused run can name it, and
//!   removes the file when it lets go (as Terraform's `.tfstate.lock.info`): a lock file is there
//!   only while a run holds it, or after a run was killed (harmless: nobody holds its flock).
//!   Since the file can vanish between another run's open and its flock, a run that got the
//!   flock checks that the path still names the file it locked, and tries again if not.
//! - Atomic writes: temp file in the same directory, fsync, rename over the state, fsync the
//!   directory. A crash leaves either the old or the new file, never a mix.
//! - A backup: the previous state is kept as `<state>.backup` (itself written atomically).
//! - Compare-and-swap: a write names the revision (a SHA-256 of the bytes) it read; a file
//!   changed behind its back is a conflict.
//!
//! This is the byte level; [`super::store::StateStore`] parses, checks and numbers the states.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::{LockInfo, Revision, StateError};

fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> StateError + 'p {
    move |source| StateError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn location(path: &Path) -> String {
    format!("state file {}", path.display())
}

/// An open, locked state file. The lock lasts as long as this value.
#[derive(Debug)]
pub struct LocalStore {
    path: PathBuf,
    lock_path: PathBuf,
    lock_file: File,
}

impl LocalStore {
    /// Locks the state at `path` for `operation` (`plan`, `apply`, ...), failing at once if
    /// another process holds it.
    pub fn open(path: &Path, operation: &str) -> Result<Self, StateError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(io("cannot create the state directory", parent))?;
        }
        let lock_path = sibling(path, ".lock");
        let mut lock_file = lock(path, &lock_path)?;
        let record = serde_json::to_vec(&LockInfo::new(operation)).unwrap_or_default();
        lock_file
            .set_len(0)
            .and_then(|()| lock_file.seek(SeekFrom::Start(0)))
            .and_then(|_| lock_file.write_all(&record))
            .and_then(|()| lock_file.sync_data())
            .map_err(io("cannot record the lock holder in", &lock_path))?;
        remove_leftover_temp_files(path);
        Ok(LocalStore {
            path: path.to_path_buf(),
            lock_path,
            lock_file,
        })
    }

    /// Refuses, naming the holder, when another process holds the lock of the state at
    /// `path`; creates nothing (a run that only looks, such as a plan with no state yet,
    /// leaves no lock file behind).
    pub fn refuse_if_locked(path: &Path) -> Result<(), StateError> {
        let lock_path = sibling(path, ".lock");
        let mut lock_file = match OpenOptions::new().read(true).open(&lock_path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(StateError::Io {
                    action: "cannot open the lock file",
                    path: lock_path,
                    source,
                });
            }
        };
        match lock_file.try_lock() {
            // Nobody holds it (a killed run's file): let go at once, as found.
            Ok(()) => Ok(()),
            Err(TryLockError::WouldBlock) => Err(refused(path, &mut lock_file)),
            Err(TryLockError::Error(source)) => Err(StateError::Io {
                action: "cannot lock",
                path: lock_path,
                source,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn backup_path(&self) -> PathBuf {
        sibling(&self.path, ".backup")
    }

    /// The file's bytes and revision; `None` when there is no file.
    pub fn get(&self) -> Result<Option<(Vec<u8>, Revision)>, StateError> {
        get(&self.path)
    }

    /// Replaces the file with `bytes` if it is still at `expected` (`None`: if there is still
    /// no file), keeping the previous one as the backup. Gives the new revision.
    pub fn put(&self, bytes: &[u8], expected: Option<&Revision>) -> Result<Revision, StateError> {
        let current = self.get()?;
        if current.as_ref().map(|(_, revision)| revision) != expected {
            return Err(StateError::conflict(location(&self.path)));
        }
        if let Some((previous, _)) = &current {
            atomic_write(&self.backup_path(), previous)?;
        }
        atomic_write(&self.path, bytes)?;
        Ok(revision_of(bytes))
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        // Remove the file while the flock is still held (a run that opened it meanwhile sees
        // the path changed and tries again); the kernel releases the flock when it closes.
        let _ = self.lock_file.set_len(0);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Opens (creating it if needed) and flocks `lock_path` without waiting; refuses with the
/// holder's record when another process has it. Retries when the file it locked was removed
/// by a holder letting go in between (see the module docs).
fn lock(path: &Path, lock_path: &Path) -> Result<File, StateError> {
    lock_with(path, lock_path, || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path)
    })
}

/// [`lock`] with the opening of the lock file given, so a test can hand it the file a
/// finishing holder just unlinked.
fn lock_with(
    path: &Path,
    lock_path: &Path,
    mut open: impl FnMut() -> std::io::Result<File>,
) -> Result<File, StateError> {
    for _ in 0..100 {
        let mut lock_file = open().map_err(io("cannot open the lock file", lock_path))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(refused(path, &mut lock_file)),
            Err(TryLockError::Error(source)) => {
                return Err(StateError::Io {
                    action: "cannot lock",
                    path: lock_path.to_path_buf(),
                    source,
                });
            }
        }
        if same_file(&lock_file, lock_path) {
            return Ok(lock_file);
        }
    }
    Err(StateError::Io {
        action: "cannot lock (the lock file keeps being replaced)",
        path: lock_path.to_path_buf(),
        source: std::io::Error::other("gave up after 100 tries"),
    })
}

/// The refusal of a run that found the lock held: who holds it, from the holder's record.
fn refused(path: &Path, lock_file: &mut File) -> StateError {
    let mut text = String::new();
    let _ = lock_file.read_to_string(&mut text);
    let holder = serde_json::from_str::<LockInfo>(&text)
        .map(|info| info.to_string())
        .unwrap_or_else(|_| "another pwless process (it has not recorded who yet)".to_string());
    StateError::Locked {
        location: location(path),
        holder,
        hint: "wait for it to finish; the lock ends with its process, however it ends".into(),
    }
}

/// Whether `path` still names the open `file` (same device and inode).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// Reads a state file without its lock: writes replace the file whole, so a reader sees one
/// state or the other.
pub(crate) fn get(path: &Path) -> Result<Option<(Vec<u8>, Revision)>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let revision = revision_of(&bytes);
            Ok(Some((bytes, revision)))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io("cannot read state file", path)(source)),
    }
}

fn revision_of(bytes: &[u8]) -> Revision {
    Revision(hex::encode(sha2::Sha256::digest(bytes)))
}

/// Temp file beside `path`, fsync, rename, fsync the directory.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = directory.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&temp).map_err(io("cannot create", &temp))?;
        file.write_all(bytes).map_err(io("cannot write", &temp))?;
        file.sync_all().map_err(io("cannot fsync", &temp))?;
        drop(file);
        std::fs::rename(&temp, path).map_err(io("cannot rename into place", path))?;
        File::open(&directory)
            .and_then(|dir| dir.sync_all())
            .map_err(io("cannot fsync directory", &directory))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Temp files of writers that were killed mid-write. Only called with the lock held, when no
/// other writer of this state can exist.
fn remove_leftover_temp_files(path: &Path) {
    let Some(name) = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
    else {
        return;
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let prefixes = [format!(".{name}.tmp-"), format!(".{name}.backup.tmp-")];
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if prefixes
            .iter()
            .any(|prefix| file_name.starts_with(prefix.as_str()))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::super::store::{Location, StateStore};
    use super::super::{FORMAT_VERSION, State, StateError};
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pwless-store-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    async fn open(path: &Path) -> StateStore {
        StateStore::open(&Location::Local(path.to_path_buf()), "test")
            .await
            .unwrap()
    }

    #[test]
    fn the_lock_file_exists_only_while_the_lock_is_held() {
        let dir = temp_dir("lockfile");
        let path = dir.join("s.json");
        let lock_path = sibling(&path, ".lock");
        let held = LocalStore::open(&path, "apply").unwrap();
        assert!(lock_path.exists());
        assert!(matches!(
            LocalStore::open(&path, "plan"),
            Err(StateError::Locked { .. })
        ));
        drop(held);
        assert!(!lock_path.exists(), "the lock file outlived its lock");
        let again = LocalStore::open(&path, "plan").unwrap();
        assert!(lock_path.exists());
        drop(again);
        assert!(!lock_path.exists());
    }

    #[test]
    fn a_run_that_locked_a_removed_lock_file_tries_again() {
        // Run B opened the lock file, then run A (the holder) removed it and let go: B's flock
        // succeeds on a file nobody else can see. B must notice and lock the new file, or two
        // runs would hold "the" lock at once.
        let dir = temp_dir("lockrace");
        let path = dir.join("s.json");
        let lock_path = sibling(&path, ".lock");
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)
        };
        // The file this run opened is unlinked before it flocks it: its flock succeeds.
        let stale = open().unwrap();
        std::fs::remove_file(&lock_path).unwrap();
        let mut opens = 0;
        let mut handed = Some(stale);
        let locked = lock_with(&path, &lock_path, || {
            opens += 1;
            match handed.take() {
                Some(stale) => Ok(stale),
                None => open(),
            }
        })
        .unwrap();
        assert_eq!(
            opens, 2,
            "the unlinked file must be noticed and the path opened again"
        );
        assert!(same_file(&locked, &lock_path));
        // And it is the lock: another run is refused.
        let second = LocalStore::open(&path, "plan");
        assert!(
            matches!(second, Err(StateError::Locked { .. })),
            "{second:?}"
        );
    }

    #[tokio::test]
    async fn write_then_read_round_trips_and_keeps_a_backup() {
        let dir = temp_dir("roundtrip");
        let path = dir.join("s.json");
        let mut store = open(&path).await;
        let mut state = store
            .read()
            .await
            .unwrap()
            .unwrap_or_else(|| State::new("s"));
        assert_eq!(state.serial, 0);
        store.write(&mut state).await.unwrap();
        assert_eq!(state.serial, 1);
        let backup = sibling(&path, ".backup");
        assert!(!backup.exists());
        store.write(&mut state).await.unwrap();
        assert_eq!(state.serial, 2);
        let kept: State = serde_json::from_slice(&std::fs::read(&backup).unwrap()).unwrap();
        assert_eq!(kept.serial, 1);
        assert_eq!(kept.lineage, state.lineage);
        store.release().await;
        let mut again = open(&path).await;
        assert_eq!(again.read().await.unwrap(), Some(state));
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[tokio::test]
    async fn corrupt_and_newer_files_are_refused_and_left_alone() {
        let dir = temp_dir("corrupt");
        let path = dir.join("s.json");
        std::fs::write(&path, b"{not json").unwrap();
        let mut store = open(&path).await;
        assert!(matches!(
            store.read().await,
            Err(StateError::Corrupt { .. })
        ));
        let mut state = State::new("s");
        assert!(matches!(
            store.write(&mut state).await,
            Err(StateError::Corrupt { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"{not json");
        store.release().await;

        let newer = serde_json::json!({"version": FORMAT_VERSION + 1, "future": true});
        std::fs::write(&path, newer.to_string()).unwrap();
        let mut store = open(&path).await;
        assert!(matches!(
            store.read().await,
            Err(StateError::NewerVersion { .. })
        ));
        assert!(matches!(
            store.write(&mut state).await,
            Err(StateError::NewerVersion { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), newer.to_string().as_bytes());
    }

    #[tokio::test]
    async fn a_change_behind_the_stores_back_is_a_conflict() {
        let dir = temp_dir("conflict");
        let path = dir.join("s.json");
        let mut store = open(&path).await;
        let mut state = State::new("s");
        store.read().await.unwrap();
        store.write(&mut state).await.unwrap();
        let mut edited = state.clone();
        edited.serial = 7;
        std::fs::write(&path, serde_json::to_vec(&edited).unwrap()).unwrap();
        let error = store.write(&mut state).await.unwrap_err();
        assert!(
            error.to_string().contains("(serial 1 read, 7 there now"),
            "{error}"
        );
        assert!(matches!(error, StateError::Conflict { .. }));
    }
}
