//! Tokens that travel to and from Kaizala (access and refresh tokens, webhook
//! callback tokens) held so that no `{:?}`, derived or new, can ever print one.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A token in a wire type or a value the bridge keeps: serialized as the plain
/// string the API uses, shown by `Debug` as `Token(redacted)`. Read it with
/// [`Token::expose`] only where it is sent.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// The token itself, to put in a header or a body.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether there is no token (Kaizala sends `""` for "no new refresh token").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Token {
    fn from(token: String) -> Self {
        Self(token)
    }
}

impl From<&str> for Token {
    fn from(token: &str) -> Self {
        Self(token.to_string())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token_and_serde_keeps_it_plain() {
        let token = Token::from("kz-s3cret");
        assert_eq!(format!("{token:?}"), "Token(redacted)");
        assert_eq!(serde_json::to_string(&token).unwrap(), "\"kz-s3cret\"");
        let back: Token = serde_json::from_str("\"kz-s3cret\"").unwrap();
        assert_eq!(back.expose(), "kz-s3cret");
    }
}
