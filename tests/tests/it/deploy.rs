//! The CloudFormation template grants each of its roles exactly the AWS
//! actions the code that role runs calls, and nothing broader.
//!
//! The code side is read from the sources: every AWS SDK operation the
//! workspace calls is listed below with who makes it: the running token
//! service (its role), the rotation function (its own role) or `oidc-server
//! keys ...` (the operator's own credentials). An SDK call that is not
//! listed fails the test, and so does a listed caller whose code does not
//! make the call, so neither a new call nor a stale entry goes unnoticed.
//!
//! The template side is rendered, not pattern-matched: the tests evaluate
//! its conditions and intrinsic functions for a few deployments (platform,
//! signing mode, issuer, operator) with placeholder ARNs, then read the
//! grants, the rotation wiring, the key-set template and the server
//! configurations as the deployed stack would have them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use e2e::stack::{as_list, scalar, template, Deployment, ACCOUNT, DEFAULT_TIMINGS, TEMPLATE};
use e2e::workspace_path;
use oidc_server::keyset::document::{KeySetValue, FORMAT};
use oidc_server::keyset::KEY_SET_TAG;
use oidc_server::lambda::rotation::{HANDLER_ENV, TEMPLATE_ENV};
use serde_json::{json, Value};

/// Who makes an SDK call, with which credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// The running token service (`ServiceRole`).
    Service,
    /// The rotation function: Secrets Manager's four steps (`RotationRole`).
    Rotation,
    /// `oidc-server keys ...`, run by an operator with their own credentials.
    Operator,
}

use Caller::{Operator, Rotation, Service};

/// Every SDK operation the workspace calls, the IAM action it needs and who
/// calls it. `keys rotate` runs the same four steps as the rotation
/// function, so the operator makes every rotation call too.
const CALLS: [(&str, &str, &[Caller]); 17] = [
    (
        "get_secret_value",
        "secretsmanager:GetSecretValue",
        &[Service, Rotation, Operator],
    ),
    (
        "describe_secret",
        "secretsmanager:DescribeSecret",
        &[Rotation, Operator],
    ),
    (
        "put_secret_value",
        "secretsmanager:PutSecretValue",
        &[Rotation, Operator],
    ),
    (
        "update_secret_version_stage",
        "secretsmanager:UpdateSecretVersionStage",
        &[Rotation, Operator],
    ),
    // `keys init`: the stack creates its secret itself.
    ("create_secret", "secretsmanager:CreateSecret", &[Operator]),
    (
        "get_public_key",
        "kms:GetPublicKey",
        &[Service, Rotation, Operator],
    ),
    ("sign", "kms:Sign", &[Service, Rotation, Operator]),
    ("decrypt", "kms:Decrypt", &[Service, Rotation, Operator]),
    ("encrypt", "kms:Encrypt", &[Rotation, Operator]),
    ("create_key", "kms:CreateKey", &[Rotation, Operator]),
    ("list_keys", "kms:ListKeys", &[Rotation, Operator]),
    (
        "list_resource_tags",
        "kms:ListResourceTags",
        &[Rotation, Operator],
    ),
    (
        "schedule_key_deletion",
        "kms:ScheduleKeyDeletion",
        &[Rotation, Operator],
    ),
    // `keys show`: the set's keys pending deletion.
    ("describe_key", "kms:DescribeKey", &[Operator]),
    ("get_parameter", "ssm:GetParameter", &[Service]),
    ("put_item", "dynamodb:PutItem", &[Service]),
    ("describe_table", "dynamodb:DescribeTable", &[Service]),
];

/// Actions an operation needs besides its own: `CreateKey` with `Tags`
/// needs `kms:TagResource` too.
const IMPLIED: [(&str, &str); 1] = [("kms:CreateKey", "kms:TagResource")];

/// The AWS services whose clients the code may use; STS is absent on
/// purpose: the server forwards the connector's own signed request and calls
/// STS with no credentials of its own.
const SDK_CRATES: [&str; 4] = [
    "aws_sdk_kms",
    "aws_sdk_secretsmanager",
    "aws_sdk_ssm",
    "aws_sdk_dynamodb",
];

/// The rotation's own modules in oidc-server's `keyset` (the four steps,
/// the keys they make, the secret's versions); the rotation handler is found
/// by what it parses (`RotationEvent`).
const ROTATION_FILES: [&str; 3] = [
    "oidc-server/src/keyset/rotation.rs",
    "oidc-server/src/keyset/kms_keys.rs",
    "oidc-server/src/keyset/secret.rs",
];

