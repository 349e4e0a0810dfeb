//! Secrets in the configuration: given inline, as `env:NAME` or as `file:PATH`.
//!
//! A [`Secret`] holds the text as written until [`Secret::resolve`] replaces it with the
//! value it points to; [`crate::config::Config::load`] resolves every secret before it
//! hands out a configuration, so code outside this module only ever sees values. The
//! text lives in a [`SecretString`] from the start, so not even an `env:` reference is
//! printed by `Debug`.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// Why a secret reference could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// `env:NAME` names a variable that is not set.
    #[error("environment variable {0} is not set")]
    EnvUnset(String),
    /// `env:NAME` names a variable that is set but empty.
    #[error("environment variable {0} is empty")]
    EnvEmpty(String),
    /// `file:PATH` could not be read.
    #[error("cannot read secret file {path}: {reason}")]
    FileUnreadable {
        /// The file, as resolved against the configuration's directory.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// `file:PATH` is empty (or holds only a newline).
    #[error("secret file {0} is empty")]
    FileEmpty(String),
    /// A literal that reads like a shell variable no shell expanded (`"$NAME"` or
    /// `"${NAME}"`): taken as written it would be the secret, and every call would
    /// be refused.
    #[error("{0:?} reads like an environment variable that was never expanded: write \"env:{1}\" to read it from the environment (or give a secret that really is this text with file:)")]
    Unexpanded(String, String),
}

/// A configured secret: an API secret, a token, a password-bearing URL.
#[derive(Clone, Default)]
pub struct Secret(SecretString);

impl Secret {
    /// A secret with this value, already resolved (used by tests and emulators).
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The value, for the one place that must send it over the wire.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The value as a `SecretString`, for the parts that keep a secret of their own.
    pub fn to_secret_string(&self) -> SecretString {
        self.0.clone()
    }

    /// True when nothing was configured.
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }

    /// Replaces an `env:NAME` or `file:PATH` reference by the value it names.
    ///
    /// `env` is the environment to read (a snapshot, so tests need not touch the
    /// process's); a relative `file:` path is taken from `base_dir`, the directory of
    /// the configuration file. A file's trailing newline is dropped, because secret
    /// files written by `echo` or mounted by Kubernetes often end with one.
    pub fn resolve(
        &mut self,
        env: &HashMap<String, String>,
        base_dir: &Path,
    ) -> Result<(), SecretError> {
        let text = self.0.expose_secret();
        let value = if let Some(name) = text.strip_prefix("env:") {
            match env.get(name) {
                Some(value) if !value.is_empty() => value.clone(),
                Some(_) => return Err(SecretError::EnvEmpty(name.to_string())),
                None => return Err(SecretError::EnvUnset(name.to_string())),
            }
        } else if let Some(path) = text.strip_prefix("file:") {
            let path = base_dir.join(path);
            let content =
                std::fs::read_to_string(&path).map_err(|e| SecretError::FileUnreadable {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            let value = content.trim_end_matches(['\r', '\n']).to_string();
            if value.is_empty() {
                return Err(SecretError::FileEmpty(path.display().to_string()));
            }
            value
        } else if let Some(name) = unexpanded_variable(text) {
            return Err(SecretError::Unexpanded(text.to_string(), name.to_string()));
        } else {
            return Ok(());
        };
        self.0 = SecretString::from(value);
        Ok(())
    }
}

/// The variable name of `$NAME` or `${NAME}` (upper case, digits and `_`, as
/// environment variables are written): what a literal secret would be if a shell or
/// a template had been meant to fill it in.
fn unexpanded_variable(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('$')?;
    let name = match rest.strip_prefix('{') {
        Some(braced) => braced.strip_suffix('}')?,
        None => rest,
    };
    let shaped = name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    shaped.then_some(name)
}

/// Whether `given` (from a request) is the secret `expected`, in time that depends on
/// neither: both are hashed (SHA-256) and the digests compared in constant time, so a
/// wrong guess tells neither how much of it was right nor how long the secret is.
pub fn secret_matches(given: &[u8], expected: &SecretString) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let given = Sha256::digest(given);
    let expected = Sha256::digest(expected.expose_secret().as_bytes());
    given.ct_eq(&expected).into()
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        SecretString::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_matches_only_itself_whatever_the_length() {
        let expected = SecretString::from("s3cret-token");
        assert!(secret_matches(b"s3cret-token", &expected));
        for wrong in [&b""[..], b"s3cret", b"s3cret-token!", b"S3cret-token"] {
            assert!(!secret_matches(wrong, &expected));
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn inline_value_is_kept() {
        let mut s = Secret::new("s3cret");
        s.resolve(&env(&[]), Path::new(".")).unwrap();
        assert_eq!(s.expose(), "s3cret");
    }

    #[test]
    fn a_shell_variable_left_unexpanded_is_refused_with_what_to_write() {
        for (literal, name) in [
            ("$D365_CLIENT_SECRET", "D365_CLIENT_SECRET"),
            ("${KZ_TOKEN}", "KZ_TOKEN"),
        ] {
            let mut secret = Secret::new(literal);
            let error = secret.resolve(&env(&[]), Path::new(".")).unwrap_err();
            assert_eq!(error, SecretError::Unexpanded(literal.into(), name.into()));
            assert!(
                error.to_string().contains(&format!("write \"env:{name}\"")),
                "{error}"
            );
        }
        for kept in ["$ecr3t-value", "pa$$word", "$lower_case", "$"] {
            let mut secret = Secret::new(kept);
            assert!(secret.resolve(&env(&[]), Path::new(".")).is_ok(), "{kept}");
            assert_eq!(secret.expose(), kept);
        }
    }

    #[test]
    fn env_reference_reads_the_variable() {
        let mut s = Secret::new("env:APP_SECRET");
        s.resolve(&env(&[("APP_SECRET", "from-env")]), Path::new("."))
            .unwrap();
        assert_eq!(s.expose(), "from-env");
    }

    #[test]
    fn unset_or_empty_variable_is_named() {
        let mut s = Secret::new("env:NOPE");
        assert_eq!(
            s.resolve(&env(&[]), Path::new("."))
                .unwrap_err()
                .to_string(),
            "environment variable NOPE is not set"
        );
        let mut s = Secret::new("env:BLANK");
        assert_eq!(
            s.resolve(&env(&[("BLANK", "")]), Path::new("."))
                .unwrap_err(),
            SecretError::EnvEmpty("BLANK".into())
        );
    }

    #[test]
    fn file_reference_is_relative_to_the_config_and_loses_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "from-file\n").unwrap();
        let mut s = Secret::new("file:token");
        s.resolve(&env(&[]), dir.path()).unwrap();
        assert_eq!(s.expose(), "from-file");
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Secret::new("file:absent");
        let err = s.resolve(&env(&[]), dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("cannot read secret file "), "{err}");
        assert!(err.contains("absent"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_value_or_the_reference() {
        assert_eq!(format!("{:?}", Secret::new("env:X")), "Secret([REDACTED])");
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret([REDACTED])"
        );
    }
}
