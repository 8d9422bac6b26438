//! Where the configuration comes from, in layers (later layers win):
//!
//! 1. the document: the file named by `--config` / `OIDC_SERVER_CONFIG`, else
//!    the TOML text in `OIDC_SERVER_CONFIG_TOML`, else the embedded
//!    development default (`keys-example/config.toml`);
//! 2. environment overrides, `OIDC_SERVER__SECTION__FIELD=value`;
//! 3. the command line (`serve --listen --issuer`).
//!
//! The merged table is then read into [`RawConfig`] and validated once.

use std::path::Path;

use super::raw::RawConfig;
use super::{validate, Config, ConfigError, Origin, Overrides, CONFIG_TOML_ENV, ENV_PREFIX};

pub(super) const EMBEDDED_CONFIG: &str = include_str!("../../../keys-example/config.toml");
pub(super) const EMBEDDED_FILES: [(&str, &str); 2] = [
    (
        "dev-es256.pem",
        include_str!("../../../keys-example/dev-es256.pem"),
    ),
    (
        "demo-connector.secret",
        include_str!("../../../keys-example/demo-connector.secret"),
    ),
];

impl Config {
    /// Loads the configuration in force: the file at `path` if given, else
    /// the TOML in `OIDC_SERVER_CONFIG_TOML`, else the embedded default; then
    /// `env` overrides (`OIDC_SERVER__...`), then `overrides`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let (text, origin) = document(path, &env)?;
        Self::from_toml(&text, origin, env, overrides)
    }

    /// Parses and validates TOML text from `origin`, with the other layers.
    pub fn from_toml(
        text: &str,
        origin: Origin,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let parse_error = |reason: String| ConfigError::Parse {
            origin: origin.to_string(),
            reason,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        apply_env(&mut table, env).map_err(parse_error)?;
        apply_command_line(&mut table, overrides);
        let raw: RawConfig =
            toml::Table::try_into(table).map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        validate::validate(raw, origin)
    }
}

/// Layer 1: the document's text and where it came from.
fn document(path: Option<&Path>, env: &[(String, String)]) -> Result<(String, Origin), ConfigError> {
    if let Some(path) = path {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        return Ok((text, Origin::File(path.to_path_buf())));
    }
    match env.iter().find(|(k, _)| k == CONFIG_TOML_ENV) {
        Some((_, text)) => Ok((text.clone(), Origin::Environment)),
        None => Ok((EMBEDDED_CONFIG.to_owned(), Origin::Embedded)),
    }
}

/// Layer 2: every `OIDC_SERVER__A__B=value` sets `a.b`.
fn apply_env(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), String> {
    for (name, value) in env {
        if let Some(path) = name.strip_prefix(ENV_PREFIX) {
            set_path(table, path, &value).map_err(|reason| format!("{name}: {reason}"))?;
        }
    }
    Ok(())
}

/// Layer 3: the command line.
fn apply_command_line(table: &mut toml::Table, overrides: &Overrides) {
    if let Some(listen) = &overrides.listen {
        table.insert("listen".into(), toml::Value::String(listen.clone()));
    }
    if let Some(issuer) = &overrides.issuer {
        table.insert("issuer".into(), toml::Value::String(issuer.clone()));
    }
}

/// Sets `a__b__c` (lower-cased) in `table` to `value`, read as a TOML value
/// when it is one (numbers, booleans, arrays) and as a string otherwise.
fn set_path(table: &mut toml::Table, path: &str, value: &str) -> Result<(), String> {
    let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if keys.iter().any(String::is_empty) {
        return Err("empty path segment".into());
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let (last, parents) = keys.split_last().ok_or("empty path")?;
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("{key} is not a table"))?;
    }
    current.insert(last.clone(), parsed);
    Ok(())
}