/// A source file of the workspace: its path from the workspace root and its text.
struct Source {
    path: String,
    text: String,
}

fn rust_files(dir: &Path, relative: &str, out: &mut Vec<Source>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = format!("{relative}/{name}");
        if path.is_dir() {
            rust_files(&path, &relative, out);
        } else if name.ends_with(".rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push(Source { path: relative, text });
        }
    }
}

fn sources() -> Vec<Source> {
    let mut files = Vec::new();
    for dir in ["oidc-core/src", "oidc-server/src"] {
        rust_files(&workspace_path(dir), dir, &mut files);
    }
    files
}

/// The key-set module: the service (its poller), the rotation and the
/// operator all run parts of it.
const KEYSET: &str = "oidc-server/src/keyset/";

/// Whether `file` is the rotation Lambda handler (or part of it).
fn is_rotation_handler(file: &Source) -> bool {
    file.path.starts_with("oidc-server/src/")
        && !file.path.starts_with("oidc-server/src/cli/")
        && !file.path.starts_with(KEYSET)
        && file.text.contains("RotationEvent")
}

/// Whether `caller` runs the code of `file`.
fn runs(caller: Caller, file: &Source) -> bool {
    let path = file.path.as_str();
    let cli = path.starts_with("oidc-server/src/cli/");
    let keys = path.starts_with("oidc-core/src/keys/");
    match caller {
        // The Lambda dispatch may share a file with the rotation handler.
        Service => !cli && path != ROTATION_FILES[0],
        Rotation => is_rotation_handler(file) || keys || ROTATION_FILES.contains(&path),
        Operator => cli || keys || path.starts_with(KEYSET),
    }
}

/// The listed SDK operations `file` calls (as `.operation()`: arguments go
/// through the builder, then `.send()`).
fn operations(file: &Source) -> BTreeSet<&'static str> {
    if !file.text.contains("aws_sdk_") {
        return BTreeSet::new();
    }
    CALLS
        .iter()
        .map(|(op, _, _)| *op)
        .filter(|op| file.text.contains(&format!(".{op}()")))
        .collect()
}

/// The IAM actions of the calls `caller` makes, checked against the code.
fn actions_in_code(caller: Caller) -> BTreeSet<&'static str> {
    CALLS
        .iter()
        .filter(|(_, _, by)| by.contains(&caller))
        .map(|(_, action, _)| *action)
        .collect()
}

/// Every SDK call in the code is listed, with its callers, and every listed
/// caller's code makes the call.
#[test]
fn every_listed_call_is_made() {
    let files = sources();
    let handlers: Vec<&str> = files
        .iter()
        .filter(|f| is_rotation_handler(f))
        .map(|f| f.path.as_str())
        .collect();
    assert!(
        !handlers.is_empty(),
        "no file of oidc-server/src (outside cli/) handles a RotationEvent: where is the rotation handler?"
    );
    let listed: Vec<String> = CALLS.iter().map(|(op, _, _)| format!(".{op}()")).collect();
    for file in &files {
        for word in file.text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if word.starts_with("aws_sdk_") {
                assert!(
                    SDK_CRATES.contains(&word),
                    "{} uses {word}: add its actions here and to the template",
                    file.path
                );
            }
        }
        if !file.text.contains("aws_sdk_") {
            continue;
        }
        // Every `.send()` must belong to a listed operation before it.
        for (at, _) in file.text.match_indices(".send()") {
            let mut start = at.saturating_sub(600);
            while !file.text.is_char_boundary(start) {
                start -= 1;
            }
            let before = &file.text[start..at];
            assert!(
                listed.iter().any(|call| before.contains(call.as_str())),
                "{}: an SDK call before byte {at} is not listed in this test",
                file.path
            );
        }
        // A file only one caller runs makes that caller's calls.
        let only = if file.path.starts_with("oidc-server/src/cli/") {
            Some(Operator)
        } else if file.path.starts_with("oidc-server/src/")
            && !file.path.starts_with(KEYSET)
            && !is_rotation_handler(file)
        {
            Some(Service)
        } else {
            None
        };
        for op in operations(file) {
            let (_, action, by) = CALLS.iter().find(|(o, _, _)| *o == op).unwrap();
            if let Some(only) = only {
                assert!(
                    by.contains(&only),
                    "{}: calls {action}, but only {only:?} runs this file and the test does not list it",
                    file.path
                );
            }
            if is_rotation_handler(file) {
                assert!(
                    by.contains(&Rotation) || by.contains(&Service),
                    "{}: the rotation handler calls {action}, not listed for the rotation",
                    file.path
                );
            }
        }
    }
    for (op, action, by) in CALLS {
        for caller in by {
            assert!(
                files
                    .iter()
                    .any(|f| runs(*caller, f) && operations(f).contains(op)),
                "{action} is listed as called by {caller:?}, but no file it runs calls .{op}()"
            );
        }
    }
}

