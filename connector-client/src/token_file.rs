//! [`TokenFile`]: an access token on disk that a reader always finds whole,
//! with the mode (and owner) it was asked for, and a small JSON file beside it
//! saying when the token expires.
//!
//! Every write goes to a fresh temporary file in the file's own directory, created
//! with the final mode from the start (`O_CREAT | O_EXCL` with that mode, so
//! there is no moment with wider permissions), given its owner and exact mode,
//! written, flushed to disk (`fsync`), and renamed over the token file; then
//! the directory is flushed too, so that the rename survives a crash. A reader
//! opening the path sees either the old token or the new one, never an empty
//! or partial file (spiffe-helper's and many hand-written sinks' failure).
//! Since every write makes a new file, an outside `chmod` or `chown` lasts
//! only until the next write.
//!
//! The info file (by default `PATH.json`) is written the same way, after the
//! token, through a temporary file in *its* directory: it may be elsewhere, on
//! another filesystem, and a rename never crosses filesystems (`EXDEV`).
//! Each directory written into is flushed after its rename.
//!
//! ```json
//! {"expires_at":"2026-05-01T12:05:00Z","expires_at_unix":1777637100,"token_type":"DPoP","scope":"actions:read"}
//! ```
//!
//! `token_type` is always there: `Bearer`, or `DPoP` for a DPoP-bound
//! token, the `Authorization` scheme to send the token with (a DPoP-bound
//! token needs a proof of its key with every request). `scope` is there
//! when the server named one. Since the token is written
//! first, a reader that reads the info file and then the token may for a
//! moment see the previous token's expiry with the new token: an expiry that
//! is earlier than the truth, never later.
//!
//! Unix only. The operations block (`fsync`): call them from a blocking
//! context (`tokio::task::spawn_blocking`), as [`FileSink`](crate::FileSink) does.

use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use oidc_core::calendar::Utc;

use crate::{AccessToken, TokenType};

/// A file mode: permission bits only (`0o000`–`0o777`); no setuid, setgid or
/// sticky bits. Parses from octal text: `600`, `0600` or `0o600`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(u32);

impl FileMode {
    /// Owner read and write only: the default for a token file.
    pub const OWNER_ONLY: FileMode = FileMode(0o600);

    /// The mode `bits`, if they are permission bits only.
    pub fn new(bits: u32) -> Result<Self, InvalidFileMode> {
        if bits > 0o777 {
            return Err(InvalidFileMode(format!("{bits:o}")));
        }
        Ok(Self(bits))
    }

    /// The permission bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl Default for FileMode {
    fn default() -> Self {
        Self::OWNER_ONLY
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl FromStr for FileMode {
    type Err = InvalidFileMode;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(InvalidFileMode(text.to_owned()));
        }
        let bits = u32::from_str_radix(digits, 8).map_err(|_| InvalidFileMode(text.to_owned()))?;
        Self::new(bits).map_err(|_| InvalidFileMode(text.to_owned()))
    }
}

/// Text that is not a file mode of permission bits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a file mode: give octal permission bits, 0000 to 0777 (for example 0600)")]
pub struct InvalidFileMode(String);

/// Who owns the token file: a numeric user id and optionally a group id (the
/// group is left alone without one). Parses from `UID` or `UID:GID`; names
/// are not looked up.
///
/// Changing the owner to another user needs privileges (root, or
/// `CAP_CHOWN`); [`TokenFile::check`] finds out at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The user id.
    pub uid: u32,
    /// The group id, if it is to be set.
    pub gid: Option<u32>,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.gid {
            Some(gid) => write!(f, "{}:{gid}", self.uid),
            None => write!(f, "{}", self.uid),
        }
    }
}

impl FromStr for Owner {
    type Err = InvalidOwner;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let id = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InvalidOwner(text.to_owned()));
            }
            part.parse::<u32>().map_err(|_| InvalidOwner(text.to_owned()))
        };
        match text.split_once(':') {
            Some((uid, gid)) => Ok(Self {
                uid: id(uid)?,
                gid: Some(id(gid)?),
            }),
            None => Ok(Self {
                uid: id(text)?,
                gid: None,
            }),
        }
    }
}

/// Text that is not `UID` or `UID:GID`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an owner: give a numeric UID or UID:GID (names are not looked up)")]
pub struct InvalidOwner(String);

