//! Every permission the stack grants, listed and explained.
//!
//! The template is rendered ([`e2e::stack`]) for each deployment of `deploy.rs` (platform,
//! signing mode, issuer, operator), and every grant in it, from a role's own
//! policies or from a key policy, becomes one row per action: (principal,
//! where the grant is, action, resources, conditions). The rows must be
//! exactly those of [`EXPECTED`], where each one says why it is there: a new
//! grant, a lost condition or a widened resource fails, and so does a grant
//! the table still lists but the template dropped.
//!
//! The keys the rotation creates get their policy from the code
//! (`oidc_server::keyset` lists and tests it); the last test here runs a
//! rotation and a signer against moto and checks that every call they made
//! on a key is one that key's policy grants to whoever made it, and that the
//! policy grants nothing they did not call. moto enforces neither IAM nor
//! key policies: these tests are what guards them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::moto::{self, Moto};
use e2e::stack::{as_list, template, ACCOUNT, DEFAULT_TIMINGS};
use oidc_core::aws::{AwsObserver, CallOutcome};
use oidc_core::keys::KmsOptions;
use oidc_core::Algorithm;
use oidc_server::keyset::document::{KeyMaterial, KeySetTemplate, KeySetValue, SetKind};
use oidc_server::keyset::{KeyMaker, KeySetError, Rotation, KEY_SET_TAG};
use serde_json::Value;

use super::deploy::{Rendered, OPERATOR, ROTATION_ROLE, SECRET_ARN_PATTERN, SECRET_NAME, SERVICE_ROLE};

/// One grant the stack makes, and why.
struct Expected {
    /// `ServiceRole`, `RotationRole`, `ExecutionRole` (their own policies
    /// or a key policy naming them), `Operator` (`OperatorPrincipalArn`) or
    /// `Account` (the account root, in key policies: IAM may grant it).
    principal: &'static str,
    /// `IAM` (the role's own policies) or the key whose policy grants it.
    via: &'static str,
    actions: &'static [&'static str],
    /// The statement's resources, joined with `,`; in a key policy `*` is
    /// the key itself.
    resource: &'static str,
    /// The statement's `Condition` as JSON (`""`: none).
    condition: &'static str,
    /// The template's conditions under which it is granted (all must hold).
    when: &'static [&'static str],
    /// What calls it, or why it cannot be narrower.
    why: &'static str,
}

const SECRET: &str = SECRET_ARN_PATTERN;
const ISSUER_PARAMETER: &str = "arn:aws:ssm:eu-west-1:123456789012:parameter/conn/issuer";
const ECR_REPOSITORIES: &str = "arn:aws:ecr:eu-west-1:123456789012:repository/*";

/// `CreateKey`: only the set's key spec and usage, only tagged as the set's.
const CREATE_KEY_CONDITION: &str = r#"{
    "StringEquals": {"kms:KeySpec": "ECC_NIST_P256", "kms:KeyUsage": "SIGN_VERIFY",
                     "aws:RequestTag/oidc-server:key-set": "conn/key-set"},
    "ForAllValues:StringEquals": {"aws:TagKeys": ["oidc-server:key-set", "oidc-server:rotation"]}
}"#;

/// `TagResource`: only the set's tags, never onto another set's key.
const TAG_RESOURCE_CONDITION: &str = r#"{
    "StringEquals": {"aws:RequestTag/oidc-server:key-set": "conn/key-set"},
    "StringEqualsIfExists": {"aws:ResourceTag/oidc-server:key-set": "conn/key-set"},
    "ForAllValues:StringEquals": {"aws:TagKeys": ["oidc-server:key-set", "oidc-server:rotation"]}
}"#;

/// What the account may do on its keys through IAM: administer them, never use them.
const ACCOUNT_ADMINISTERS: &[&str] = &[
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
];

