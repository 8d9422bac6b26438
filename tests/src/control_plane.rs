//! oidc-core's example control plane (`oidc-core/examples/control_plane.rs`)
//! run as its own process, the way an operator runs it: `GET /v1/actions`
//! answers a connector whose bearer token verifies.

use std::time::Duration;

/// A running `control_plane` example; killed when dropped.
pub struct ControlPlane {
    child: tokio::process::Child,
    /// Its `/v1/actions` URL.
    pub actions_url: String,
}

impl ControlPlane {
    /// Builds the example (or finds it up to date) and starts it with `args`
    /// (`--issuer URL --audience AUD`, or `--trust FILE`, ...) and
    /// `--listen` on a free loopback port; returns once it accepts
    /// connections.
    pub async fn start<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Self {
        let binary = tokio::task::spawn_blocking(|| {
            crate::built_executable(&["--example", "control_plane"], "control_plane")
        })
        .await
        .expect("build the control_plane example");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = tokio::process::Command::new(&binary)
            .args(args)
            .args(["--listen", &listen])
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("start the control_plane example");
        let control_plane = Self {
            child,
            actions_url: format!("http://{listen}/v1/actions"),
        };
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(&listen).await.is_ok() {
                return control_plane;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the control plane does not listen on {listen}");
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
