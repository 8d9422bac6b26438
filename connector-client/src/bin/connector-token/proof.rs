//! `proof`: one DPoP proof (RFC 9449) on stdout, signed with a key file.

use std::process::ExitCode;

use connector_client::cli::connector_token::ProofArgs;
use connector_client::cli::{self, EXIT_FAILURE, EXIT_USAGE};
use connector_client::DpopProof;
use zeroize::Zeroizing;

use crate::agent::fail;

pub(crate) fn run(args: &ProofArgs) -> ExitCode {
    let key = match cli::read_dpop_key(&args.dpop_key) {
        Ok(key) => key,
        Err(e) => return fail(EXIT_USAGE, &cli::one_line(&e)),
    };
    let token = match access_token(args) {
        Ok(token) => token,
        Err(message) => return fail(EXIT_USAGE, &message),
    };
    let mut proof = DpopProof::builder(&key, &args.htm, &args.htu);
    if let Some(token) = &token {
        proof = proof.access_token(token);
    }
    if let Some(nonce) = &args.nonce {
        proof = proof.nonce(nonce);
    }
    match proof.sign() {
        Ok(proof) => {
            println!("{}", proof.as_str());
            ExitCode::SUCCESS
        }
        Err(e) => fail(
            EXIT_FAILURE,
            &format!("cannot sign the DPoP proof: {}", cli::one_line(&e)),
        ),
    }
}

/// The access token of `--token-file` or `--access-token-env`, white space
/// around it dropped; `None` without either.
fn access_token(args: &ProofArgs) -> Result<Option<Zeroizing<String>>, String> {
    let (text, origin) = match (&args.token_file, &args.access_token_env) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
            (Zeroizing::new(text), "the token file")
        }
        (None, Some(var)) => {
            let text =
                std::env::var(var).map_err(|_| format!("the variable {var} is not set (or not UTF-8)"))?;
            (Zeroizing::new(text), "the token variable")
        }
        (None, None) => return Ok(None),
    };
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("{origin} holds no token (empty, or not printable ASCII)"));
    }
    Ok(Some(Zeroizing::new(token.to_owned())))
}
