//! Secrets: values that must never reach a log line, an error message or an API answer.
//!
//! A secret is written in the config as a literal, as `env:NAME` (read from the daemon's
//! environment) or through a sibling `*_file` field (the file's content, trimmed). Its `Debug`
//! and `Display` show only where it came from.

use std::fmt;
use std::path::Path;

/// A secret value with a redacted `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    origin: String,
}

impl Secret {
    /// Resolves `text` (a literal or `env:NAME`) into a secret.
    pub fn from_text(text: &str) -> Result<Secret, String> {
        match text.strip_prefix("env:") {
            Some(name) => {
                let name = name.trim();
                if name.is_empty() {
                    return Err("`env:` needs a variable name, e.g. `env:SLACK_WEBHOOK_URL`".into());
                }
                match std::env::var(name) {
                    Ok(value) if !value.trim().is_empty() => Ok(Secret {
                        value: value.trim().to_string(),
                        origin: format!("env:{name}"),
                    }),
                    Ok(_) => Err(format!("environment variable {name} is empty")),
                    Err(_) => Err(format!("environment variable {name} is not set")),
                }
            }
            None => Ok(Secret::literal(text)),
        }
    }

    /// A value given in the configuration itself, or built from non-secret parts.
    pub fn literal(value: &str) -> Secret {
        Secret {
            value: value.to_string(),
            origin: "inline".to_string(),
        }
    }

    /// Reads a secret from a file, trimming surrounding whitespace.
    pub fn from_file(path: &Path) -> Result<Secret, String> {
        match std::fs::read_to_string(path) {
            Ok(value) if !value.trim().is_empty() => Ok(Secret {
                value: value.trim().to_string(),
                origin: format!("file:{}", path.display()),
            }),
            Ok(_) => Err(format!("secret file {} is empty", path.display())),
            Err(e) => Err(format!("cannot read secret file {}: {e}", path.display())),
        }
    }

    /// Whether `given` is this secret, compared in constant time (a token from a request):
    /// `subtle`'s comparison, whose guarantee survives the optimiser. The length is not
    /// secret (it leaks through the request's size anyway).
    pub fn matches(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(self.value.as_bytes().ct_eq(given.as_bytes()))
    }

    /// The secret itself. Call this only where the value is used, never to format a message.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// A secret made from this one's value, keeping where it came from.
    pub fn map(&self, f: impl FnOnce(&str) -> String) -> Secret {
        Secret {
            value: f(&self.value),
            origin: self.origin.clone(),
        }
    }

    /// Where the secret came from (`env:NAME`, `file:PATH` or `inline`); safe to log.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<redacted, {}>)", self.origin)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted secret from {}>", self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presented_token_matches_only_when_it_is_the_same() {
        let s = Secret::literal("phc_project_token");
        assert!(s.matches("phc_project_token"));
        assert!(!s.matches("phc_project_tokem"));
        assert!(!s.matches("phc_project_token "));
        assert!(!s.matches(""));
        assert!(!Secret::literal("").matches("x"));
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::from_text("https://hooks.example/T000/B000/XXXX").unwrap();
        assert!(!format!("{s:?}").contains("XXXX"));
        assert!(!format!("{s}").contains("XXXX"));
        assert_eq!(s.expose(), "https://hooks.example/T000/B000/XXXX");
    }

    #[test]
    fn unset_env_is_an_error_naming_the_variable() {
        let err = Secret::from_text("env:SLOGUARD_TEST_SURELY_UNSET_VAR").unwrap_err();
        assert_eq!(
            err,
            "environment variable SLOGUARD_TEST_SURELY_UNSET_VAR is not set"
        );
    }
}
