//! The deployment rehearsal ("proven as deployed"): the stack's own
//! configuration, served for weeks of simulated time, through scheduled key
//! rotations and the quiet days between them, with a connector polling the
//! example control plane all along.
//!
//! What runs is what the template deploys ([`e2e::stack`]): the
//! token-service configuration rendered from the template with its default
//! parameters, on both platforms: ECS (two replicas, its `DesiredCount`)
//! in the `kms-envelope` and `kms` signing modes, and Lambda in `kms` (the
//! template's defaults exactly); the key-set template of the rotation
//! function; the period of the `RotationSchedule`. Only what cannot exist
//! here is replaced, in code, each with a comment: the issuer URL (a
//! loopback address), AWS's STS endpoint (a moto of the rehearsal's own).
//! The secret, the replay table, the keys and the connector's IAM identity
//! are created in moto as the stack creates them, and the rendered names
//! resolve to them.
//!
//! - The replicas are built in-process by [`TestServer`] from that
//!   configuration, on moto (KMS, Secrets Manager, DynamoDB, STS). On ECS
//!   each polls the key set every poll interval, as its background loop
//!   would, driven by the rehearsal ([`PollerHandle::poll_now`]), staggered.
//!   On Lambda each environment serves the function's router
//!   (`oidc_server::lambda::router`), which reads the set at the start of an
//!   invocation when its last read is older than the poll interval, and
//!   reads nothing while no request comes.
//! - The rotation function's handler is invoked with Secrets Manager's four
//!   steps the way the `RotationSchedule` invokes it: once at creation
//!   (`RotateImmediatelyOnUpdate`: the first keys, from an empty secret),
//!   then on the day `AutomaticallyAfterDays` after the last rotation, at an
//!   hour of that day chosen at random (what Secrets Manager documents).
//! - The connector is connector-client's `CachedTokenSource` over
//!   `ClientCredentials` with the stack's own connector entry: AWS IAM
//!   authentication (a signed `GetCallerIdentity` that the token service
//!   forwards to moto's STS and records in the DynamoDB replay table), its
//!   requests alternating between the replicas as a load balancer would.
//!   Every 30 s it polls the control plane, which verifies the token as
//!   `oidc-core/examples/control_plane.rs` does: a `Verifier` over
//!   `RemoteJwks::discovery(issuer)` with its default cache settings.
//!
//! # Time
//!
//! Every duration runs at its real value on one simulated clock
//! ([`e2e::sim::SimClock`]), moved from event to event: the next replica
//! poll, connector poll or rotation step, or the next instant a component
//! sleeps until. Everything the path under test reads time through takes it:
//! the issuer and the replicas' key-set pollers (`ServiceContext::clock` and
//! `monotonic_clock`, which date each read, age the JWKS `max-age` and
//! decide when a Lambda environment's set is stale), the verifier and its
//! JWKS cache, the connector's refresh timer and the date it signs its AWS
//! requests with, and moto, whose clock (`CreatedDate`, the `Date` header:
//! the rotation rules run on them) is libfaketime's file, rewritten at every
//! move. What still reads the system clock decides nothing here: the
//! timeouts of HTTP and AWS calls (real calls, real milliseconds, far below
//! any timeout), the latency metrics, and a `Retry-After` given as an HTTP
//! date (the token service sends seconds).
//!
//! Neither obvious shortcut works. Scaling every duration down by one factor
//! cannot reach minutes: the configuration's durations and the tokens'
//! times are whole seconds (poll interval 30 s, JWKS max-age 300 s, tokens
//! 300 s and at most 900 s, leeway 60 s, rotation window 300 s, period 7
//! days), so a factor that fits three weeks into minutes rounds them all to
//! zero. Running the real durations under an accelerated clock
//! (libfaketime's rate) inflates every network latency by the same rate: at
//! ×5000 a 4 ms moto call lasts 20 simulated seconds, and two replicas
//! polling every 30 s saturate moto. Simulated time moves only between
//! events, so a call takes no simulated time at all.
//!
//! # Length
//!
//! The short rehearsal is the template's shortest schedule
//! (`RotationPeriodDays` = 1, its `MinValue`) for 4 simulated days, which
//! hold three scheduled rotations and the days between them, on each of the
//! three deployments, within `cargo test`. `scripts/rehearsal.sh` runs it
//! longer by hand (three weeks at the template's default period by default);
//! its header says how.
//!
//! moto runs under libfaketime's thread-safe build (`libfaketimeMT`, which
//! the test command compiles from the vendored source of the `libfaketime`
//! package): the default build re-reads the timestamp file into one buffer
//! shared by every thread without a lock, and in one CI run moto exited
//! mid-run with "failed to parse FAKETIME timestamp" although the file is
//! only ever replaced whole.
//! Set by the environment: `REHEARSAL_DAYS`, `REHEARSAL_PERIOD_DAYS`,
//! `REHEARSAL_SEED`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use connector_client::aws_iam::AwsIam;
use connector_client::{
    AccessToken, CachedTokenSource, ClientAuth, ClientCredentials, Endpoint, TokenSource,
};
use e2e::moto::{self, free_port, Moto, REGION};
use e2e::sim::{faketime_env, SimClock, SplitMix};
use e2e::stack::{self, Deployment};
use e2e::tools::run_python;
use e2e::TestServer;
use oidc_core::calendar::Utc;
use oidc_core::verify::RemoteJwks;
use oidc_core::{AccessTokenClaims, Policy, Verifier};
use oidc_server::config::{KmsConfig, KmsKey, SigningConfig};
use oidc_server::keyset::document::KeySetTemplate;
use oidc_server::keyset::KEY_SET_TAG;
use oidc_server::lambda::rotation;
use oidc_server::KeySetPolling;
use oidc_server::ServiceContext;
use serde_json::{json, Value};