const EXPECTED: &[Expected] = &[
    // The token service ------------------------------------------------
    Expected {
        principal: "ServiceRole",
        via: "IAM",
        actions: &["logs:CreateLogStream", "logs:PutLogEvents"],
        resource: "<LogGroup.Arn>",
        condition: "",
        when: &["Lambda"],
        why: "Lambda writes the function's logs as its role (on ECS the execution role does)",
    },
    Expected {
        principal: "ServiceRole",
        via: "IAM",
        actions: &["dynamodb:PutItem", "dynamodb:DescribeTable"],
        resource: "<ReplayTable.Arn>",
        condition: "",
        when: &[],
        why: "the replay store: one conditional PutItem per one-time credential, DescribeTable at start and for /readyz",
    },
    Expected {
        principal: "ServiceRole",
        via: "IAM",
        actions: &["ssm:GetParameter"],
        resource: ISSUER_PARAMETER,
        condition: "",
        when: &["IssuerFromFunctionUrl"],
        why: "the function reads its issuer (its own URL) at cold start",
    },
    Expected {
        principal: "ServiceRole",
        via: "IAM",
        actions: &["secretsmanager:GetSecretValue"],
        resource: SECRET,
        condition: "",
        when: &[],
        why: "the key-set poller reads AWSCURRENT",
    },
    Expected {
        principal: "ServiceRole",
        via: "SigningKey",
        actions: &["kms:Sign", "kms:GetPublicKey"],
        resource: "*",
        condition: "",
        when: &["KmsMode"],
        why: "the first key signs tokens (Sign) and is published (GetPublicKey); later keys' policies come from the code",
    },
    Expected {
        principal: "ServiceRole",
        via: "EnvelopeKey",
        actions: &["kms:Decrypt"],
        resource: "*",
        condition: "",
        when: &["EnvelopeMode"],
        why: "each sealed signing key is decrypted once per replica",
    },
    // The rotation -----------------------------------------------------
    Expected {
        principal: "RotationRole",
        via: "IAM",
        actions: &["logs:CreateLogStream", "logs:PutLogEvents"],
        resource: "<RotationLogGroup.Arn>",
        condition: "",
        when: &[],
        why: "the rotation function's own log group",
    },
    Expected {
        principal: "RotationRole",
        via: "IAM",
        actions: &[
            "secretsmanager:GetSecretValue",
            "secretsmanager:DescribeSecret",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
        ],
        resource: SECRET,
        condition: "",
        when: &[],
        why: "the four rotation steps: read versions, their stages, write AWSPENDING, move the labels",
    },
    Expected {
        principal: "RotationRole",
        via: "IAM",
        actions: &["kms:CreateKey"],
        resource: "*",
        condition: CREATE_KEY_CONDITION,
        when: &["KmsMode"],
        why: "a new key per rotation; CreateKey has no resource, only request conditions",
    },
    Expected {
        principal: "RotationRole",
        via: "IAM",
        actions: &["kms:TagResource"],
        resource: "*",
        condition: TAG_RESOURCE_CONDITION,
        when: &["KmsMode"],
        why: "KMS requires it, on every key, for CreateKey with Tags; the set's tags grant nothing anywhere, so tagging another key gains nothing",
    },
    Expected {
        principal: "RotationRole",
        via: "IAM",
        actions: &["kms:ListKeys"],
        resource: "*",
        condition: "",
        when: &["KmsMode"],
        why: "a retried createSecret finds the key it made; ListKeys has no resource-level permission",
    },
    Expected {
        principal: "RotationRole",
        via: "SigningKey",
        actions: &[
            "kms:GetPublicKey",
            "kms:Sign",
            "kms:ListResourceTags",
            "kms:ScheduleKeyDeletion",
        ],
        resource: "*",
        condition: "",
        when: &["KmsMode"],
        why: "the first rotation adopts the key and signs its probe; every rotation reads keys' tags; the key is deleted once it left the set",
    },
    Expected {
        principal: "RotationRole",
        via: "EnvelopeKey",
        actions: &["kms:Encrypt", "kms:Decrypt"],
        resource: "*",
        condition: "",
        when: &["EnvelopeMode"],
        why: "createSecret seals each new key; testSecret opens the new current one for its probe",
    },
    // An operator running `oidc-server keys ...` -----------------------
    Expected {
        principal: "Operator",
        via: "SigningKey",
        actions: &[
            "kms:GetPublicKey",
            "kms:Sign",
            "kms:ListResourceTags",
            "kms:ScheduleKeyDeletion",
            "kms:DescribeKey",
        ],
        resource: "*",
        condition: "",
        when: &["KmsMode", "HasOperator"],
        why: "keys rotate makes the rotation's calls; keys show describes the set's keys (pending deletion)",
    },
    Expected {
        principal: "Operator",
        via: "EnvelopeKey",
        actions: &["kms:Encrypt", "kms:Decrypt"],
        resource: "*",
        condition: "",
        when: &["EnvelopeMode", "HasOperator"],
        why: "keys rotate seals and tests keys as the rotation does",
    },
    // The account, through its own IAM policies -------------------------
    Expected {
        principal: "Account",
        via: "SigningKey",
        actions: ACCOUNT_ADMINISTERS,
        resource: "*",
        condition: "",
        when: &["KmsMode"],
        why: "the account administers the key (never locked out; CloudFormation creates its alias), never signs",
    },
    Expected {
        principal: "Account",
        via: "EnvelopeKey",
        actions: ACCOUNT_ADMINISTERS,
        resource: "*",
        condition: "",
        when: &["EnvelopeMode"],
        why: "the account administers the key, never decrypts with it",
    },
    // ECS: pulling the image and shipping the logs -----------------------
    Expected {
        principal: "ExecutionRole",
        via: "IAM",
        actions: &["ecr:GetAuthorizationToken"],
        resource: "*",
        condition: "",
        when: &["Ecs"],
        why: "the ECS agent logs in to ECR; GetAuthorizationToken has no resource-level permission",
    },
    Expected {
        principal: "ExecutionRole",
        via: "IAM",
        actions: &["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
        resource: ECR_REPOSITORIES,
        condition: "",
        when: &["Ecs"],
        why: "the ECS agent pulls ImageUri, from any repository of the account",
    },
    Expected {
        principal: "ExecutionRole",
        via: "IAM",
        actions: &["logs:CreateLogStream", "logs:PutLogEvents"],
        resource: "<LogGroup.Arn>",
        condition: "",
        when: &["Ecs"],
        why: "the awslogs driver ships the container's logs",
    },
    Expected {
        principal: "ConnectorWebIdentityPolicy",
        via: "IAM",
        actions: &["sts:GetWebIdentityToken"],
        resource: "*",
        condition: r#"{
            "ForAllValues:StringEquals": {"sts:IdentityTokenAudience": "https://abcdefghijklmnop.lambda-url.eu-west-1.on.aws"},
            "StringEquals": {"sts:SigningAlgorithm": "ES384"},
            "NumericLessThanEquals": {"sts:DurationSeconds": "300"}
        }"#,
        when: &["HasUpstreamIssuer", "IssuerFromFunctionUrl"],
        why: "for the customer to attach to the connector's role: AWS STS tokens for this service's issuer only (the function URL's), ES384, five minutes at most; GetWebIdentityToken has no resource",
    },
    Expected {
        principal: "ConnectorWebIdentityPolicy",
        via: "IAM",
        actions: &["sts:GetWebIdentityToken"],
        resource: "*",
        condition: r#"{
            "ForAllValues:StringEquals": {"sts:IdentityTokenAudience": "https://tokens.example.com"},
            "StringEquals": {"sts:SigningAlgorithm": "ES384"},
            "NumericLessThanEquals": {"sts:DurationSeconds": "300"}
        }"#,
        when: &["HasUpstreamIssuer", "Ecs"],
        why: "the same behind the load balancer: for this service's issuer (IssuerUrl) only",
    },
];