// The template, rendered --------------------------------------------------

const STACK: &str = "conn";
const REGION: &str = "eu-west-1";
pub(super) const SECRET_NAME: &str = "conn/key-set";
const SECRET_ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:conn/key-set-AbCdEf";
/// What the roles' policies name the secret by (Secrets Manager appends six characters).
pub(super) const SECRET_ARN_PATTERN: &str =
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:conn/key-set-??????";
pub(super) const SERVICE_ROLE: &str = "arn:aws:iam::123456789012:role/conn-ServiceRole-0123";
pub(super) const ROTATION_ROLE: &str = "arn:aws:iam::123456789012:role/conn-RotationRole-4567";
const SIGNING_KEY: &str = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555";
const ENVELOPE_KEY: &str = "arn:aws:kms:eu-west-1:123456789012:key/66666666-7777-8888-9999-000000000000";
const FUNCTION_URL: &str = "https://abcdefghijklmnop.lambda-url.eu-west-1.on.aws/";
const ROTATION_FUNCTION: &str = "arn:aws:lambda:eu-west-1:123456789012:function:conn-key-rotation";
pub(super) const OPERATOR: &str = "arn:aws:iam::123456789012:role/key-operators";
const ISSUER: &str = "https://tokens.example.com";

/// What the stack's resources resolve to (`Ref`, or `Fn::GetAtt` as
/// `Resource.Attribute`); any other resolves to `<Name>`.
const RESOLVED: [(&str, &str); 8] = [
    ("KeySetSecret", SECRET_ARN),
    ("ServiceRole.Arn", SERVICE_ROLE),
    ("RotationRole.Arn", ROTATION_ROLE),
    ("SigningKey.Arn", SIGNING_KEY),
    ("EnvelopeKey.Arn", ENVELOPE_KEY),
    ("TokenFunctionUrl.FunctionUrl", FUNCTION_URL),
    ("RotationFunction.Arn", ROTATION_FUNCTION),
    ("RotationFunction", "conn-key-rotation"),
];

/// Parameters every deployment below is given (the rest keep their defaults).
const GIVEN: [(&str, &str); 8] = [
    ("ConnectorAudience", "https://control-plane.example.com"),
    (
        "ConnectorPrincipalArn",
        "arn:aws:iam::123456789012:role/connector",
    ),
    ("CodeS3Bucket", "artifacts"),
    ("CodeS3Key", "oidc-server/bootstrap.zip"),
    (
        "ImageUri",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/oidc-server:1",
    ),
    ("VpcId", "vpc-0123"),
    ("VpcCidr", "10.0.0.0/16"),
    ("SubnetIds", "subnet-a,subnet-b"),
];

/// The deployments rendered: a name and the parameters that make it.
const DEPLOYMENTS: [(&str, &[(&str, &str)]); 4] = [
    (
        "lambda, kms, issuer from the function URL, token exchange",
        &[
            ("Platform", "lambda"),
            ("SigningMode", "kms"),
            ("UpstreamIssuerUrl", UPSTREAM_ISSUER),
        ],
    ),
    (
        "lambda, kms-envelope, own issuer, an operator",
        &[
            ("Platform", "lambda"),
            ("SigningMode", "kms-envelope"),
            ("IssuerUrl", ISSUER),
            ("OperatorPrincipalArn", OPERATOR),
        ],
    ),
    (
        "ecs, kms, an operator, shortest deletion window, longest tokens",
        &[
            ("Platform", "ecs"),
            ("SigningMode", "kms"),
            ("IssuerUrl", ISSUER),
            ("OperatorPrincipalArn", OPERATOR),
            ("KeyDeletionWindowDays", "7"),
            ("MaxTokenLifetimeSeconds", "3600"),
        ],
    ),
    (
        "ecs, kms-envelope, token exchange",
        &[
            ("Platform", "ecs"),
            ("SigningMode", "kms-envelope"),
            ("IssuerUrl", ISSUER),
            ("UpstreamIssuerUrl", UPSTREAM_ISSUER),
        ],
    ),
];

/// The account's AWS STS issuer (IAM outbound identity federation).
const UPSTREAM_ISSUER: &str = "https://0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.tokens.sts.global.api.aws";