const STACK: &str = "rehearsal";
/// The control plane's identifier: the `ConnectorAudience` parameter (it
/// has no default).
const AUDIENCE: &str = "https://control-plane.rehearsal.example";
/// The IAM user the connector runs as (its `ConnectorPrincipalArn`).
const CONNECTOR_USER: &str = "connector";
/// The ECS stack's `IssuerUrl`; replaced by replica 0's loopback URL (see
/// [`Rehearsal::start`]).
const STACK_ISSUER: &str = "https://tokens.rehearsal.example";
/// How often the connector polls the control plane.
const CONNECTOR_POLL: Duration = Duration::from_secs(30);
/// Between two rotation steps (one Lambda invocation each).
const STEP_GAP: Duration = Duration::from_secs(1);
const DAY: u64 = 86_400;

/// What one rehearsal runs.
#[derive(Debug, Clone)]
struct Plan {
    /// `ecs` or `lambda`.
    platform: &'static str,
    /// `kms-envelope` or `kms`.
    mode: &'static str,
    /// Simulated days.
    days: f64,
    /// `RotationPeriodDays`; `None`: the template's default.
    period_days: Option<u64>,
    seed: u64,
}

impl Plan {
    /// The plan for `mode`, from the environment (see the module docs).
    fn from_env(platform: &'static str, mode: &'static str) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let number =
            |name: &str| var(name).map(|v| v.trim().parse::<u64>().unwrap_or_else(|e| panic!("{name}: {e}")));
        Self {
            platform,
            mode,
            days: var("REHEARSAL_DAYS").map_or(4.0, |v| {
                v.trim()
                    .parse::<f64>()
                    .unwrap_or_else(|e| panic!("REHEARSAL_DAYS: {e}"))
            }),
            period_days: match var("REHEARSAL_DAYS") {
                // A longer run by hand: the template's default period unless told.
                Some(_) => number("REHEARSAL_PERIOD_DAYS"),
                // CI's short run: the template's shortest period, a rotation a day.
                None => Some(number("REHEARSAL_PERIOD_DAYS").unwrap_or(1)),
            },
            seed: number("REHEARSAL_SEED").unwrap_or(2024),
        }
    }
}