/// A file operation that failed, with the path and the system's reason.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct TokenFileError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl TokenFileError {
    pub(crate) fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self {
            action,
            path: path.to_owned(),
            source,
        }
    }

    /// The path the operation was on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The system's error.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }
}

/// What the token file holds besides the token: when it expires, how it is
/// presented and the granted scope; written to the info file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// When the token expires, on the wall clock.
    pub expires_at: SystemTime,
    /// `Bearer`, or `DPoP` for a DPoP-bound token.
    pub token_type: TokenType,
    /// The granted scope, if the server named one.
    pub scope: Option<String>,
}

impl TokenInfo {
    /// What the info file says about `token`, which expires at `expires_at`.
    pub fn of(token: &AccessToken, expires_at: SystemTime) -> Self {
        Self {
            expires_at,
            token_type: token.token_type(),
            scope: token.scope().map(str::to_owned),
        }
    }

    /// The info file's JSON text. `token_type` is written for every token,
    /// bearer ones too: a reader in any language learns the `Authorization`
    /// scheme from the file without a rule for a missing member.
    pub fn to_json(&self) -> String {
        let mut info = serde_json::Map::new();
        info.insert("expires_at".into(), rfc3339(self.expires_at).into());
        info.insert("expires_at_unix".into(), unix_seconds(self.expires_at).into());
        info.insert("token_type".into(), self.token_type.scheme().into());
        if let Some(scope) = &self.scope {
            info.insert("scope".into(), scope.clone().into());
        }
        serde_json::Value::Object(info).to_string()
    }
}

/// Where and how a token is kept on disk; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
    dir: PathBuf,
    name: OsString,
    mode: FileMode,
    owner: Option<Owner>,
    info: Option<PathBuf>,
}

impl TokenFile {
    /// A token file at `path`, mode [`FileMode::OWNER_ONLY`], info file
    /// `PATH.json`. Fails if `path` names no file (`/`, `dir/`, `..`).
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, TokenFileError> {
        let path: PathBuf = path.into();
        let (dir, name) = split(&path)?;
        let mut info = path.clone().into_os_string();
        info.push(".json");
        Ok(Self {
            path,
            dir,
            name,
            mode: FileMode::OWNER_ONLY,
            owner: None,
            info: Some(PathBuf::from(info)),
        })
    }

    /// Gives the token file (and the info file) this mode.
    #[must_use]
    pub fn mode(mut self, mode: FileMode) -> Self {
        self.mode = mode;
        self
    }

    /// Gives the token file (and the info file) this owner.
    #[must_use]
    pub fn owner(mut self, owner: Owner) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Writes the info file at `path` instead of `PATH.json`; `None` writes
    /// none. It may be in another directory, on another filesystem: it is
    /// written through a temporary file in its own directory. A path that
    /// names no file is refused by [`check`](Self::check) and every write.
    #[must_use]
    pub fn info_file(mut self, path: Option<PathBuf>) -> Self {
        self.info = path;
        self
    }

    /// The token file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The info file's path, if one is written.
    pub fn info_path(&self) -> Option<&Path> {
        self.info.as_deref()
    }

    /// The mode every write gives the files.
    pub fn file_mode(&self) -> FileMode {
        self.mode
    }

    /// Checks, before any token is at stake, that writes can work: for the
    /// token file and the info file, the directory exists, the path is not a
    /// directory, and a file with this mode and owner can be created there
    /// (one is, and removed at once).
    pub fn check(&self) -> Result<(), TokenFileError> {
        for place in self.places()? {
            let metadata = std::fs::metadata(&place.dir)
                .map_err(|e| TokenFileError::new("use the directory", &place.dir, e))?;
            if !metadata.is_dir() {
                return Err(TokenFileError::new(
                    "use the directory",
                    &place.dir,
                    io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                ));
            }
            if place.path.is_dir() {
                return Err(TokenFileError::new(
                    "write a token file at",
                    place.path,
                    io::Error::new(io::ErrorKind::IsADirectory, "it is a directory"),
                ));
            }
            let (file, temp) = self.create_temp(&place)?;
            drop(file);
            std::fs::remove_file(&temp).map_err(|e| TokenFileError::new("remove", &temp, e))?;
        }
        Ok(())
    }

