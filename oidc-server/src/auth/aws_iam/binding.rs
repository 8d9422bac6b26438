//! Which connector an AWS caller is: the connector's `aws_principals` (role
//! or user ARNs) or `aws_principal_ids` (the unique ids STS returns).
//!
//! An assumed-role session's ARN names the role but not its path
//! (`arn:aws:sts::A:assumed-role/NAME/SESSION`), so a configured role ARN
//! with a path (`role/team/NAME`) is matched by account and role name: role
//! names are unique within an account, whatever their path. A trailing `*`
//! matches role names (or user ARNs) by prefix; a wildcard cannot check a
//! path, so the configuration refuses one after a path.
//!
//! A role deleted and re-created under the same name matches by ARN again;
//! `aws_principal_ids` (`AROA…`/`AIDA…`) do not survive that: prefer them
//! where a re-created role must not inherit the binding.

use super::sts::Caller;

/// The caller as a principal: `(partition, account, kind, name)`, where a
/// role session is its role (`kind` "role", `name` the role name) and a user
/// is itself (`kind` "user", `name` its path and name).
fn principal(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let [_, partition, service, _region, account, resource] =
        arn.splitn(6, ':').collect::<Vec<_>>().try_into().ok()?;
    match (service, resource.split_once('/')?) {
        ("sts", ("assumed-role", rest)) => Some((partition, account, "role", rest.split_once('/')?.0)),
        ("iam", ("role", path_and_name)) => {
            Some((partition, account, "role", path_and_name.rsplit('/').next()?))
        }
        ("iam", ("user", path_and_name)) => Some((partition, account, "user", path_and_name)),
        _ => None,
    }
}

/// Whether `caller` is one of `principals` or `principal_ids`.
pub(crate) fn matches(caller: &Caller, principals: &[String], principal_ids: &[String]) -> bool {
    if caller
        .unique_id
        .as_deref()
        .is_some_and(|id| principal_ids.iter().any(|p| p == id))
    {
        return true;
    }
    let Some((partition, account, kind, name)) = principal(&caller.arn) else {
        return false;
    };
    principals
        .iter()
        .any(|configured| match configured.strip_suffix('*') {
            Some(prefix) => {
                // `arn:P:iam::A:role/PREFIX*` (no path) or `arn:P:iam::A:user/...*`.
                let Some(resource) = prefix.strip_prefix(&format!("arn:{partition}:iam::{account}:{kind}/"))
                else {
                    return false;
                };
                name.starts_with(resource) && (kind == "user" || !resource.contains('/'))
            }
            None => principal(configured) == Some((partition, account, kind, name)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(arn: &str, id: Option<&str>) -> Caller {
        Caller {
            arn: arn.into(),
            unique_id: id.map(str::to_owned),
        }
    }

    fn p(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn roles_users_paths_and_wildcards() {
        let session = caller("arn:aws:sts::123456789012:assumed-role/connector-eu/i-0abc", None);
        assert!(matches(
            &session,
            &p(&["arn:aws:iam::123456789012:role/connector-eu"]),
            &[]
        ));
        // A role configured with its path is its role.
        assert!(matches(
            &session,
            &p(&["arn:aws:iam::123456789012:role/team/edge/connector-eu"]),
            &[]
        ));
        assert!(matches(
            &session,
            &p(&["arn:aws:iam::123456789012:role/connector-*"]),
            &[]
        ));
        assert!(!matches(
            &session,
            &p(&["arn:aws:iam::123456789012:role/other"]),
            &[]
        ));
        assert!(!matches(
            &session,
            &p(&["arn:aws:iam::999999999999:role/connector-eu"]),
            &[]
        ));
        assert!(!matches(
            &session,
            &p(&["arn:aws-cn:iam::123456789012:role/connector-eu"]),
            &[]
        ));
        assert!(!matches(
            &session,
            &p(&["arn:aws:iam::123456789012:user/connector-eu"]),
            &[]
        ));
        assert!(!matches(
            &session,
            &p(&["arn:aws:iam::123456789012:role/team/connector-*"]),
            &[]
        ));

        let user = caller("arn:aws:iam::123456789012:user/division/alice", None);
        assert!(matches(
            &user,
            &p(&["arn:aws:iam::123456789012:user/division/alice"]),
            &[]
        ));
        assert!(matches(
            &user,
            &p(&["arn:aws:iam::123456789012:user/division/*"]),
            &[]
        ));
        assert!(!matches(
            &user,
            &p(&["arn:aws:iam::123456789012:user/alice"]),
            &[]
        ));
        assert!(!matches(
            &user,
            &p(&["arn:aws:iam::123456789012:role/alice"]),
            &[]
        ));
    }

    #[test]
    fn unique_ids() {
        let session = caller(
            "arn:aws:sts::123456789012:assumed-role/connector-eu/i-0abc",
            Some("AROAEXAMPLEID12345"),
        );
        assert!(matches(&session, &[], &p(&["AROAEXAMPLEID12345"])));
        // A re-created role of the same name has another id.
        let recreated = caller(
            "arn:aws:sts::123456789012:assumed-role/connector-eu/i-0abc",
            Some("AROANEWROLEID67890"),
        );
        assert!(!matches(&recreated, &[], &p(&["AROAEXAMPLEID12345"])));
        assert!(!matches(
            &caller("arn:aws:sts::1:assumed-role/x/y", None),
            &[],
            &p(&["AROAEXAMPLEID12345"])
        ));
    }
}