/// One of [`DEPLOYMENTS`], rendered: its name and the deployment
/// ([`GIVEN`] and its own parameters, the resources of [`RESOLVED`]
/// resolved, any other resource a `<Name>` placeholder).
pub(super) struct Rendered<'a> {
    pub(super) name: &'static str,
    deployment: Deployment<'a>,
}

impl<'a> std::ops::Deref for Rendered<'a> {
    type Target = Deployment<'a>;

    fn deref(&self) -> &Deployment<'a> {
        &self.deployment
    }
}

impl<'a> Rendered<'a> {
    fn new(template: &'a Value, name: &'static str, parameters: &[(&str, &str)]) -> Self {
        let mut given: BTreeMap<&str, &str> = GIVEN.into_iter().collect();
        given.extend(parameters.iter().copied());
        let given: Vec<(&str, &str)> = given.into_iter().collect();
        let deployment = RESOLVED.iter().fold(
            Deployment::new(template, STACK, REGION, &given).placeholders(),
            |deployment, (reference, value)| deployment.resolve(reference, value),
        );
        Self { name, deployment }
    }

    pub(super) fn all(template: &'a Value) -> Vec<Self> {
        DEPLOYMENTS
            .iter()
            .map(|(name, parameters)| Self::new(template, name, parameters))
            .collect()
    }

    fn kms(&self) -> bool {
        self.given("SigningMode") == Some("kms")
    }
}

/// One statement granting a role something: from its own policies
/// (`key: None`) or from the key policy of KMS key `key`.
#[derive(Debug)]
struct Grant {
    key: Option<String>,
    statement: Value,
}

impl Grant {
    fn actions(&self) -> Vec<String> {
        as_list(&self.statement["Action"])
    }

    fn resources(&self) -> Vec<String> {
        as_list(&self.statement["Resource"])
    }
}

/// Every statement granting role `role` (logical id) anything in `stack`.
fn grants(stack: &Rendered, role: &str) -> Vec<Grant> {
    let arn = scalar(&stack.reference(&format!("{role}.Arn")).unwrap());
    let mut out = Vec::new();
    let resources = stack.resources();
    for (id, resource) in &resources {
        // Grants outside a role's inline policies and the key policies would
        // escape this test.
        let kind = resource["Type"].as_str().unwrap();
        // The connector's managed policy grants none of the stack's roles
        // anything: the customer attaches it to the connector's role.
        if kind == "AWS::IAM::ManagedPolicy" && *id == "ConnectorWebIdentityPolicy" {
            for attached in ["Roles", "Users", "Groups"] {
                assert!(
                    resource["Properties"].get(attached).is_none(),
                    "{id} is attached to {attached}"
                );
            }
            continue;
        }
        assert!(
            !matches!(
                kind,
                "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" | "AWS::IAM::RolePolicy"
            ),
            "{id}: grants must be inline in the roles or in key policies"
        );
        if kind == "AWS::KMS::Key" {
            let key = stack.resource(id);
            for statement in key["Properties"]["KeyPolicy"]["Statement"].as_array().unwrap() {
                let principals = as_list(&statement["Principal"]["AWS"]);
                assert!(
                    !principals.is_empty() && principals.iter().all(|p| p.starts_with("arn:aws:iam::")),
                    "{}: {id}: a key policy names principals by ARN: {statement}",
                    stack.name
                );
                if principals.contains(&arn) {
                    out.push(Grant {
                        key: Some((*id).to_owned()),
                        statement: statement.clone(),
                    });
                }
            }
        }
    }
    let properties = &stack.resource(role)["Properties"];
    assert!(
        properties.get("ManagedPolicyArns").is_none(),
        "{role}: managed policies"
    );
    for policy in properties["Policies"].as_array().unwrap() {
        for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
            out.push(Grant {
                key: None,
                statement: statement.clone(),
            });
        }
    }
    for grant in &out {
        assert_eq!(
            grant.statement["Effect"], "Allow",
            "{}: {role}: {:?}",
            stack.name, grant
        );
    }
    out
}

fn aws_actions(grants: &[Grant]) -> BTreeSet<String> {
    grants
        .iter()
        .flat_map(Grant::actions)
        .filter(|a| !a.starts_with("logs:"))
        .collect()
}

