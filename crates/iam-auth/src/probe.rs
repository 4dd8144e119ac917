//! One login with an IAM token, as `pwless verify` makes it from inside a pod of each service
//! account (`pwless-demo check-login USER...`), and the one-line report of it that pwless reads
//! back from the pod's log.
//!
//! A line is `pwless-verify<TAB>USER<TAB>OUTCOME<TAB>DETAIL`, OUTCOME one of `logged_in`
//! (DETAIL: `current_user` as the database sees it), `refused` (the database refused the
//! token: SQLSTATE 28000 or 28P01, what RDS answers as "PAM authentication failed"; DETAIL: its
//! message) or `failed` (anything else: no credentials, TLS, the network; DETAIL: the error and
//! its causes). Tabs and line breaks in DETAIL become spaces; everything else in the log is
//! not a report line.

use std::time::SystemTime;

use crate::db::{DbError, Target};
use crate::secret::Secret;
use crate::token::TokenSigner;

/// The first field of a report line.
pub const PREFIX: &str = "pwless-verify";

/// What one login attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The login succeeded; `current_user` as the database reports it.
    LoggedIn { current_user: String },
    /// The database refused the token (SQLSTATE 28000 or 28P01).
    Refused { message: String },
    /// The attempt ended before the database could say: credentials, TLS, network.
    Failed { message: String },
}

impl Outcome {
    /// `logged_in`, `refused` or `failed`.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::LoggedIn { .. } => "logged_in",
            Outcome::Refused { .. } => "refused",
            Outcome::Failed { .. } => "failed",
        }
    }

    /// The detail: `current_user`, or the message.
    pub fn detail(&self) -> &str {
        match self {
            Outcome::LoggedIn { current_user } => current_user,
            Outcome::Refused { message } | Outcome::Failed { message } => message,
        }
    }

    /// The report line for `user` (no line break at the end).
    pub fn line(&self, user: &str) -> String {
        let flat = |text: &str| text.replace(['\t', '\n', '\r'], " ");
        format!(
            "{PREFIX}\t{}\t{}\t{}",
            flat(user),
            self.word(),
            flat(self.detail())
        )
    }

    /// The user and outcome of a report line; `None` for any other line.
    pub fn parse(line: &str) -> Option<(String, Outcome)> {
        let mut fields = line.trim_end_matches(['\r', '\n']).splitn(4, '\t');
        if fields.next()? != PREFIX {
            return None;
        }
        let user = fields.next()?.to_string();
        let word = fields.next()?;
        let detail = fields.next().unwrap_or_default().to_string();
        let outcome = match word {
            "logged_in" => Outcome::LoggedIn {
                current_user: detail,
            },
            "refused" => Outcome::Refused { message: detail },
            "failed" => Outcome::Failed { message: detail },
            _ => return None,
        };
        Some((user, outcome))
    }
}

/// Logs in to `target` as `user` with a token signed by `signer` for `host:port` (the cluster
/// endpoint, even when `target` goes through a tunnel), asks `select current_user` and
/// disconnects. Never panics; every error is an [`Outcome`].
pub async fn login(
    signer: &TokenSigner,
    host: &str,
    port: u16,
    target: &Target,
    user: &str,
) -> Outcome {
    let token = match signer.token(host, port, user, SystemTime::now()) {
        Ok(token) => token,
        Err(error) => {
            return Outcome::Failed {
                message: crate::errors::chain(&error),
            };
        }
    };
    let password = Secret::new(token.expose().to_string());
    let client = match crate::db::connect(target, user, &password).await {
        Ok(client) => client,
        Err(error) => return refused_or_failed(&error),
    };
    match client.query_one("select current_user::text", &[]).await {
        Ok(row) => Outcome::LoggedIn {
            current_user: row.get(0),
        },
        Err(error) => Outcome::Failed {
            message: crate::db::describe(&error),
        },
    }
}

/// A refusal when the database answered the login with SQLSTATE 28000 or 28P01.
pub(crate) fn refused_or_failed(error: &DbError) -> Outcome {
    if let DbError::Connect { error: inner, .. } = error
        && let Some(database) = inner.as_db_error()
        && (*database.code() == tokio_postgres::error::SqlState::INVALID_PASSWORD
            || *database.code()
                == tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    {
        return Outcome::Refused {
            message: crate::db::describe(inner),
        };
    }
    Outcome::Failed {
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_line_reads_back_as_written_whatever_its_detail_holds() {
        let cases = [
            Outcome::LoggedIn {
                current_user: "app_user".into(),
            },
            Outcome::Refused {
                message: "PAM authentication failed for user \"reporting\" (SQLSTATE 28000)".into(),
            },
            Outcome::Failed {
                message: String::new(),
            },
        ];
        for outcome in cases {
            let line = outcome.line("app_user");
            assert_eq!(
                Outcome::parse(&line),
                Some(("app_user".to_string(), outcome))
            );
        }
        let flattened = Outcome::Failed {
            message: "one\ttwo\nthree".into(),
        }
        .line("u");
        assert_eq!(flattened, "pwless-verify\tu\tfailed\tone two three");
        for other in [
            "",
            "pwless-demo: listening on port 8080",
            "pwless-verify\tu\tmaybe\tx",
            "pwless-verify\tu",
        ] {
            assert_eq!(Outcome::parse(other), None, "{other:?}");
        }
    }
}
