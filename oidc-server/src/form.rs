//! Strict `application/x-www-form-urlencoded` bodies (RFC 6749 §3.2): a
//! parameter at most once, and a parameter without a value counts as absent.

/// Why a form body cannot be read as the token endpoint reads it (the
/// route answers it as RFC 6749 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormError {
    /// A parameter that may appear at most once appears more than once.
    Repeated,
}

/// A parsed form body.
#[derive(Default)]
pub(crate) struct Form {
    params: Vec<(String, String)>,
}

/// Names only: values include client secrets and assertions.
impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.params.iter().map(|(name, _)| name))
            .finish()
    }
}

/// Values may be client secrets (`client_secret_post`): wiped on drop.
impl Drop for Form {
    fn drop(&mut self) {
        for (_, value) in &mut self.params {
            zeroize::Zeroize::zeroize(value);
        }
    }
}

impl Form {
    /// Parses a body.
    pub(crate) fn parse(body: &[u8]) -> Self {
        let params = form_urlencoded::parse(body)
            .filter(|(_, value)| !value.is_empty())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self { params }
    }

    /// The value of a parameter that may appear at most once.
    pub(crate) fn single<'a>(&'a self, name: &str) -> Result<Option<&'a str>, FormError> {
        let mut values = self
            .params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(FormError::Repeated);
        }
        Ok(first)
    }

    /// Every value of a parameter.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every parameter in order, as parsed (for the fuzz targets' round trip).
    #[cfg(fuzzing)]
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether any of `names` is present.
    pub(crate) fn has_any(&self, names: &[&str]) -> bool {
        self.params.iter().any(|(k, _)| names.contains(&k.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_reach_debug_output() {
        let form = Form::parse(b"grant_type=client_credentials&client_secret=s3cret&scope=");
        assert_eq!(format!("{form:?}"), r#"["grant_type", "client_secret"]"#);
        assert_eq!(form.single("scope"), Ok(None), "an empty value counts as absent");
        let twice = Form::parse(b"a=1&a=2");
        assert_eq!(twice.single("a"), Err(FormError::Repeated));
    }
}