/// One action granted: (principal, via, action, resources, conditions).
type Row = (String, String, String, String, String);

/// `value` with object keys and array items sorted, as compact JSON: the
/// order a template happens to use means nothing to IAM.
fn canonical(value: &Value) -> String {
    fn sort(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let sorted: std::collections::BTreeMap<&String, Value> =
                    map.iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(items) => {
                let mut items: Vec<Value> = items.iter().map(sort).collect();
                items.sort_by_key(|v| v.to_string());
                Value::Array(items)
            }
            other => other.clone(),
        }
    }
    match value {
        Value::Null => String::new(),
        other => sort(other).to_string(),
    }
}

fn expected_rows(stack: &Rendered) -> BTreeSet<Row> {
    let mut rows = BTreeSet::new();
    for grant in EXPECTED {
        assert!(!grant.why.is_empty());
        if !grant.when.iter().all(|c| stack.condition(c)) {
            continue;
        }
        let condition = match grant.condition {
            "" => String::new(),
            text => canonical(&serde_json::from_str(text).unwrap()),
        };
        for action in grant.actions {
            rows.insert((
                grant.principal.to_owned(),
                grant.via.to_owned(),
                (*action).to_owned(),
                grant.resource.to_owned(),
                condition.clone(),
            ));
        }
    }
    rows
}

/// The name of the principal `arn` in the table.
fn principal(stack: &Rendered, arn: &str) -> String {
    let root = format!("arn:aws:iam::{ACCOUNT}:root");
    match arn {
        SERVICE_ROLE => "ServiceRole".into(),
        ROTATION_ROLE => "RotationRole".into(),
        OPERATOR => "Operator".into(),
        _ if arn == root => "Account".into(),
        other => panic!("{}: a key policy names {other}", stack.name),
    }
}

