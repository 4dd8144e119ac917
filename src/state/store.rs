//! The local state file on disk.
//!
//! - One run at a time: an exclusive `flock` on `<state>.lock`, taken without waiting. The
//!   kernel drops it when the process ends, however it ends, so a crash leaves no stale lock.
//!   The holder writes who/when/what into the lock file so a refused run can name it.
//! - Atomic writes: temp file in the same directory, fsync, rename over the state, fsync the
//!   directory. A crash leaves either the old or the new file, never a mix.
//! - A backup: the previous state is kept as `<state>.backup` (itself written atomically).
//! - A corrupt file, or one from a newer pwless, is refused and never overwritten.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{FORMAT_VERSION, State};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state {} is locked by {holder}", path.display())]
    Locked { path: PathBuf, holder: String },
    #[error("state file {} is not valid pwless state ({reason}); it was left untouched — restore it from {} or fix it by hand", path.display(), backup.display())]
    Corrupt {
        path: PathBuf,
        backup: PathBuf,
        reason: String,
    },
    #[error("state file {} has format version {found}, newer than this pwless understands ({FORMAT_VERSION}); upgrade pwless", path.display())]
    NewerVersion { path: PathBuf, found: u64 },
    #[error("state file {} belongs to stack `{found}`, not `{expected}`; pass another --state path", path.display())]
    OtherStack {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("state file {} changed since it was read (serial {expected} expected, {found} found); refusing to overwrite", path.display())]
    Conflict {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> StateError + 'p {
    move |source| StateError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Who holds the lock, written into the lock file by its holder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub who: String,
    pub pid: u32,
    pub operation: String,
    pub created: String,
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {}) running `{}` since {} (lock id {})",
            self.who, self.pid, self.operation, self.created, self.id
        )
    }
}

/// An open, locked state file. The lock lasts as long as this value.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    lock_file: File,
    /// The serial on disk when we last read or wrote it; `None` when no file exists yet.
    disk_serial: Option<u64>,
    /// Whether the file has been read successfully: only then may it be overwritten.
    read_ok: bool,
}

impl StateStore {
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
        let mut lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io("cannot open the lock file", &lock_path))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = lock_file.read_to_string(&mut text);
                let holder = serde_json::from_str::<LockInfo>(&text)
                    .map(|info| info.to_string())
                    .unwrap_or_else(|_| {
                        "another pwless process (it has not recorded who yet)".to_string()
                    });
                return Err(StateError::Locked {
                    path: path.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(StateError::Io {
                    action: "cannot lock",
                    path: lock_path,
                    source,
                });
            }
        }
        let info = LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            who: who(),
            pid: std::process::id(),
            operation: operation.to_string(),
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        let record = serde_json::to_vec(&info).unwrap_or_default();
        lock_file
            .set_len(0)
            .and_then(|()| lock_file.seek(SeekFrom::Start(0)))
            .and_then(|_| lock_file.write_all(&record))
            .and_then(|()| lock_file.sync_data())
            .map_err(io("cannot record the lock holder in", &lock_path))?;
        remove_leftover_temp_files(path);
        Ok(StateStore {
            path: path.to_path_buf(),
            lock_file,
            disk_serial: None,
            read_ok: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn backup_path(&self) -> PathBuf {
        sibling(&self.path, ".backup")
    }

    /// Reads the state; `None` if there is none yet. Refuses corrupt and newer files.
    pub fn read(&mut self) -> Result<Option<State>, StateError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.disk_serial = None;
                self.read_ok = true;
                return Ok(None);
            }
            Err(source) => return Err(io("cannot read state file", &self.path)(source)),
        };
        let state = parse(&self.path, &self.backup_path(), &bytes)?;
        self.disk_serial = Some(state.serial);
        self.read_ok = true;
        Ok(Some(state))
    }

    /// Reads the state of `stack`, or a new empty one if there is none yet.
    pub fn read_or_new(&mut self, stack: &str) -> Result<State, StateError> {
        match self.read()? {
            Some(state) if state.stack != stack => Err(StateError::OtherStack {
                path: self.path.clone(),
                found: state.stack,
                expected: stack.to_string(),
            }),
            Some(state) => Ok(state),
            None => Ok(State::new(stack)),
        }
    }

    /// Writes `state` atomically as the next serial (and sets `state.serial` to it). The file
    /// must have been read through this store first, and not changed since.
    pub fn write(&mut self, state: &mut State) -> Result<(), StateError> {
        if !self.read_ok {
            // Covers corrupt or unread files: never overwrite what we could not read.
            self.read()?;
        }
        let found = on_disk_serial(&self.path, &self.backup_path())?;
        if found != self.disk_serial {
            return Err(StateError::Conflict {
                path: self.path.clone(),
                expected: self.disk_serial.unwrap_or(0),
                found: found.unwrap_or(0),
            });
        }
        let next = self
            .disk_serial
            .map_or(state.serial.max(1), |serial| serial + 1);
        let mut next_state = state.clone();
        next_state.serial = next;
        next_state.version = FORMAT_VERSION;
        next_state.pwless_version = env!("CARGO_PKG_VERSION").to_string();
        let mut bytes = serde_json::to_vec_pretty(&next_state).map_err(|error| StateError::Io {
            action: "cannot serialize state for",
            path: self.path.clone(),
            source: std::io::Error::other(error),
        })?;
        bytes.push(b'\n');

        if self.disk_serial.is_some() {
            let previous =
                std::fs::read(&self.path).map_err(io("cannot read state file", &self.path))?;
            atomic_write(&self.backup_path(), &previous)?;
        }
        atomic_write(&self.path, &bytes)?;
        self.disk_serial = Some(next);
        *state = next_state;
        Ok(())
    }
}

