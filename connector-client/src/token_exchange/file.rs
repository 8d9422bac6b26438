//! [`SubjectTokenFile`]: a subject token that another program keeps in a
//! file (the kubelet's projected service-account token, spiffe-helper's
//! JWT-SVID file), read again for every exchange.

use std::borrow::Cow;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{checked_token, SubjectToken, SubjectTokenSource, TOKEN_TYPE_JWT};
use crate::error::{SubjectTokenError, SubjectTokenProblem};
use crate::Error;

/// Largest subject token file read by default: 64 KiB, three times an AWS
/// STS web identity token (about 20 KB encoded) and far above a Kubernetes
/// or SPIFFE token (1–2 KB).
pub const MAX_SUBJECT_TOKEN_BYTES: u64 = 64 * 1024;

/// A subject token read from a file on every exchange, since the program
/// that writes it replaces it before it expires (the kubelet rotates a
/// projected token at 80% of its life; spiffe-helper writes each new
/// JWT-SVID). Nothing is kept between reads.
///
/// Surrounding white space (a trailing line break) is dropped. A missing or
/// empty file is a retryable error (the writer may not have written it yet,
/// or may be halfway: spiffe-helper writes in place); a file larger than
/// [`max_bytes`](Self::max_bytes) is refused without being read, as is one
/// whose content cannot be a token. Errors name the path, never the content.
///
/// ```no_run
/// # async fn run() -> Result<(), connector_client::Error> {
/// use connector_client::token_exchange::{SubjectTokenFile, SubjectTokenSource};
/// let file = SubjectTokenFile::new("/var/run/secrets/tokens/connector");
/// let token = file.subject_token().await?;
/// # drop(token); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SubjectTokenFile {
    path: PathBuf,
    token_type: Cow<'static, str>,
    max_bytes: u64,
}

impl SubjectTokenFile {
    /// The file at `path`, holding a JWT ([`TOKEN_TYPE_JWT`]).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            token_type: Cow::Borrowed(TOKEN_TYPE_JWT),
            max_bytes: MAX_SUBJECT_TOKEN_BYTES,
        }
    }

    /// The RFC 8693 type of the token in the file (default [`TOKEN_TYPE_JWT`]).
    pub fn token_type(mut self, token_type: impl Into<Cow<'static, str>>) -> Self {
        self.token_type = token_type.into();
        self
    }

    /// Refuses files larger than `max_bytes` (default [`MAX_SUBJECT_TOKEN_BYTES`]).
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the token now, blocking (a small local file). The
    /// [`SubjectTokenSource`] implementation does the same on Tokio's
    /// blocking pool; this is for a check at start.
    pub fn read(&self) -> Result<SubjectToken, SubjectTokenError> {
        let origin = format!("subject token file {}", self.path.display());
        let fail = |problem| SubjectTokenError::new(origin.as_str(), problem);
        let file = File::open(&self.path).map_err(|e| fail(SubjectTokenProblem::Read(e.to_string())))?;
        let metadata = file
            .metadata()
            .map_err(|e| fail(SubjectTokenProblem::Read(e.to_string())))?;
        if !metadata.is_file() {
            return Err(fail(SubjectTokenProblem::Read("not a regular file".into())));
        }
        let too_large = SubjectTokenProblem::TooLarge {
            limit: self.max_bytes,
        };
        if metadata.len() > self.max_bytes {
            return Err(fail(too_large));
        }
        // The file may grow between the two calls: read one byte past the limit to see.
        let mut bytes = Zeroizing::new(Vec::with_capacity(
            usize::try_from(metadata.len()).unwrap_or(0).saturating_add(1),
        ));
        file.take(self.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| fail(SubjectTokenProblem::Read(e.to_string())))?;
        if u64::try_from(bytes.len()).map_or(true, |len| len > self.max_bytes) {
            return Err(fail(too_large));
        }
        let token = checked_token(&origin, &bytes)?;
        Ok(SubjectToken::new(token, self.token_type.clone()))
    }
}