/// The rows of one statement granted to `who` through `via`.
fn rows_of(stack: &Rendered, who: &str, via: &str, statement: &Value, rows: &mut BTreeSet<Row>) {
    let name = stack.name;
    assert_eq!(statement["Effect"], "Allow", "{name}: {statement}");
    for inverted in ["NotAction", "NotResource", "NotPrincipal"] {
        assert!(
            statement.get(inverted).is_none(),
            "{name}: {inverted} in {statement}"
        );
    }
    let resource = as_list(&statement["Resource"]).join(",");
    let condition = canonical(&statement["Condition"]);
    for action in as_list(&statement["Action"]) {
        rows.insert((
            who.to_owned(),
            via.to_owned(),
            action,
            resource.clone(),
            condition.clone(),
        ));
    }
}

/// Every action `stack` grants anyone, from the roles' own policies and the
/// key policies.
fn granted_rows(stack: &Rendered) -> BTreeSet<Row> {
    let mut rows = BTreeSet::new();
    for (id, resource) in stack.resources() {
        let kind = resource["Type"].as_str().unwrap();
        // The one managed policy is the connector's, attached by the
        // customer to a role of theirs: nothing in the stack holds it.
        let connectors = kind == "AWS::IAM::ManagedPolicy" && id == "ConnectorWebIdentityPolicy";
        assert!(
            connectors
                || !matches!(
                    kind,
                    "AWS::IAM::Policy"
                        | "AWS::IAM::ManagedPolicy"
                        | "AWS::IAM::RolePolicy"
                        | "AWS::IAM::User"
                ),
            "{}: {id}: grants must be inline in the roles or in key policies",
            stack.name
        );
        if connectors {
            let policy = stack.resource(id);
            for attached in ["Roles", "Users", "Groups"] {
                assert!(
                    policy["Properties"].get(attached).is_none(),
                    "{id} is attached to {attached}"
                );
            }
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
                .as_array()
                .unwrap()
            {
                rows_of(stack, id, "IAM", statement, &mut rows);
            }
            continue;
        }
        match kind {
            "AWS::IAM::Role" => {
                let role = stack.resource(id);
                assert!(role["Properties"].get("ManagedPolicyArns").is_none(), "{id}");
                for policy in role["Properties"]["Policies"].as_array().unwrap() {
                    for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
                        rows_of(stack, id, "IAM", statement, &mut rows);
                    }
                }
            }
            "AWS::KMS::Key" => {
                let key = stack.resource(id);
                for statement in key["Properties"]["KeyPolicy"]["Statement"].as_array().unwrap() {
                    for arn in as_list(&statement["Principal"]["AWS"]) {
                        rows_of(stack, &principal(stack, &arn), id, statement, &mut rows);
                    }
                }
            }
            _ => {}
        }
    }
    rows
}

#[tokio::test]
async fn every_grant_of_the_stack_is_in_the_table_with_its_reason() {
    let template = template().await;
    for stack in Rendered::all(&template) {
        let granted = granted_rows(&stack);
        let expected = expected_rows(&stack);
        let unexpected: Vec<&Row> = granted.difference(&expected).collect();
        let missing: Vec<&Row> = expected.difference(&granted).collect();
        assert!(
            unexpected.is_empty() && missing.is_empty(),
            "{}:\n granted but not in the table (add it with its reason, or remove it): {unexpected:#?}\n \
             in the table but not granted: {missing:#?}",
            stack.name
        );
    }
}

/// No grant is conditioned on a key's tag: the rotation role may put the
/// set's tags on keys (CreateKey with Tags needs TagResource on every key),
/// so a grant by tag would be one it could give itself on any key whose
/// policy defers to IAM. Only tagging itself may look at a resource tag.
#[tokio::test]
async fn no_grant_depends_on_a_tag_a_role_can_set() {
    let template = template().await;
    for stack in Rendered::all(&template) {
        for (who, via, action, _, condition) in granted_rows(&stack) {
            if condition.contains("aws:ResourceTag/") {
                assert_eq!(
                    action, "kms:TagResource",
                    "{}: {who} gets {action} through {via} by a key's tag: {condition}",
                    stack.name
                );
            }
            // Tagging is only ever of the set's own tags, on request.
            if action == "kms:TagResource" && who != "Account" {
                assert!(
                    condition.contains(&format!("\"aws:RequestTag/{KEY_SET_TAG}\":\"{SECRET_NAME}\"")),
                    "{}: {who}: {condition}",
                    stack.name
                );
            }
        }
    }
}

