//! Exactly once, in one place: the [`IdempotencyKey`] (built in `model/`), the marker
//! that carries it in a survey's invisible question, where each key's post stands
//! and what each action of ours was sent for ([`Correlations`], with the index of
//! actions still taking answers), and the holds that let one attempt at a time post
//! a key ([`Holds`]).

pub mod correlations;
pub mod holds;

pub use crate::model::IdempotencyKey;
pub use correlations::{Correlations, PostState};
pub use holds::{Held, Holds};

/// How the title of the invisible question that carries an idempotency key begins.
pub const KEY_MARKER_PREFIX: &str = "kaizala-bridge:";

/// The title of the invisible question that carries `key`.
pub fn key_marker(key: &str) -> String {
    format!("{KEY_MARKER_PREFIX}{key}")
}

/// The key a question title carries, when it is a marker of ours.
pub fn key_in_marker(title: &str) -> Option<&str> {
    title.strip_prefix(KEY_MARKER_PREFIX)
}