#[tokio::test]
async fn template_grants_exactly_what_each_caller_calls() {
    let template = template().await;
    let stacks = Rendered::all(&template);
    let mut service = BTreeSet::new();
    let mut rotation = BTreeSet::new();
    for stack in &stacks {
        for (role, union) in [("ServiceRole", &mut service), ("RotationRole", &mut rotation)] {
            let grants = grants(stack, role);
            union.extend(aws_actions(&grants));
            for grant in &grants {
                for action in grant.actions() {
                    assert!(
                        !action.contains('*'),
                        "{}: wildcard action {action} granted to {role}",
                        stack.name
                    );
                    let by = CALLS.iter().find(|(_, a, _)| *a == action).map(|(_, _, by)| *by);
                    assert!(
                        by != Some(&[Operator]),
                        "{}: operator-only action {action} granted to {role}",
                        stack.name
                    );
                }
                // A role's own statements name their resources; a wildcard
                // only where no resource exists yet (a key being created,
                // conditioned on the tags it is created with) and for the
                // read-only key listing. Existing keys are granted by their
                // own policies, never by a tag.
                if grant.key.is_none() {
                    for resource in grant.resources() {
                        if !resource.contains('*') {
                            continue;
                        }
                        let tagged = grant.statement["Condition"]["StringEquals"]
                            .as_object()
                            .is_some_and(|c| c.keys().any(|k| k.starts_with("aws:RequestTag/")));
                        let listing = grant.actions().iter().all(|a| a == "kms:ListKeys");
                        assert!(
                            tagged || listing,
                            "{}: {role}: unscoped statement {}",
                            stack.name,
                            grant.statement
                        );
                    }
                }
            }
        }
    }

    let code_service: BTreeSet<String> = actions_in_code(Service).into_iter().map(str::to_owned).collect();
    assert_eq!(
        service, code_service,
        "ServiceRole's grants vs the service's calls"
    );
    let mut code_rotation: BTreeSet<String> =
        actions_in_code(Rotation).into_iter().map(str::to_owned).collect();
    for (needs, implied) in IMPLIED {
        if code_rotation.contains(needs) {
            code_rotation.insert(implied.to_owned());
        }
    }
    assert_eq!(
        rotation, code_rotation,
        "RotationRole's grants vs the rotation's calls"
    );

    // Nothing in the template calls STS for the service.
    let text = std::fs::read_to_string(workspace_path(TEMPLATE)).unwrap();
    assert!(
        !text.contains("sts:GetCallerIdentity"),
        "the service needs no STS permission"
    );
}

// The rotation role's grants, and every other grant of the stack, are
// listed with their reasons in `policies.rs`.