    /// Replaces the token file with `token` and the info file with `info`,
    /// each atomically.
    pub fn write(&self, token: &AccessToken, info: &TokenInfo) -> Result<(), TokenFileError> {
        let mut places = self.places()?.into_iter();
        if let Some(place) = places.next() {
            self.replace(&place, token.secret().as_str().as_bytes())?;
        }
        if let Some(place) = places.next() {
            self.replace(&place, info.to_json().as_bytes())?;
        }
        Ok(())
    }

    /// Replaces the file at [`path`](Self::path) with `contents`, atomically
    /// and with this mode and owner, as [`write`](Self::write) does for a
    /// token, and writes no info file: for other secrets readers need beside
    /// the token (the DPoP key of `connector-token agent` or `exec` with `--dpop-key-out`).
    pub fn write_contents(&self, contents: &[u8]) -> Result<(), TokenFileError> {
        let mut places = self.places()?.into_iter();
        match places.next() {
            Some(place) => self.replace(&place, contents),
            None => Ok(()),
        }
    }

    /// Removes the token file, then the info file. Returns whether there was
    /// a token file.
    pub fn remove(&self) -> Result<bool, TokenFileError> {
        let places = self.places()?;
        let mut existed = false;
        for (i, place) in places.iter().enumerate() {
            // The token file comes first.
            let removed = remove_if_there(place.path)?;
            existed |= i == 0 && removed;
        }
        // Each directory once (the info file is usually beside the token).
        for (i, place) in places.iter().enumerate() {
            if !places[..i].iter().any(|earlier| earlier.dir == place.dir) {
                sync_dir(&place.dir)?;
            }
        }
        Ok(existed)
    }

    /// Removes what an earlier writer may have left: the token file, the info
    /// file, and temporary files of interrupted writes (in the directory of
    /// each). Returns whether there was a token file.
    pub fn remove_leftovers(&self) -> Result<bool, TokenFileError> {
        for place in self.places()? {
            let entries =
                std::fs::read_dir(&place.dir).map_err(|e| TokenFileError::new("list", &place.dir, e))?;
            for entry in entries.flatten() {
                if place.is_temp_name(&entry.file_name()) {
                    remove_if_there(&entry.path())?;
                }
            }
        }
        self.remove()
    }

    /// The token file, then the info file if there is one, each with its
    /// directory and name.
    fn places(&self) -> Result<Vec<Place<'_>>, TokenFileError> {
        let token = Place {
            path: &self.path,
            dir: self.dir.clone(),
            name: self.name.clone(),
        };
        let mut places = vec![token];
        if let Some(info) = &self.info {
            let (dir, name) = split(info)?;
            places.push(Place {
                path: info,
                dir,
                name,
            });
        }
        Ok(places)
    }

    /// A new, empty temporary file in `place`'s directory, already with the
    /// final owner and mode.
    fn create_temp(&self, place: &Place<'_>) -> Result<(File, PathBuf), TokenFileError> {
        let (file, temp) = self.open_temp(place)?;
        let finish = || -> io::Result<()> {
            if let Some(owner) = self.owner {
                std::os::unix::fs::fchown(&file, Some(owner.uid), owner.gid)?;
            }
            // The umask may have narrowed the mode at creation (never widened
            // it), and a change of owner may clear bits: set it exactly.
            file.set_permissions(std::fs::Permissions::from_mode(self.mode.bits()))
        };
        match finish() {
            Ok(()) => Ok((file, temp)),
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                let action = if self.owner.is_some() {
                    "set the owner and mode of"
                } else {
                    "set the mode of"
                };
                Err(TokenFileError::new(action, &temp, e))
            }
        }
    }

    /// Creates a temporary file with `O_CREAT | O_EXCL` and the final mode,
    /// so it never exists with wider permissions. `O_EXCL` also refuses to
    /// follow a symbolic link planted at the name.
    fn open_temp(&self, place: &Place<'_>) -> Result<(File, PathBuf), TokenFileError> {
        let mut attempts = 0;
        loop {
            let temp = place.dir.join(place.temp_name());
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(self.mode.bits())
                .open(&temp)
            {
                Ok(file) => return Ok((file, temp)),
                // 64 random bits: a collision is a leftover of a crash or a
                // file someone planted; try another name a few times.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => attempts += 1,
                Err(e) => return Err(TokenFileError::new("create a temporary file in", &place.dir, e)),
            }
        }
    }

    /// Writes `contents` to a temporary file in `place`'s directory (a rename
    /// never crosses filesystems), renames it over the file, and flushes that
    /// directory.
    fn replace(&self, place: &Place<'_>, contents: &[u8]) -> Result<(), TokenFileError> {
        let path = place.path;
        let (mut file, temp) = self.create_temp(place)?;
        let written = file
            .write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(|e| TokenFileError::new("write", &temp, e))
            .and_then(|()| {
                drop(file);
                std::fs::rename(&temp, path)
                    .map_err(|e| TokenFileError::new("rename a temporary file to", path, e))
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        sync_dir(&place.dir)
    }
}

/// One of the files a [`TokenFile`] writes: its path, directory and name.
struct Place<'a> {
    path: &'a Path,
    dir: PathBuf,
    name: OsString,
}