/// What a rehearsal counted.
#[derive(Debug, Default)]
struct Report {
    days: f64,
    rotations: u64,
    scheduled_rotations: u64,
    replica_polls: u64,
    connector_polls: u64,
    token_requests: u64,
    tokens_issued: u64,
    kids: BTreeMap<String, u64>,
    failures: Vec<String>,
    real: Duration,
    /// Real time spent in replica polls, connector polls, rotation steps and
    /// waiting for woken tasks.
    spent: [Duration; 4],
}

impl Report {
    fn refusals(&self) -> u64 {
        self.token_requests.saturating_sub(self.tokens_issued)
    }

    fn line(&self, plan: &Plan) -> String {
        format!(
            "rehearsal {} {}: {:.1} simulated days, {} rotations ({} scheduled, period: {}), {} replica polls, \
             {} connector polls, {} tokens issued ({} signing keys), {} refused, {} failures, {:.0} s real \
             (replica polls {:.0} s, connector polls {:.0} s, rotations {:.1} s, settling {:.0} s)",
            plan.platform,
            plan.mode,
            self.days,
            self.rotations,
            self.scheduled_rotations,
            plan.period_days.map_or("the template's default".into(), |d| format!("{d} d")),
            self.replica_polls,
            self.connector_polls,
            self.tokens_issued,
            self.kids.len(),
            self.refusals(),
            self.failures.len(),
            self.real.as_secs_f64(),
            self.spent[0].as_secs_f64(),
            self.spent[1].as_secs_f64(),
            self.spent[2].as_secs_f64(),
            self.spent[3].as_secs_f64(),
        )
    }
}

/// A load balancer in front of the replicas, for the connector: its token
/// requests go to each replica in turn.
struct Alternating {
    replicas: Vec<ClientCredentials>,
    next: AtomicUsize,
}

#[async_trait]
impl TokenSource for Alternating {
    async fn token(&self) -> Result<AccessToken, connector_client::Error> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.replicas.len();
        self.replicas[i].token().await
    }
}

/// A rotation in progress: its token, the steps still to run, when the
/// next one runs.
struct Rotating {
    token: String,
    steps: std::vec::IntoIter<&'static str>,
    at: Duration,
    scheduled: bool,
}

/// The stack's `RotationSchedule`: Secrets Manager invoking the rotation
/// function (its handler, with the stack's key-set template) step by step.
struct Schedule {
    sdk: aws_config::SdkConfig,
    secret_arn: String,
    template: KeySetTemplate,
    period: Duration,
    start_unix: u64,
    rng: SplitMix,
    rotations: u64,
    scheduled: u64,
}

impl Schedule {
    fn rotation(&mut self, at: Duration, scheduled: bool) -> Rotating {
        let hex: String = [self.rng.next_u64(), self.rng.next_u64()]
            .iter()
            .flat_map(|n| n.to_be_bytes())
            .map(|b| format!("{b:02x}"))
            .collect();
        // Secrets Manager's tokens are UUIDs.
        let token = format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        );
        Rotating {
            token,
            steps: vec!["createSecret", "setSecret", "testSecret", "finishSecret"].into_iter(),
            at,
            scheduled,
        }
    }

    /// Invokes the rotation function with `step` of `rotating`, as Secrets
    /// Manager does.
    async fn step(&mut self, rotating: &Rotating, step: &str) -> Result<(), String> {
        let event = json!({"Step": step, "SecretId": self.secret_arn, "ClientRequestToken": rotating.token});
        rotation::handle(&self.sdk, Some(&self.template), &event)
            .await
            .map_err(|e| format!("rotation {step}: {e}"))?;
        if step == "finishSecret" {
            self.rotations += 1;
            self.scheduled += u64::from(rotating.scheduled);
        }
        Ok(())
    }

    /// Runs a whole rotation at once (the one at creation).
    async fn rotate_now(&mut self, at: Duration) -> Result<(), String> {
        let mut rotating = self.rotation(at, false);
        while let Some(step) = rotating.steps.next() {
            self.step(&rotating, step).await?;
        }
        Ok(())
    }

    /// When Secrets Manager rotates next after a rotation at `last` (since
    /// zero): on the UTC day a period after, at a random time of that day.
    fn next_after(&mut self, last: Duration) -> Duration {
        let last_unix = self.start_unix + last.as_secs();
        let day = (last_unix / DAY) * DAY + self.period.as_secs();
        let at = day + self.rng.below(DAY);
        Duration::from_secs(at - self.start_unix)
    }
}