impl Drop for StateStore {
    fn drop(&mut self) {
        // Clear the holder record; the kernel releases the lock itself when the file closes.
        let _ = self.lock_file.set_len(0);
    }
}

pub(crate) fn parse(path: &Path, backup: &Path, bytes: &[u8]) -> Result<State, StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.to_path_buf(),
        backup: backup.to_path_buf(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| corrupt(error.to_string()))?;
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| corrupt("no format `version`".into()))?;
    if version > u64::from(FORMAT_VERSION) {
        return Err(StateError::NewerVersion {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let mut state: State =
        serde_json::from_value(value).map_err(|error| corrupt(error.to_string()))?;
    state.normalize();
    Ok(state)
}

fn on_disk_serial(path: &Path, backup: &Path) -> Result<Option<u64>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => parse(path, backup, &bytes).map(|state| Some(state.serial)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io("cannot read state file", path)(source)),
    }
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

fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|host| host.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{user}@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pwless-store-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn write_then_read_round_trips_and_keeps_a_backup() {
        let dir = temp_dir("roundtrip");
        let path = dir.join("s.json");
        let mut store = StateStore::open(&path, "test").unwrap();
        let mut state = store.read_or_new("s").unwrap();
        assert_eq!(state.serial, 0);
        store.write(&mut state).unwrap();
        assert_eq!(state.serial, 1);
        assert!(!store.backup_path().exists());
        store.write(&mut state).unwrap();
        assert_eq!(state.serial, 2);
        let backup: State =
            serde_json::from_slice(&std::fs::read(store.backup_path()).unwrap()).unwrap();
        assert_eq!(backup.serial, 1);
        assert_eq!(backup.lineage, state.lineage);
        drop(store);
        let mut again = StateStore::open(&path, "test").unwrap();
        assert_eq!(again.read().unwrap(), Some(state));
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn corrupt_and_newer_files_are_refused_and_left_alone() {
        let dir = temp_dir("corrupt");
        let path = dir.join("s.json");
        std::fs::write(&path, b"{not json").unwrap();
        let mut store = StateStore::open(&path, "test").unwrap();
        assert!(matches!(store.read(), Err(StateError::Corrupt { .. })));
        let mut state = State::new("s");
        assert!(matches!(
            store.write(&mut state),
            Err(StateError::Corrupt { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"{not json");
        drop(store);

        let newer = serde_json::json!({"version": FORMAT_VERSION + 1, "future": true});
        std::fs::write(&path, newer.to_string()).unwrap();
        let mut store = StateStore::open(&path, "test").unwrap();
        assert!(matches!(store.read(), Err(StateError::NewerVersion { .. })));
        assert!(matches!(
            store.write(&mut state),
            Err(StateError::NewerVersion { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), newer.to_string().as_bytes());
    }

    #[test]
    fn a_change_behind_the_stores_back_is_a_conflict() {
        let dir = temp_dir("conflict");
        let path = dir.join("s.json");
        let mut store = StateStore::open(&path, "test").unwrap();
        let mut state = store.read_or_new("s").unwrap();
        store.write(&mut state).unwrap();
        let mut edited = state.clone();
        edited.serial = 7;
        std::fs::write(&path, serde_json::to_vec(&edited).unwrap()).unwrap();
        assert!(matches!(
            store.write(&mut state),
            Err(StateError::Conflict {
                expected: 1,
                found: 7,
                ..
            })
        ));
    }

    #[test]
    fn state_of_another_stack_is_refused() {
        let dir = temp_dir("other");
        let path = dir.join("s.json");
        let mut store = StateStore::open(&path, "test").unwrap();
        let mut state = store.read_or_new("one").unwrap();
        store.write(&mut state).unwrap();
        assert!(matches!(
            store.read_or_new("two"),
            Err(StateError::OtherStack { .. })
        ));
    }
}