/// Secrets Manager, and only for this key set, invokes the rotation
/// function; the schedule rotates at creation (the first keys) and then
/// every `RotationPeriodDays`; the function is the token service's package
/// run as the rotation handler, on both platforms.
#[tokio::test]
async fn secrets_manager_rotates_the_key_set() {
    let template = template().await;
    for stack in Rendered::all(&template) {
        let name = stack.name;
        let resources = stack.resources();
        let of_type = |kind: &str| -> Vec<&str> {
            resources
                .iter()
                .filter(|(_, r)| r["Type"] == kind)
                .map(|(id, _)| *id)
                .collect()
        };

        let permissions: Vec<Value> = of_type("AWS::Lambda::Permission")
            .into_iter()
            .map(|id| stack.resource(id))
            .filter(|p| p["Properties"]["Principal"] == "secretsmanager.amazonaws.com")
            .collect();
        assert_eq!(permissions.len(), 1, "{name}: {permissions:?}");
        let permission = &permissions[0]["Properties"];
        assert_eq!(permission["Action"], "lambda:InvokeFunction", "{name}");
        assert!(
            [ROTATION_FUNCTION, "conn-key-rotation"].contains(&permission["FunctionName"].as_str().unwrap()),
            "{name}: the permission targets {}",
            permission["FunctionName"]
        );
        assert_eq!(permission["SourceAccount"], ACCOUNT, "{name}");
        assert_eq!(permission["SourceArn"], SECRET_ARN, "{name}");
        let permission_id = of_type("AWS::Lambda::Permission")
            .into_iter()
            .find(|id| stack.resource(id)["Properties"]["Principal"] == "secretsmanager.amazonaws.com")
            .unwrap();

        let schedules = of_type("AWS::SecretsManager::RotationSchedule");
        assert_eq!(schedules.len(), 1, "{name}");
        let schedule = stack.resource(schedules[0]);
        let raw = &template["Resources"][schedules[0]]["Properties"];
        let props = &schedule["Properties"];
        assert_eq!(props["SecretId"], SECRET_ARN, "{name}");
        assert_eq!(props["RotationLambdaARN"], ROTATION_FUNCTION, "{name}");
        assert_eq!(
            props["RotateImmediatelyOnUpdate"], true,
            "{name}: the first keys at creation"
        );
        assert_eq!(
            raw["RotationRules"]["AutomaticallyAfterDays"],
            json!({"Ref": "RotationPeriodDays"}),
            "{name}"
        );
        assert!(
            as_list(&schedule["DependsOn"]).iter().any(|d| d == permission_id),
            "{name}: the schedule must wait for the permission (it rotates at once)"
        );

        let function = stack.resource("RotationFunction");
        let token_code = &template["Resources"]["TokenFunction"]["Properties"];
        let raw_function = &template["Resources"]["RotationFunction"];
        assert!(raw_function.get("Condition").is_none(), "both platforms rotate");
        let props = &function["Properties"];
        assert_eq!(props["Role"], ROTATION_ROLE, "{name}");
        let variables = props["Environment"]["Variables"].as_object().unwrap();
        assert_eq!(
            variables.keys().collect::<BTreeSet<_>>(),
            BTreeSet::from([&HANDLER_ENV.to_owned(), &TEMPLATE_ENV.to_owned()]),
            "{name}"
        );
        assert_eq!(variables[HANDLER_ENV], "rotation", "{name}");
        assert_eq!(
            raw_function["Properties"]["Code"], token_code["Code"],
            "the token service's package"
        );
        assert_eq!(raw_function["Properties"]["Handler"], token_code["Handler"]);
        assert_eq!(raw_function["Properties"]["Runtime"], token_code["Runtime"]);
        assert_eq!(props["Timeout"], 120, "{name}");
        assert_eq!(
            props["LoggingConfig"]["LogGroup"], "<RotationLogGroup>",
            "{name}: a log group of its own"
        );
        assert_eq!(
            stack.resource("RotationLogGroup")["Properties"]["RetentionInDays"],
            stack.param("LogRetentionDays"),
            "{name}"
        );
        assert_eq!(
            stack.eval(&template["Outputs"]["RotationFunctionArn"]["Value"]),
            Some(json!(ROTATION_FUNCTION))
        );
        let checked = stack.check().await;
        assert!(checked.is_ok(), "{name}: {checked:?}");
    }
    // The package is needed on ECS too now.
    let mut parameters: Vec<(&'static str, &'static str)> = DEPLOYMENTS[3].1.to_vec();
    parameters.push(("CodeS3Bucket", ""));
    let stack = Rendered::new(&template, "ecs without the Lambda package", &parameters);
    assert!(
        stack.rules_hold().is_err(),
        "an ECS stack without CodeS3Bucket must be refused"
    );

    // The schedule's shortest period leaves room for the rules: a key is
    // published poll interval + JWKS max-age before it signs, and leaves the
    // set only once its last token (+ leeway) has expired.
    let parameters = &template["Parameters"];
    let period = parameters["RotationPeriodDays"]["MinValue"].as_u64().unwrap() * 86_400;
    assert_eq!(parameters["RotationPeriodDays"]["Default"], 7);
    assert_eq!(parameters["RotationPeriodDays"]["Type"], "Number");
    let longest_token = parameters["MaxTokenLifetimeSeconds"]["MaxValue"]
        .as_u64()
        .unwrap();
    assert!(period >= 30 + 300 && period >= longest_token + 60 && period >= 4 * 3600);
    let window = &parameters["KeyDeletionWindowDays"];
    assert_eq!(
        (&window["Default"], &window["MinValue"], &window["MaxValue"]),
        (&json!(30), &json!(7), &json!(30))
    );
    assert_eq!(parameters["OperatorPrincipalArn"]["Default"], "");

    // Every parameter is in exactly one group of the console's form.
    let groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
        .as_array()
        .unwrap();
    let grouped: Vec<String> = groups.iter().flat_map(|g| as_list(&g["Parameters"])).collect();
    let declared: BTreeSet<String> = parameters.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        grouped.len(),
        declared.len(),
        "a parameter is in two groups: {grouped:?}"
    );
    assert_eq!(grouped.into_iter().collect::<BTreeSet<_>>(), declared);
}

