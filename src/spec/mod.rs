//! The stack file: YAML text -> node tree with positions -> validated, typed [`Stack`].
//!
//! Every problem in a file is reported in one run, each with `file:line:column` and its fix
//! (see [`SpecErrors`]). No input, however malformed, makes this module panic.

pub mod cidr;
pub mod diagnostic;
pub mod known;
pub mod model;
pub mod names;
mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, SpecErrors};
pub use model::Stack;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read stack file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(SpecErrors),
    /// A `PWLESS_DB_*` variable that names one database's connection (a tunnel, a certificate
    /// name), for a stack with several.
    #[error(
        "{variable} is set, and the stack has several databases ({databases}): it would not say which one it is for; unset it, and give each entry of `databases` its own `admin_endpoint` (and `tls_server_name`)"
    )]
    AmbiguousOverride { variable: String, databases: String },
}

/// Reads and validates the stack file at `path`.
pub fn load(path: &Path) -> Result<Stack, SpecError> {
    load_with_warnings(path).map(|(stack, _)| stack)
}

/// Reads and validates the stack file at `path`; also gives the warnings (values pwless does
/// not know but that may be right, such as an instance class newer than its table), which
/// are `None` when there are none.
///
/// `PWLESS_DB_ADMIN_ENDPOINT`, when set, is a tunnel of the user's own to the database: the
/// stack then takes the `endpoint` path whatever its `database.admin_access` says (no relay
/// in the cluster).
///
/// # Errors
/// [`SpecError::AmbiguousOverride`] when `PWLESS_DB_ADMIN_ENDPOINT` or
/// `PWLESS_DB_TLS_SERVER_NAME` is set and the stack has several databases (each entry of
/// `databases` says its own `admin_endpoint` and `tls_server_name`).
pub fn load_with_warnings(path: &Path) -> Result<(Stack, Option<SpecErrors>), SpecError> {
    let bytes = std::fs::read(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (mut stack, warnings) =
        parse_bytes_with_warnings(path, &bytes).map_err(SpecError::Invalid)?;
    let set = |variable: &str| std::env::var_os(variable).is_some_and(|value| !value.is_empty());
    if let [_, _, ..] = stack.databases.as_slice() {
        for variable in crate::db::ONE_DATABASE_OVERRIDES {
            if set(variable) {
                return Err(SpecError::AmbiguousOverride {
                    variable: variable.to_string(),
                    databases: stack
                        .databases
                        .iter()
                        .map(|database| database.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    if set("PWLESS_DB_ADMIN_ENDPOINT") {
        for database in &mut stack.databases {
            database.connection.admin_access = model::AdminAccess::Endpoint;
        }
    }
    Ok((stack, warnings))
}

/// Validates stack text; `path` only names the file in messages.
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Stack, SpecErrors> {
    parse_bytes_with_warnings(path, bytes).map(|(stack, _)| stack)
}

/// [`parse_bytes`], with the warnings.
pub fn parse_bytes_with_warnings(
    path: &Path,
    bytes: &[u8],
) -> Result<(Stack, Option<SpecErrors>), SpecErrors> {
    let source = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let valid = &bytes[..error.valid_up_to()];
            let line = valid.iter().filter(|byte| **byte == b'\n').count() + 1;
            let column = valid
                .rsplit(|byte| *byte == b'\n')
                .next()
                .map_or(0, |tail| String::from_utf8_lossy(tail).chars().count())
                + 1;
            let text = String::from_utf8_lossy(bytes);
            return Err(SpecErrors::new(
                path,
                &text,
                vec![Diagnostic {
                    path: String::new(),
                    span: yaml::SourceSpan::point(line, column),
                    message: "the stack file is not valid UTF-8".into(),
                    help: Some("save the file as UTF-8".into()),
                    secret: false,
                }],
            ));
        }
    };
    parse_str_with_warnings(path, source)
}

pub fn parse_str(path: &Path, source: &str) -> Result<Stack, SpecErrors> {
    parse_str_with_warnings(path, source).map(|(stack, _)| stack)
}

/// [`parse_str`], with the warnings (`None` when there are none).
pub fn parse_str_with_warnings(
    path: &Path,
    source: &str,
) -> Result<(Stack, Option<SpecErrors>), SpecErrors> {
    let root = yaml::parse(source).map_err(|error| {
        SpecErrors::new(
            path,
            source,
            vec![Diagnostic {
                path: String::new(),
                span: error.span,
                message: error.message,
                help: Some("fix the YAML syntax at this place".into()),
                secret: false,
            }],
        )
    })?;
    let (stack, warnings) = validate::validate(&root)
        .map_err(|diagnostics| SpecErrors::new(path, source, diagnostics))?;
    let warnings = (!warnings.is_empty()).then(|| SpecErrors::new(path, source, warnings));
    Ok((stack, warnings))
}
