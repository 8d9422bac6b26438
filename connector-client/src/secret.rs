//! [`ClientSecret`]: a client secret that is never printed and is wiped from
//! memory when dropped.

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::ConfigError;

/// A client secret (`client_secret_basic` / `client_secret_post`).
///
/// `Debug` prints `[redacted]`; there is no `Display`. The text is zeroized on drop.
///
/// ```
/// use connector_client::ClientSecret;
/// let secret = ClientSecret::new("s3cr3t");
/// assert_eq!(format!("{secret:?}"), "ClientSecret([redacted])");
/// ```
#[derive(Clone)]
pub struct ClientSecret(Zeroizing<String>);

impl ClientSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    /// Reads a secret from a file, dropping one trailing line break (files
    /// written by `echo` or an editor end with one; secrets never do).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
            what: "client secret",
            path: path.display().to_string(),
            reason: e.to_string(),
        })?);
        let trimmed = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        if trimmed.is_empty() {
            return Err(ConfigError::Empty("client secret"));
        }
        Ok(Self::new(trimmed))
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_file_drops_one_line_break() {
        let dir = std::env::temp_dir().join(format!("cc-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "abc\n").unwrap();
        assert_eq!(ClientSecret::from_file(&path).unwrap().expose(), "abc");
        std::fs::write(&path, "abc \r\n").unwrap();
        assert_eq!(ClientSecret::from_file(&path).unwrap().expose(), "abc ");
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(
            ClientSecret::from_file(&path).unwrap_err(),
            ConfigError::Empty("client secret")
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            ClientSecret::from_file(&path),
            Err(ConfigError::ReadFile { .. })
        ));
    }
}