/// The key-set secret is created empty (a value in the template would be
/// written as a new AWSCURRENT on every stack update that changed it, wiping
/// the keys in force); the rotation function's environment holds the template
/// the code reads (kms: with the stack's existing key as the first key;
/// kms-envelope: with the envelope key), with the deployed timings; every
/// config, tag and policy names the same secret.
#[tokio::test]
async fn the_rotation_function_holds_a_template_the_code_reads() {
    let template = template().await;
    let raw = &template["Resources"]["KeySetSecret"];
    assert!(
        raw.get("Condition").is_none(),
        "both signing modes keep their keys in the secret"
    );
    assert!(
        raw["Properties"].get("KmsKeyId").is_none(),
        "the default aws/secretsmanager key"
    );
    for stack in Rendered::all(&template) {
        let name = stack.name;
        let secret = stack.resource("KeySetSecret");
        assert_eq!(secret["Properties"]["Name"], SECRET_NAME, "{name}");
        for value in ["SecretString", "GenerateSecretString", "SecretBinary"] {
            assert!(
                secret["Properties"].get(value).is_none(),
                "{name}: the secret must start empty, not with {value}"
            );
        }
        let text = stack.rotation_template();
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
        let issuer = stack.given("IssuerUrl").unwrap_or(FUNCTION_URL);
        let lifetime: u64 = scalar(&stack.param("MaxTokenLifetimeSeconds")).parse().unwrap();
        let mut expected = json!({
            "format": FORMAT,
            "issuer": issuer,
            "alg": "ES256",
            "max_token_lifetime_secs": lifetime,
            "jwks_max_age_secs": 300,
            "poll_interval_secs": 30,
            "leeway_secs": 60,
        });
        let extra = if stack.kms() {
            let mut administrators = vec![ROTATION_ROLE];
            if stack.given("OperatorPrincipalArn").is_some() {
                administrators.push(OPERATOR);
            }
            let window: u64 = scalar(&stack.param("KeyDeletionWindowDays")).parse().unwrap();
            json!({
                "kind": "kms",
                "key_spec": "ECC_NIST_P256",
                "signers": [SERVICE_ROLE],
                "administrators": administrators,
                "deletion_window_days": window,
                "first_key_id": SIGNING_KEY,
            })
        } else {
            json!({"kind": "kms-envelope", "kms_key_id": ENVELOPE_KEY})
        };
        expected
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        assert_eq!(value, expected, "{name}");
        match KeySetValue::parse(&text) {
            Ok(KeySetValue::Template(read)) => {
                if stack.given("MaxTokenLifetimeSeconds").is_none() {
                    assert_eq!(read.timings, DEFAULT_TIMINGS, "{name}");
                }
            }
            other => panic!("{name}: the code reads {other:?} from {text}"),
        }

        // The first key carries the set's tag: the roles' policies match it.
        if stack.kms() {
            let key = stack.resource("SigningKey");
            assert_eq!(
                key["Properties"]["Tags"],
                json!([{"Key": KEY_SET_TAG, "Value": SECRET_NAME}]),
                "{name}"
            );
        }
        // The service polls the set in force, by name, in both modes.
        for grant in grants(&stack, "ServiceRole") {
            let actions = grant.actions();
            if actions.iter().any(|a| a.starts_with("secretsmanager:")) {
                assert_eq!(actions, ["secretsmanager:GetSecretValue"], "{name}");
                assert_eq!(grant.resources(), [SECRET_ARN_PATTERN], "{name}");
            }
            assert!(
                grant.key.is_some() || !actions.iter().any(|a| a.starts_with("kms:")),
                "{name}: the service's KMS grants are in the keys' policies"
            );
        }
        let config = config(&stack);
        let signing = &config["signing"];
        assert_eq!(signing["kind"].as_str(), stack.given("SigningMode"), "{name}");
        assert_eq!(signing["key_set_secret"].as_str(), Some(SECRET_NAME), "{name}");
        assert_eq!(
            config["tokens"]["max_ttl_secs"]
                .as_integer()
                .map(i64::unsigned_abs),
            Some(lifetime),
            "{name}: the server allows what the key set's rules count on"
        );
        assert_eq!(
            stack.eval(&template["Outputs"]["KeySetSecretName"]["Value"]),
            Some(json!(SECRET_NAME))
        );
    }
}

/// The server configuration of `stack` (the function's, or the task's), parsed.
fn config(stack: &Rendered) -> toml::Table {
    let text = stack.service_config();
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}: {text}", stack.name))
}