impl Place<'_> {
    /// `.NAME.<16 hex digits>.tmp`
    fn temp_name(&self) -> OsString {
        let mut name = OsString::from(".");
        name.push(&self.name);
        name.push(format!(".{:016x}.tmp", rand::random::<u64>()));
        name
    }

    fn is_temp_name(&self, name: &std::ffi::OsStr) -> bool {
        let mut prefix = OsString::from(".");
        prefix.push(&self.name);
        prefix.push(".");
        let (name, prefix) = (name.as_encoded_bytes(), prefix.as_encoded_bytes());
        name.len() == prefix.len() + 16 + 4
            && name.starts_with(prefix)
            && name.ends_with(b".tmp")
            && name[prefix.len()..prefix.len() + 16]
                .iter()
                .all(u8::is_ascii_hexdigit)
    }
}

/// The directory and the name of the file `path` names; an error if it names
/// none (`/`, `dir/`, `..`).
fn split(path: &Path) -> Result<(PathBuf, OsString), TokenFileError> {
    let name = match path.file_name() {
        Some(name) if !path.as_os_str().as_encoded_bytes().ends_with(b"/") => name.to_owned(),
        _ => {
            return Err(TokenFileError::new(
                "write a token file at",
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
            ))
        }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// Flushes the directory `dir`, so that renames and removals in it survive a
/// crash.
fn sync_dir(dir: &Path) -> Result<(), TokenFileError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|e| TokenFileError::new("sync the directory", dir, e))
}

fn remove_if_there(path: &Path) -> Result<bool, TokenFileError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(TokenFileError::new("remove", path, e)),
    }
}

