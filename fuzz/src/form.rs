//! oidc-server's `Form::parse` (private; reached through
//! `oidc_server::fuzzing::Form`), the token endpoint's strict
//! `application/x-www-form-urlencoded` reader.
//!
//! Properties: no parameter has an empty value (an empty value counts as
//! absent); parse → print → parse gives the same parameters in the same
//! order; `single` refuses exactly the names that appear more than once.

use std::collections::HashMap;

use oidc_server::fuzzing::Form;

pub fn run(data: &[u8]) {
    let form = Form::parse(data);
    let pairs: Vec<(String, String)> = form.pairs().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (name, value) in &pairs {
        assert!(!value.is_empty(), "parameter {name:?} with an empty value");
        *counts.entry(name).or_default() += 1;
    }
    let printed = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let again: Vec<(String, String)> = Form::parse(printed.as_bytes())
        .pairs()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(again, pairs, "parse → print → parse changed the parameters");
    for (name, count) in counts {
        let single = form.single(name);
        assert_eq!(single.is_err(), count > 1, "single({name:?}) with {count} values");
        if count == 1 {
            assert!(matches!(single, Ok(Some(_))));
        }
    }
}
