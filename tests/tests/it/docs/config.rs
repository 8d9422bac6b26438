//! Documented configuration, checked the way `oidc-server check-config`
//! checks a file: the same parsing and validation
//! (`oidc_server::config::Config`), with no variables of the test's own.

use std::path::Path;

use oidc_server::config::{Config, Origin, Overrides};

/// What a `toml` block is, from the markers after `toml` in its fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `toml`: a whole server configuration; relative file names resolve
    /// against the document's folder.
    Config,
    /// `toml fragment`: sections to put into the embedded default
    /// (keys-example/config.toml), each replacing the default's section of
    /// the same name (`[[connectors]]` replace its connectors).
    Fragment,
    /// `toml trust`: a trust file (`[[issuers]]`, for `verify --trust` and
    /// the control plane's `TrustedIssuers`), not server configuration.
    Trust,
}

/// A block's kind and whether it must be refused (`refused`: an example of
/// a configuration the server rejects).
pub(super) fn kind(markers: &[String]) -> Result<(Kind, bool), String> {
    let mut kind = Kind::Config;
    let mut refused = false;
    for marker in markers {
        match marker.as_str() {
            "fragment" if kind == Kind::Config => kind = Kind::Fragment,
            "trust" if kind == Kind::Config => kind = Kind::Trust,
            "refused" => refused = true,
            other => {
                return Err(format!(
                "unknown marker {other:?} after ```toml (known: fragment, trust, refused; one kind at most)"
            ))
            }
        }
    }
    Ok((kind, refused))
}

/// The embedded default configuration's text.
pub(super) fn embedded_default(root: &Path) -> String {
    std::fs::read_to_string(root.join("keys-example/config.toml")).expect("keys-example/config.toml")
}

/// Checks one block; `Err` is the validation's own message.
pub(super) fn check(kind: Kind, body: &str, doc_dir: &Path, root: &Path) -> Result<(), String> {
    match kind {
        Kind::Trust => oidc_core::verify::trust::file::parse(body, doc_dir)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Kind::Config => {
            let origin = Origin::File(doc_dir.join("documented-config.toml"));
            Config::from_toml(body, origin, no_env(), &Overrides::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Kind::Fragment => {
            let merged = merged(&embedded_default(root), body)?;
            Config::from_toml(&merged, Origin::Embedded, no_env(), &Overrides::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}

/// `fragment` put into `base`: each of its top-level keys replaces the
/// base's.
pub(super) fn merged(base: &str, fragment: &str) -> Result<String, String> {
    let mut base: toml::Table = base.parse().map_err(|e| format!("the embedded default: {e}"))?;
    let fragment: toml::Table = fragment.parse().map_err(|e: toml::de::Error| e.to_string())?;
    base.extend(fragment);
    toml::to_string(&base).map_err(|e| e.to_string())
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

/// Checks a documented `OIDC_SERVER__SECTION__FIELD` override: with its
/// documented value if the docs give one (it must then validate), else that
/// the field exists at all (a probe value may be of the wrong type, never
/// of an unknown field).
pub(super) fn check_override(root: &Path, name: &str, value: Option<&str>) -> Result<(), String> {
    let base = embedded_default(root);
    let load = |value: &str| {
        Config::from_toml(
            &base,
            Origin::Embedded,
            [(name.to_owned(), value.to_owned())],
            &Overrides::default(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    match value {
        Some(value) => load(value),
        None => match load("1") {
            Ok(()) => Ok(()),
            Err(e) if e.contains("unknown field") || e.contains("is not a table") => Err(e),
            Err(_) => Ok(()),
        },
    }
}