/// The replay table is the one the server checks for at start (`pk` String
/// partition key, TTL on `expires_at`, on demand), the role may write to that
/// table only, and both platforms' configurations record uses there: a fleet
/// never keeps one-time use in memory.
#[tokio::test]
async fn the_replay_table_serves_both_platforms() {
    let template = template().await;
    let table = &template["Resources"]["ReplayTable"];
    assert_eq!(table["Type"], "AWS::DynamoDB::Table");
    let props = &table["Properties"];
    assert_eq!(props["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        props["KeySchema"],
        json!([{"AttributeName": oidc_server::replay::PARTITION_KEY, "KeyType": "HASH"}])
    );
    assert_eq!(
        props["AttributeDefinitions"],
        json!([{"AttributeName": oidc_server::replay::PARTITION_KEY, "AttributeType": "S"}])
    );
    assert_eq!(
        props["TimeToLiveSpecification"],
        json!({"AttributeName": oidc_server::replay::EXPIRES_AT, "Enabled": true})
    );

    let mut platforms = BTreeSet::new();
    for stack in Rendered::all(&template) {
        let grants = grants(&stack, "ServiceRole");
        let replay: Vec<&Grant> = grants
            .iter()
            .filter(|g| g.actions().iter().any(|a| a.starts_with("dynamodb:")))
            .collect();
        assert_eq!(replay.len(), 1, "{}: {replay:?}", stack.name);
        assert_eq!(replay[0].resources(), ["<ReplayTable.Arn>"], "{}", stack.name);
        let config = config(&stack);
        let replay = &config["replay"];
        assert_eq!(replay["store"].as_str(), Some("dynamodb"), "{}", stack.name);
        assert_eq!(replay["table"].as_str(), Some("<ReplayTable>"), "{}", stack.name);
        platforms.insert(stack.given("Platform").unwrap().to_owned());
    }
    assert_eq!(platforms, BTreeSet::from(["ecs", "lambda"].map(str::to_owned)));
}

/// `UpstreamIssuerUrl` set, the service configuration trusts the account's
/// STS issuer (typ JWT, ES384 or RS256, each token once, aud the service's
/// issuer, whichever way the issuer is known) and binds the connector's
/// role to it; unset, there is no token exchange. Each configuration is the
/// one `check-config` would accept.
#[tokio::test]
async fn the_upstream_issuer_parameter_trusts_the_accounts_sts_and_binds_the_connector() {
    let template = template().await;
    let mut seen = BTreeSet::new();
    for stack in Rendered::all(&template) {
        let text = stack.service_config();
        // The function's issuer comes from the SSM parameter at cold start.
        let issuer = match stack.given("IssuerUrl") {
            Some(issuer) => issuer.to_owned(),
            None => FUNCTION_URL.trim_end_matches('/').to_owned(),
        };
        let overrides = oidc_server::config::Overrides {
            issuer: Some(issuer.clone()),
            ..Default::default()
        };
        // Placeholders of resources (`<ReplayTable>`) are no table names.
        let env = [("OIDC_SERVER__REPLAY__TABLE".to_owned(), "conn-replay".to_owned())];
        let config = oidc_server::config::Config::from_toml(
            &text,
            oidc_server::config::Origin::Environment,
            env,
            &overrides,
        )
        .unwrap_or_else(|e| panic!("{}: {e}\n{text}", stack.name));
        let connector = &config.connectors[0];
        match stack.given("UpstreamIssuerUrl") {
            Some(upstream) => {
                assert_eq!(config.upstream_issuers.len(), 1, "{}", stack.name);
                let entry = &config.upstream_issuers[0];
                assert!(entry.one_time_use, "{}", stack.name);
                assert_eq!(entry.entry.issuer(), upstream);
                let policy = entry.entry.policy();
                assert_eq!(policy.audiences(), [issuer.as_str()], "{}", stack.name);
                assert_eq!(policy.types(), ["JWT"]);
                assert_eq!(
                    policy.algorithms(),
                    Some(&[oidc_core::Algorithm::ES384, oidc_core::Algorithm::RS256][..])
                );
                assert_eq!(policy.max_lifetime_secs(), 3600);
                assert_eq!(connector.federated.len(), 1, "{}", stack.name);
                assert_eq!(connector.federated[0].issuer, "aws");
                assert_eq!(
                    connector.federated[0].subject,
                    stack.param("ConnectorPrincipalArn").as_str().unwrap()
                );
                // Still AWS IAM authentication besides.
                assert!(!connector.aws_principals.is_empty());
                seen.insert(stack.given("Platform").unwrap().to_owned());
            }
            None => {
                assert!(config.upstream_issuers.is_empty(), "{}", stack.name);
                assert!(connector.federated.is_empty(), "{}", stack.name);
            }
        }
        assert!(config.fleet_replay_problem().is_none(), "{}", stack.name);
    }
    assert_eq!(seen, BTreeSet::from(["ecs", "lambda"].map(str::to_owned)));
    // The parameter's pattern: an https URL, no trailing slash.
    let parameters: Vec<(&str, &str)> = vec![("UpstreamIssuerUrl", "http://x.example/")];
    let stack = Rendered::new(&template, "an http upstream issuer", &parameters);
    assert!(stack.check().await.is_err());
}