struct Rehearsal {
    plan: Plan,
    clock: SimClock,
    _moto: Moto,
    _faketime_dir: PathBuf,
    schedule: Schedule,
    poll_interval: Duration,
    replicas: Vec<TestServer>,
    /// The Lambda function's environments, served beside the replicas.
    _functions: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    source: CachedTokenSource,
    jwks: RemoteJwks,
    verifier: Verifier<RemoteJwks>,
    report: Report,
}

/// Creates the IAM user the connector runs as (its role, in a deployment),
/// with an access key; prints the key and the user's ARN.
const CONNECTOR_IDENTITY: &str = r#"
import json, sys, boto3
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
user = iam.create_user(UserName=sys.argv[2])["User"]
key = iam.create_access_key(UserName=sys.argv[2])["AccessKey"]
print(json.dumps({"arn": user["Arn"], "id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
"#;

impl Rehearsal {
    async fn start(plan: Plan) -> Self {
        // The simulation starts at the beginning of today (UTC), so that a
        // seed replays the same schedule, on a moto of its own whose clock
        // is the simulation's.
        let start_unix = e2e::now() / DAY * DAY;
        let dir = std::env::temp_dir().join(moto::unique("rehearsal"));
        std::fs::create_dir_all(&dir).expect("a folder for the faketime file");
        let clock = SimClock::with_faketime_file(start_unix, &dir.join("faketime"));
        let env = faketime_env(&dir.join("faketime"));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let moto = Moto::start_with_env(free_port(), &env);
        let sdk = moto.sdk_config().await;

        // What the stack creates before its services: the key-set secret
        // (empty), the replay table, the mode's KMS key; and the connector's
        // identity (its task role, in a deployment).
        let out = run_python(CONNECTOR_IDENTITY, &[&moto.endpoint, CONNECTOR_USER]).await;
        assert_eq!(out.code, 0, "IAM setup in moto: {}", out.stderr);
        let identity: Value = serde_json::from_str(&out.stdout).expect("JSON");
        let principal = identity["arn"].as_str().expect("an ARN").to_owned();
        let secret_name = format!("{STACK}/key-set");
        let secret_arn = aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(&secret_name)
            .description("Connector token key set (rotated by the stack's rotation function).")
            .send()
            .await
            .expect("CreateSecret")
            .arn()
            .expect("an ARN")
            .to_owned();
        let table = moto::create_replay_table(&sdk).await;
        let (key_resource, key) = create_key(&sdk, plan.mode, &secret_name).await;

        let period_param = plan.period_days.map(|d| d.to_string());
        let mut parameters = vec![
            ("Platform", plan.platform),
            ("SigningMode", plan.mode),
            ("ConnectorAudience", AUDIENCE),
            ("ConnectorPrincipalArn", principal.as_str()),
            // Required by the template's rules; nothing here reads them.
            ("CodeS3Bucket", "artifacts"),
            ("CodeS3Key", "oidc-server/bootstrap.zip"),
        ];
        if plan.platform == "ecs" {
            parameters.extend([
                ("IssuerUrl", STACK_ISSUER),
                // Required by the template's rules on ECS; nothing here reads them.
                (
                    "ImageUri",
                    "123456789012.dkr.ecr.us-east-1.amazonaws.com/oidc-server:1",
                ),
                ("VpcId", "vpc-0123"),
                ("VpcCidr", "10.0.0.0/16"),
                ("SubnetIds", "subnet-a,subnet-b"),
            ]);
        }
        if let Some(days) = &period_param {
            parameters.push(("RotationPeriodDays", days.as_str()));
        }
        // The issuer: the stack's URL cannot exist here; replica 0's
        // loopback URL stands for it (discovery and the JWKS go there). On
        // Lambda it is the function URL (with its trailing slash, as AWS
        // gives it), which the stack hands the rotation and, through an SSM
        // parameter, the function.
        let first_port = free_port();
        let issuer = format!("http://127.0.0.1:{first_port}");
        let function_url = format!("{issuer}/");
        let template = stack::template().await;
        let stack = Deployment::new(&template, STACK, REGION, &parameters)
            .resolve("KeySetSecret", &secret_arn)
            .resolve("ReplayTable", &table)
            .resolve(key_resource, &key)
            .resolve("TokenFunctionUrl.FunctionUrl", &function_url);
        stack
            .check()
            .await
            .unwrap_or_else(|e| panic!("CloudFormation would refuse this deployment: {e}"));
        let replicas = match plan.platform {
            "ecs" => stack.desired_count().expect("the ECS service's replicas"),
            // Two environments of the function (its concurrency).
            _ => 2,
        };
        assert!(
            replicas >= 2,
            "the rehearsal needs replicas that share the key set"
        );
        assert!(
            stack.rotates_at_creation(),
            "the stack makes its first keys at creation"
        );

        let mut key_set_template: Value = serde_json::from_str(&stack.rotation_template())
            .expect("the rotation function's template is JSON");
        if plan.platform == "ecs" {
            assert_eq!(key_set_template["issuer"], STACK_ISSUER);
            key_set_template["issuer"] = json!(issuer);
        }
        let key_set_template =
            rotation::template_from(&key_set_template.to_string()).expect("a template the rotation reads");
        assert_eq!(
            key_set_template.issuer, issuer,
            "the key set's issuer is the service's"
        );

        let mut config: toml::Table = stack
            .service_config()
            .parse()
            .expect("the service configuration is TOML");
        match plan.platform {
            "ecs" => assert_eq!(config["issuer"].as_str(), Some(STACK_ISSUER)),
            // The function reads its issuer from the SSM parameter holding
            // the function URL (trailing slash cut): TestServer's override.
            _ => {
                let function = stack.resource("TokenFunction");
                let variables = &function["Properties"]["Environment"]["Variables"];
                assert!(variables[oidc_server::lambda::ISSUER_PARAMETER_ENV].is_string());
                let parameter = stack.resource("IssuerParameter");
                assert_eq!(parameter["Properties"]["Value"], json!(function_url));
            }
        }
        // AWS's STS cannot be reached here: moto's stands for it. (The
        // issuer and the listen address are the harness's: TestServer.)
        config["aws_iam"]["sts_endpoint"] = toml::Value::String(moto.endpoint.clone());
        let config = config.to_string();

        let mut schedule = Schedule {
            sdk: sdk.clone(),
            secret_arn,
            template: key_set_template,
            period: Duration::from_secs(stack.rotation_period_days() * DAY),
            start_unix,
            rng: SplitMix::new(plan.seed),
            rotations: 0,
            scheduled: 0,
        };
        // The rotation at creation: the first keys, from the empty secret.
        schedule
            .rotate_now(Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("the stack's first rotation: {e}"));
        assert_eq!(
            secret_created(&sdk, &schedule.secret_arn).await,
            start_unix,
            "moto dates versions by the simulated clock"
        );

        let (mut servers, mut urls, mut functions) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..replicas {
            let context = ServiceContext {
                sdk_config: Some(sdk.clone()),
                clock: Arc::new(clock.clone()),
                monotonic_clock: Arc::new(clock.clone()),
                // No loop polls on real time: the rehearsal polls for them.
                key_set_polling: KeySetPolling::OnInvocation,
                ..Default::default()
            };
            let builder = TestServer::builder(&config)
                .context(context)
                .clock(Arc::new(clock.clone()))
                .issuer(&issuer);
            let at: SocketAddr = ([127, 0, 0, 1], if i == 0 { first_port } else { free_port() }).into();
            if plan.platform == "ecs" {
                let server = builder.at(at).start().await;
                urls.push(server.url.clone());
                servers.push(server);
                continue;
            }
            // The function's router (each invocation first reads the set if
            // its last read is older than the poll interval) on a socket of
            // its own; the long-running server TestServer starts beside it
            // goes unused.
            let server = builder.start().await;
            let listener = tokio::net::TcpListener::bind(at).await.expect("bind");
            let router = oidc_server::lambda::router(server.state.clone());
            functions.push(tokio::spawn(async move {
                axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .await
            }));
            urls.push(format!("http://{at}"));
            servers.push(server);
        }
        let poll_interval = match &servers[0].state.config().signing {
            SigningConfig::KmsEnvelope(set) => set.poll_interval,
            SigningConfig::Kms(KmsConfig {
                key: KmsKey::Rotating(set),
                ..
            }) => set.poll_interval,
            other => panic!("the stack signs with a key set, not {other:?}"),
        };

        // The connector, as the stack's connector entry lets it in: AWS IAM
        // with its own credentials, its requests dated by the simulation.
        let credentials = SharedCredentialsProvider::new(Credentials::new(
            identity["id"].as_str().expect("an access key id"),
            identity["secret"].as_str().expect("a secret key"),
            None,
            None,
            "rehearsal",
        ));
        let connector_id = stack
            .param("ConnectorId")
            .as_str()
            .expect("a connector id")
            .to_owned();
        let sources = urls
            .iter()
            .map(|url| {
                let aws = AwsIam::new(credentials.clone(), REGION, &moto.endpoint)
                    .expect("an STS endpoint")
                    .with_clock(Arc::new(clock.clone()));
                ClientCredentials::builder(
                    Endpoint::TokenUrl(format!("{url}/token")),
                    connector_id.clone(),
                    ClientAuth::AwsIam(aws),
                )
                // Behind a load balancer, the replicas are one issuer.
                .assertion_audience(issuer.clone())
                .build()
                .expect("a token source")
            })
            .collect();
        let source = CachedTokenSource::builder(Alternating {
            replicas: sources,
            next: AtomicUsize::new(0),
        })
        .timer(Arc::new(clock.clone()))
        .build()
        .expect("a token cache");

        // The control plane, as oidc-core/examples/control_plane.rs builds it.
        let jwks = RemoteJwks::discovery(issuer.clone())
            .clock(Arc::new(clock.clone()))
            .build()
            .expect("a JWKS source");
        jwks.refresh().await.expect("the control plane loads the JWKS");
        let policy = Policy::builder(issuer, [AUDIENCE]).build().expect("a policy");
        let verifier = Verifier::new(policy, jwks.clone()).with_clock(Arc::new(clock.clone()));

        let rehearsal = Self {
            plan,
            clock,
            _moto: moto,
            _faketime_dir: dir,
            schedule,
            poll_interval,
            replicas: servers,
            _functions: functions,
            source,
            jwks,
            verifier,
            report: Report::default(),
        };
        rehearsal.settle().await;
        rehearsal
    }

    /// Waits (in real time) until every task the last move of the clock
    /// woke has run: the connector's refresher parked on its next deadline,
    /// no JWKS fetch in flight.
    async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            tokio::task::yield_now().await;
            let quiet = self.clock.due_sleepers() == 0
                && self.clock.waiting_sleepers() >= 1
                && !self.jwks.status().fetching;
            if quiet {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the simulation did not settle at {}: {:?}",
                self.day(),
                self.source.status()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The simulated time, as a day and a date (for messages).
    fn day(&self) -> String {
        format!(
            "day {:.3} ({})",
            self.clock.elapsed().as_secs_f64() / DAY as f64,
            Utc::from_unix_seconds(self.clock.unix())
        )
    }

    fn fail(&mut self, what: String) {
        let line = format!("{}: {what}", self.day());
        eprintln!("rehearsal {}: {line}", self.plan.mode);
        self.report.failures.push(line);
    }

    /// One poll of replica `i`'s key set, as its background loop makes it.
    async fn poll_replica(&mut self, i: usize) {
        let poller = self.replicas[i]
            .state
            .key_poller()
            .expect("a key-set poller")
            .clone();
        let before = poller.reads();
        poller.poll_now().await;
        if poller.reads() == before {
            self.fail(format!("replica {i} could not read the key set"));
        }
    }

    /// One poll of the control plane: a token from the connector's cache,
    /// verified as the control plane verifies it.
    async fn poll_connector(&mut self) {
        self.report.connector_polls += 1;
        let token = match self.source.token().await {
            Ok(token) => token,
            Err(e) => return self.fail(format!("the connector has no token: {e}")),
        };
        match self
            .verifier
            .verify::<AccessTokenClaims>(token.secret().as_str())
            .await
        {
            Ok(verified) => *self.report.kids.entry(verified.kid().to_owned()).or_default() += 1,
            Err(e) => {
                self.fail(format!("the control plane refused the token: {e}"));
                // What the connector's middleware does on a 401.
                self.source.invalidate(&token);
            }
        }
    }

    async fn run(mut self) -> Report {
        let started = Instant::now();
        let end = Duration::from_secs_f64(self.plan.days * DAY as f64);
        let replicas = self.replicas.len() as u32;
        // Staggered: the replicas started apart, so their loops tick apart,
        // and off the connector's beat.
        // On Lambda, an environment reads the set only when invoked.
        let polling = if self.plan.platform == "ecs" { replicas } else { 0 };
        let mut replica_next: Vec<Duration> = (0..polling)
            .map(|i| self.poll_interval + Duration::from_secs(7) + self.poll_interval * i / replicas)
            .collect();
        let mut connector_next = Duration::from_secs(5);
        let mut rotation_next = self.schedule.next_after(Duration::ZERO);
        let mut rotating: Option<Rotating> = None;
        loop {
            let rotation_due = rotating.as_ref().map_or(rotation_next, |r| r.at);
            let mut next = replica_next
                .iter()
                .copied()
                .fold(rotation_due.min(connector_next), Duration::min);
            if let Some(deadline) = self.clock.next_deadline() {
                next = next.min(deadline);
            }
            if next > end {
                break;
            }
            self.clock.advance_to(next);
            let now = self.clock.elapsed();
            let t = Instant::now();
            if rotation_due <= now {
                let mut current = match rotating.take() {
                    Some(current) => current,
                    None => self.schedule.rotation(now, true),
                };
                let step = current.steps.next().expect("a rotation has steps left");
                match self.schedule.step(&current, step).await {
                    Ok(()) if step != "finishSecret" => {
                        current.at = now + STEP_GAP;
                        rotating = Some(current);
                    }
                    Ok(()) => rotation_next = self.schedule.next_after(now),
                    Err(e) => {
                        // Secrets Manager tries again on the next date.
                        self.fail(e);
                        rotation_next = self.schedule.next_after(now);
                    }
                }
            }
            self.report.spent[2] += t.elapsed();
            let t = Instant::now();
            let due: Vec<usize> = (0..replica_next.len())
                .filter(|i| replica_next[*i] <= now)
                .collect();
            for i in due {
                self.poll_replica(i).await;
                replica_next[i] += self.poll_interval;
            }
            self.report.spent[0] += t.elapsed();
            let t = Instant::now();
            if connector_next <= now {
                self.poll_connector().await;
                connector_next += CONNECTOR_POLL;
            }
            self.report.spent[1] += t.elapsed();
            let t = Instant::now();
            self.settle().await;
            self.report.spent[3] += t.elapsed();
        }
        let mut report = self.report;
        report.days = self.clock.elapsed().as_secs_f64() / DAY as f64;
        report.rotations = self.schedule.rotations;
        report.scheduled_rotations = self.schedule.scheduled;
        for replica in &self.replicas {
            report.replica_polls += replica.state.key_poller().map_or(0, |p| p.reads());
            report.token_requests += replica.token_requests();
            report.tokens_issued += replica.tokens_issued();
        }
        report.real = started.elapsed();
        // The set in force was made by the last rotation, on the simulated clock.
        let created = secret_created(&self.schedule.sdk, &self.schedule.secret_arn).await;
        assert!(
            created > self.clock.start_unix() + DAY && created <= self.clock.unix(),
            "moto dated the set in force {created}, outside the simulation"
        );
        report
    }
}

/// The `CreatedDate` of the key set in force (Unix seconds, moto's clock).
/// By its label: moto 5.2 answers a `GetSecretValue` without one with the
/// first version put, not the one `UpdateSecretVersionStage` made current.
async fn secret_created(sdk: &aws_config::SdkConfig, secret: &str) -> u64 {
    let value = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(secret)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .expect("GetSecretValue");
    let created = value.created_date().expect("a CreatedDate").secs();
    u64::try_from(created).expect("after 1970")
}

/// The mode's KMS key as the stack creates it: `kms`, the first signing key
/// (`SigningKey`, tagged as the set's); `kms-envelope`, the key that seals
/// the set's keys (`EnvelopeKey`). Returns what it resolves and its ARN.
async fn create_key(sdk: &aws_config::SdkConfig, mode: &str, secret_name: &str) -> (&'static str, String) {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType, Tag};
    let kms = aws_sdk_kms::Client::new(sdk);
    let (resource, request) = match mode {
        "kms" => (
            "SigningKey.Arn",
            kms.create_key()
                .key_spec(KeySpec::EccNistP256)
                .key_usage(KeyUsageType::SignVerify)
                .tags(
                    Tag::builder()
                        .tag_key(KEY_SET_TAG)
                        .tag_value(secret_name)
                        .build()
                        .expect("a tag"),
                ),
        ),
        _ => ("EnvelopeKey.Arn", kms.create_key()),
    };
    let key = request.send().await.expect("CreateKey");
    let arn = key.key_metadata().and_then(|m| m.arn()).expect("an ARN");
    (resource, arn.to_owned())
}

async fn rehearse(platform: &'static str, mode: &'static str) {
    let plan = Plan::from_env(platform, mode);
    let rehearsal = Rehearsal::start(plan.clone()).await;
    let report = rehearsal.run().await;
    let line = report.line(&plan);
    println!("{line}");
    assert!(
        report.failures.is_empty(),
        "{line}\n{}",
        report.failures.join("\n")
    );
    assert_eq!(report.refusals(), 0, "{line}: token requests refused");
    assert!(
        report.scheduled_rotations >= 3,
        "{line}: fewer than three scheduled rotations; simulate more days"
    );
    // Each rotation brings a new signing key into use.
    // Each rotation brought a new signing key into use (the last one may
    // not have signed yet when the rehearsal ends).
    assert!(
        report.kids.len() as u64 >= report.scheduled_rotations,
        "{line}: {:?}",
        report.kids
    );
}

/// ECS (two replicas polling), envelope keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearsal_ecs_kms_envelope() {
    rehearse("ecs", "kms-envelope").await;
}

/// ECS (two replicas polling), KMS signing every token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearsal_ecs_kms() {
    rehearse("ecs", "kms").await;
}

/// The template's defaults: Lambda (two environments, each reading the set
/// when invoked), KMS signing every token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearsal_lambda_kms() {
    rehearse("lambda", "kms").await;
}