/// Records each AWS operation made through it.
#[derive(Debug, Default)]
struct Calls(Mutex<BTreeSet<&'static str>>);

impl AwsObserver for Calls {
    fn observe(&self, operation: &'static str, _outcome: CallOutcome, _took: Duration) {
        self.0.lock().unwrap().insert(operation);
    }
}

impl Calls {
    /// The KMS operations made on an existing key (not `CreateKey`, not `ListKeys`).
    fn on_keys(&self) -> BTreeSet<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|op| op.starts_with("kms:") && !["kms:CreateKey", "kms:ListKeys"].contains(op))
            .map(|op| (*op).to_owned())
            .collect()
    }
}

fn options(calls: &Arc<Calls>) -> KmsOptions {
    let mut options = KmsOptions::default();
    options.calls.observer = calls.clone();
    options
}

/// The actions `policy` grants `arn`.
fn granted_to(policy: &Value, arn: &str) -> BTreeSet<String> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| as_list(&s["Principal"]["AWS"]).iter().any(|p| p == arn))
        .flat_map(|s| as_list(&s["Action"]))
        .collect()
}

/// A kms set whose template names the service as signer and the rotation
/// as administrator: one rotation (its first document: two keys), one
/// refused too early (its new key retired at once), `keys show`'s listing,
/// and the service opening the current key and signing with it. Each key
/// the rotation made has a policy that grants the rotation exactly the
/// calls it made on keys and the service exactly the calls it made.
#[tokio::test]
async fn the_keys_a_rotation_makes_grant_each_caller_the_calls_it_made() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let name = moto::unique("policy-set");
    let issuer = "http://127.0.0.1:1";
    let template = KeySetTemplate {
        issuer: issuer.into(),
        kind: SetKind::Kms {
            key_spec: "ECC_NIST_P256".into(),
            alg: Algorithm::ES256,
            signers: vec![SERVICE_ROLE.into()],
            administrators: vec![ROTATION_ROLE.into()],
            deletion_window_days: 7,
        },
        // Rotations an hour apart: the second one is refused.
        timings: DEFAULT_TIMINGS,
        first_key_id: None,
    };
    super::rotation::create_set(&sdk, &name, &template).await;

    let rotating = Arc::new(Calls::default());
    let rotation = Rotation::connect(&sdk, &name, options(&rotating));
    rotation.rotate().await.unwrap();
    match rotation.rotate().await {
        Err(KeySetError::TooEarly(_)) => {}
        other => panic!("a second rotation at once must be refused: {other:?}"),
    }
    let pending = rotation.keys().pending_deletion().await.unwrap();
    assert_eq!(pending.len(), 1, "the refused rotation's key: {pending:?}");

    let serving = Arc::new(Calls::default());
    let current = match rotation.secret().current().await.unwrap().unwrap().value {
        KeySetValue::Document(document) => document.current,
        other => panic!("{other:?}"),
    };
    assert!(matches!(current.material, KeyMaterial::Kms { .. }));
    let service = KeyMaker::new(aws_sdk_kms::Client::new(&sdk), options(&serving), name.clone());
    let signer = service.signer(&current, issuer).await.unwrap();
    signer.sign(b"a token").await.unwrap();

    // Three keys: the first document's two, the refused rotation's one.
    let kms = aws_sdk_kms::Client::new(&sdk);
    let mut keys = Vec::new();
    for key in kms.list_keys().limit(1000).send().await.unwrap().keys() {
        let id = key.key_id().unwrap();
        let tags = kms.list_resource_tags().key_id(id).send().await.unwrap();
        if tags
            .tags()
            .iter()
            .any(|t| t.tag_key() == KEY_SET_TAG && t.tag_value() == name)
        {
            keys.push(id.to_owned());
        }
    }
    assert_eq!(keys.len(), 3, "{keys:?}");
    let rotation_calls = rotating.on_keys();
    let service_calls = serving.on_keys();
    for expected in [
        "kms:GetPublicKey",
        "kms:Sign",
        "kms:ListResourceTags",
        "kms:ScheduleKeyDeletion",
        "kms:DescribeKey",
    ] {
        assert!(
            rotation_calls.contains(expected),
            "the rotation never called {expected}: {rotation_calls:?}"
        );
    }
    assert_eq!(
        service_calls,
        ["kms:GetPublicKey", "kms:Sign"].map(str::to_owned).into(),
    );
    for key in keys {
        let policy = kms
            .get_key_policy()
            .key_id(&key)
            .policy_name("default")
            .send()
            .await
            .unwrap();
        let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
        assert_eq!(
            granted_to(&policy, ROTATION_ROLE),
            rotation_calls,
            "{key}: the rotation"
        );
        assert_eq!(
            granted_to(&policy, SERVICE_ROLE),
            service_calls,
            "{key}: the service"
        );
    }
}