#[async_trait]
impl SubjectTokenSource for SubjectTokenFile {
    async fn subject_token(&self) -> Result<SubjectToken, Error> {
        let file = self.clone();
        match tokio::task::spawn_blocking(move || file.read()).await {
            Ok(read) => read.map_err(Error::from),
            Err(e) => Err(SubjectTokenError::new(
                format!("subject token file {}", self.path.display()),
                SubjectTokenProblem::Unavailable(format!("the reading task failed: {e}")),
            )
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("cc-subject-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn problem(file: &SubjectTokenFile) -> SubjectTokenProblem {
        file.read().unwrap_err().problem().clone()
    }

    #[tokio::test]
    async fn each_exchange_reads_the_file_again() {
        let dir = Dir::new("reread");
        let path = dir.0.join("token");
        let file = SubjectTokenFile::new(&path);
        std::fs::write(&path, "eyJ.first.sig\n").unwrap();
        let token = file.subject_token().await.unwrap();
        assert_eq!(
            (token.expose(), token.token_type()),
            ("eyJ.first.sig", TOKEN_TYPE_JWT)
        );
        // The kubelet's way: a new file renamed over the old one.
        std::fs::write(dir.0.join("next"), "eyJ.second.sig").unwrap();
        std::fs::rename(dir.0.join("next"), &path).unwrap();
        assert_eq!(file.subject_token().await.unwrap().expose(), "eyJ.second.sig");
        // spiffe-helper's way: written in place.
        std::fs::write(&path, "  eyJ.third.sig\r\n").unwrap();
        assert_eq!(file.subject_token().await.unwrap().expose(), "eyJ.third.sig");
        let typed = file
            .clone()
            .token_type("urn:ietf:params:oauth:token-type:id_token");
        assert_eq!(
            typed.subject_token().await.unwrap().token_type(),
            "urn:ietf:params:oauth:token-type:id_token"
        );
    }

    #[test]
    fn missing_empty_and_oversized_files_are_clear_errors() {
        let dir = Dir::new("errors");
        let path = dir.0.join("token");
        let file = SubjectTokenFile::new(&path);

        let missing = file.read().unwrap_err();
        assert!(matches!(missing.problem(), SubjectTokenProblem::Read(_)));
        assert!(missing.is_retryable());
        let shown = missing.to_string();
        assert!(
            shown.starts_with(&format!(
                "cannot get the subject token from subject token file {}: ",
                path.display()
            )),
            "{shown}"
        );

        std::fs::write(&path, "\n").unwrap();
        assert_eq!(problem(&file), SubjectTokenProblem::Empty);
        assert!(file
            .read()
            .unwrap_err()
            .to_string()
            .ends_with("the file is empty"));

        let secret = "eyJ.payload-that-must-not-show.sig";
        std::fs::write(&path, format!("{secret} {secret}")).unwrap();
        let err = file.read().unwrap_err();
        assert_eq!(err.problem(), &SubjectTokenProblem::NotAToken);
        assert!(!err.is_retryable());
        assert!(!err.to_string().contains("payload"), "{err}");
        assert!(!format!("{err:?}").contains("payload"), "{err:?}");

        std::fs::write(&path, "x".repeat(65 * 1024)).unwrap();
        assert_eq!(
            problem(&file),
            SubjectTokenProblem::TooLarge {
                limit: MAX_SUBJECT_TOKEN_BYTES
            }
        );
        let small = file.clone().max_bytes(16);
        std::fs::write(&path, "0123456789abcdef").unwrap();
        assert_eq!(small.read().unwrap().expose(), "0123456789abcdef");
        std::fs::write(&path, "0123456789abcdefg").unwrap();
        let err = small.read().unwrap_err();
        assert_eq!(err.problem(), &SubjectTokenProblem::TooLarge { limit: 16 });
        assert!(err
            .to_string()
            .ends_with("the file is larger than 16 bytes, more than any token"));

        assert_eq!(
            problem(&SubjectTokenFile::new(&dir.0)),
            SubjectTokenProblem::Read(match File::open(&dir.0) {
                // Linux opens a folder for reading; its metadata says what it is.
                Ok(_) => "not a regular file".into(),
                Err(e) => e.to_string(),
            })
        );
    }
}