/// Whole seconds since the Unix epoch (0 before it).
pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `time` as RFC 3339 in UTC, to the second: `2026-05-01T12:05:00Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    Utc::from_unix_seconds(unix_seconds(time)).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::MetadataExt as _;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// A scratch folder, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            Self::under(&std::env::temp_dir()).unwrap()
        }

        /// A scratch folder in `base`, if one can be made there.
        fn under(base: &Path) -> io::Result<Self> {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = base.join(format!(
                "cc-token-file-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&dir)?;
            Ok(Self(dir))
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The umask is per process: tests that set it, and tests that depend on
    /// it, take this lock.
    static UMASK: Mutex<()> = Mutex::new(());

    fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
        let _guard = UMASK.lock().unwrap_or_else(|e| e.into_inner());
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
        let out = f();
        rustix::process::umask(old);
        out
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn info(secs: u64) -> TokenInfo {
        TokenInfo {
            expires_at: UNIX_EPOCH + Duration::from_secs(secs),
            token_type: TokenType::Bearer,
            scope: None,
        }
    }

    #[test]
    fn other_contents_are_written_the_same_way() {
        let dir = Scratch::new();
        let path = dir.0.join("dpop.pem");
        let file = TokenFile::new(&path).unwrap().info_file(None);
        file.write_contents(b"-----BEGIN PRIVATE KEY-----").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"-----BEGIN PRIVATE KEY-----");
        assert_eq!(mode_of(&path), 0o600);
        file.write_contents(b"again").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"again");
        assert_eq!(dir.names(), ["dpop.pem"]);
    }

    #[test]
    fn modes_parse_from_octal() {
        assert_eq!("0600".parse::<FileMode>().unwrap().bits(), 0o600);
        assert_eq!("640".parse::<FileMode>().unwrap().bits(), 0o640);
        assert_eq!("0o400".parse::<FileMode>().unwrap().bits(), 0o400);
        assert_eq!("0".parse::<FileMode>().unwrap().bits(), 0);
        for bad in [
            "",
            "0o",
            "8",
            "0680",
            "1777",
            "4755",
            "rw-------",
            "-600",
            "00600",
            " 600",
        ] {
            assert!(bad.parse::<FileMode>().is_err(), "{bad:?} was accepted");
        }
        assert_eq!(FileMode::new(0o440).unwrap().to_string(), "0440");
        assert!(FileMode::new(0o1000).is_err());
    }

    #[test]
    fn owners_parse_from_numbers() {
        assert_eq!("1000".parse::<Owner>().unwrap(), Owner { uid: 1000, gid: None });
        assert_eq!(
            "0:65534".parse::<Owner>().unwrap(),
            Owner {
                uid: 0,
                gid: Some(65534)
            }
        );
        for bad in [
            "",
            ":",
            "root",
            "1000:",
            ":1000",
            "1000:wheel",
            "-1",
            "1:2:3",
            "99999999999",
        ] {
            assert!(bad.parse::<Owner>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn rfc3339_dates() {
        let at = |secs| rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn info_json() {
        let mut i = info(1_700_000_000);
        assert_eq!(
            i.to_json(),
            r#"{"expires_at":"2023-11-14T22:13:20Z","expires_at_unix":1700000000,"token_type":"Bearer"}"#
        );
        i.scope = Some("actions:read".into());
        let v: serde_json::Value = serde_json::from_str(&i.to_json()).unwrap();
        assert_eq!(v["scope"], "actions:read");
    }

    #[test]
    fn info_of_a_token_says_how_to_present_it() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let bearer = AccessToken::new("t", Duration::from_secs(60)).with_scope("actions:read");
        let info = TokenInfo::of(&bearer, at);
        assert_eq!(
            (info.expires_at, info.token_type, info.scope.as_deref()),
            (at, TokenType::Bearer, Some("actions:read"))
        );
        let key = Arc::new(oidc_core::dpop::DpopKey::generate().unwrap());
        let bound = AccessToken::new("t", Duration::from_secs(60)).with_dpop_key(key);
        let v: serde_json::Value = serde_json::from_str(&TokenInfo::of(&bound, at).to_json()).unwrap();
        assert_eq!(v["token_type"], "DPoP");
        assert_eq!(v.get("scope"), None);
    }

    #[test]
    fn paths_that_name_no_file_are_refused() {
        for bad in ["/", "dir/", "..", "/tmp/.."] {
            assert!(TokenFile::new(bad).is_err(), "{bad:?} was accepted");
        }
        let file = TokenFile::new("token").unwrap();
        assert_eq!(file.dir, PathBuf::from("."));
        assert_eq!(file.info_path(), Some(Path::new("token.json")));
    }

    #[test]
    fn write_replaces_the_token_and_the_info_atomically_and_leaves_no_temporary_file() {
        let scratch = Scratch::new();
        let path = scratch.0.join("token");
        let file = TokenFile::new(&path).unwrap();
        file.check().unwrap();
        assert!(scratch.names().is_empty(), "check left {:?}", scratch.names());

        file.write(&AccessToken::new("first", Duration::from_secs(60)), &info(100))
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        let inode = std::fs::metadata(&path).unwrap().ino();
        file.write(&AccessToken::new("second", Duration::from_secs(60)), &info(200))
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        assert_ne!(
            std::fs::metadata(&path).unwrap().ino(),
            inode,
            "a new file is renamed over the old one, never rewritten in place"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(scratch.0.join("token.json")).unwrap()).unwrap();
        assert_eq!(json["expires_at_unix"], 200);
        assert_eq!(scratch.names(), ["token", "token.json"]);

        assert!(file.remove().unwrap());
        assert!(scratch.names().is_empty());
        assert!(!file.remove().unwrap(), "removing twice is fine");
    }

    #[test]
    fn the_temporary_file_is_created_with_the_final_mode() {
        // With a umask of 0, a file created with the default mode (0666) and
        // narrowed afterwards would be world-readable until then: the mode
        // must be the requested one from the creating open() on.
        let scratch = Scratch::new();
        for bits in [0o600, 0o640, 0o400] {
            let file = TokenFile::new(scratch.0.join("token"))
                .unwrap()
                .mode(FileMode::new(bits).unwrap());
            let place = &file.places().unwrap()[0];
            let (handle, temp) = with_umask(0, || file.open_temp(place).unwrap());
            assert_eq!(handle.metadata().unwrap().mode() & 0o7777, bits, "{bits:o}");
            std::fs::remove_file(temp).unwrap();
        }
    }

    #[test]
    fn the_mode_is_exact_whatever_the_umask_and_survives_an_outside_chmod() {
        let scratch = Scratch::new();
        let path = scratch.0.join("token");
        let file = TokenFile::new(&path).unwrap().mode(FileMode::new(0o640).unwrap());
        let token = AccessToken::new("t", Duration::from_secs(60));
        // A strict umask narrows the creation mode; the write sets it exactly.
        with_umask(0o077, || file.write(&token, &info(1)).unwrap());
        assert_eq!(mode_of(&path), 0o640);
        assert_eq!(mode_of(&scratch.0.join("token.json")), 0o640);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        file.write(&token, &info(2)).unwrap();
        assert_eq!(mode_of(&path), 0o640, "re-applied on the next write");
    }

    #[test]
    fn the_owner_is_set_on_every_write() {
        // Our own ids: permitted to everyone, root or not.
        let scratch = Scratch::new();
        let path = scratch.0.join("token");
        let me = std::fs::metadata(&scratch.0).unwrap();
        let owner = Owner {
            uid: me.uid(),
            gid: Some(me.gid()),
        };
        let file = TokenFile::new(&path).unwrap().owner(owner);
        file.check().unwrap();
        file.write(&AccessToken::new("t", Duration::from_secs(60)), &info(1))
            .unwrap();
        let written = std::fs::metadata(&path).unwrap();
        assert_eq!((written.uid(), written.gid()), (me.uid(), me.gid()));
    }

    #[test]
    fn check_names_the_problem() {
        let scratch = Scratch::new();
        let missing = TokenFile::new(scratch.0.join("no-such-dir/token")).unwrap();
        let e = missing.check().unwrap_err().to_string();
        assert!(e.starts_with("cannot use the directory "), "{e}");
        assert!(e.contains("No such file or directory"), "{e}");

        std::fs::create_dir(scratch.0.join("token")).unwrap();
        let e = TokenFile::new(scratch.0.join("token"))
            .unwrap()
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("it is a directory"), "{e}");
        let e = TokenFile::new(scratch.0.join("token/x")).unwrap().check();
        assert!(
            e.is_ok(),
            "a directory named like the token file is a fine parent"
        );
    }

    #[test]
    fn leftovers_of_an_earlier_writer_are_removed() {
        let scratch = Scratch::new();
        let path = scratch.0.join("token");
        let file = TokenFile::new(&path).unwrap();
        file.write(&AccessToken::new("old", Duration::from_secs(60)), &info(1))
            .unwrap();
        let (_handle, temp) = file.open_temp(&file.places().unwrap()[0]).unwrap();
        std::fs::write(scratch.0.join("unrelated"), "keep").unwrap();
        std::fs::write(scratch.0.join(".token.notours.tmp"), "keep").unwrap();
        assert!(temp.exists());
        assert!(file.remove_leftovers().unwrap());
        assert_eq!(scratch.names(), [".token.notours.tmp", "unrelated"]);
        assert!(!file.remove_leftovers().unwrap());
    }

    #[test]
    fn a_planted_symlink_is_never_followed() {
        let scratch = Scratch::new();
        let target = scratch.0.join("target");
        std::fs::write(&target, "precious").unwrap();
        let file = TokenFile::new(scratch.0.join("token")).unwrap();
        // The token path itself as a link: replaced by rename, target untouched.
        std::os::unix::fs::symlink(&target, scratch.0.join("token")).unwrap();
        file.write(&AccessToken::new("t", Duration::from_secs(60)), &info(1))
            .unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(scratch.0.join("token"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    /// Scratch folders on two different filesystems (by `st_dev`), from the
    /// writable places this machine has; `None` if all are on one.
    fn on_two_filesystems() -> Option<(Scratch, Scratch)> {
        let bases = [
            std::env::temp_dir(),
            PathBuf::from("/dev/shm"),
            PathBuf::from("/tmp"),
            PathBuf::from("/var/tmp"),
            PathBuf::from("/run"),
            PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        ];
        let scratches: Vec<Scratch> = bases
            .iter()
            .filter_map(|base| Scratch::under(base).ok())
            .collect();
        let dev = |s: &Scratch| std::fs::metadata(&s.0).unwrap().dev();
        let (i, j) = (0..scratches.len())
            .flat_map(|i| (i + 1..scratches.len()).map(move |j| (i, j)))
            .find(|&(i, j)| dev(&scratches[i]) != dev(&scratches[j]))?;
        let mut scratches: Vec<Option<Scratch>> = scratches.into_iter().map(Some).collect();
        Some((scratches[i].take()?, scratches[j].take()?))
    }

    #[test]
    fn an_info_file_on_another_filesystem_is_written_through_a_temporary_file_in_its_own_folder() {
        let Some((tokens, infos)) = on_two_filesystems() else {
            println!("skipped: no two writable folders on different filesystems here");
            return;
        };
        // Made sure: a rename between the two fails with EXDEV.
        let probe = tokens.0.join("probe");
        std::fs::write(&probe, "x").unwrap();
        let crossed = std::fs::rename(&probe, infos.0.join("probe")).unwrap_err();
        assert_eq!(
            crossed.raw_os_error(),
            Some(rustix::io::Errno::XDEV.raw_os_error())
        );
        std::fs::remove_file(&probe).unwrap();

        let path = tokens.0.join("token");
        let info_path = infos.0.join("token.json");
        let file = TokenFile::new(&path)
            .unwrap()
            .mode(FileMode::new(0o640).unwrap())
            .info_file(Some(info_path.clone()));
        file.check().unwrap();
        assert!(tokens.names().is_empty() && infos.names().is_empty());
        for (secret, expiry) in [("first", 100), ("second", 200)] {
            file.write(&AccessToken::new(secret, Duration::from_secs(60)), &info(expiry))
                .unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), secret);
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&info_path).unwrap()).unwrap();
            assert_eq!(json["expires_at_unix"], expiry);
            assert_eq!(tokens.names(), ["token"], "no temporary file left");
            assert_eq!(infos.names(), ["token.json"], "no temporary file left");
            assert_eq!(mode_of(&info_path), 0o640);
        }

        // An interrupted write's temporary file beside the info file is a
        // leftover too.
        let (_handle, temp) = file.open_temp(&file.places().unwrap()[1]).unwrap();
        assert_eq!(temp.parent(), Some(infos.0.as_path()));
        assert!(file.remove_leftovers().unwrap());
        assert!(tokens.names().is_empty() && infos.names().is_empty());
    }

    #[test]
    fn an_info_path_that_names_no_file_is_refused_at_check() {
        let scratch = Scratch::new();
        let mut dir = scratch.0.clone().into_os_string();
        dir.push("/");
        let file = TokenFile::new(scratch.0.join("token"))
            .unwrap()
            .info_file(Some(PathBuf::from(dir)));
        let e = file.check().unwrap_err().to_string();
        assert!(e.contains("the path names no file"), "{e}");
    }

    #[test]
    fn concurrent_readers_see_whole_tokens_only() {
        let scratch = Scratch::new();
        let path = scratch.0.join("token");
        let file = TokenFile::new(&path).unwrap().info_file(None);
        let tokens: Vec<String> = (0..50).map(|i| format!("{i:03}{}", "x".repeat(4000))).collect();
        file.write(
            &AccessToken::new(tokens[0].clone(), Duration::from_secs(60)),
            &info(1),
        )
        .unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (path, done, tokens) = (path.clone(), done.clone(), tokens.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::SeqCst) {
                    let text = std::fs::read_to_string(&path).unwrap();
                    assert!(tokens.contains(&text), "a partial read: {} bytes", text.len());
                    reads += 1;
                }
                reads
            })
        };
        for token in &tokens[1..] {
            file.write(
                &AccessToken::new(token.clone(), Duration::from_secs(60)),
                &info(1),
            )
            .unwrap();
        }
        done.store(true, Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
    }
}
