//! The shapes of the ids that arrive from outside, checked where they arrive so that
//! nothing downstream (store keys, logs, metric labels, URLs) ever holds an id of
//! another shape. Each check names the field in its error. (Tenant, connector and
//! CRM source ids have the configuration's shape: `config::is_id`.)

/// The longest Kaizala id accepted (theirs are GUIDs, 36 characters).
pub const MAX_KAIZALA_ID: usize = 128;

/// A Dataverse record id: a GUID, 32 hex digits in the 8-4-4-4-12 form, as
/// Dataverse writes them (no braces: the id goes into `entityset(id)` URLs as is).
pub fn guid(field: &str, value: &str) -> Result<(), String> {
    let groups: Vec<&str> = value.split('-').collect();
    let shaped = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if shaped {
        Ok(())
    } else {
        Err(format!(
            "{field}: must be a GUID (8-4-4-4-12 hex digits), got {}",
            shown(value)
        ))
    }
}

/// A Kaizala id (group, action, response, event): 1 to [`MAX_KAIZALA_ID`] ASCII
/// letters, digits and `-`, `_`, `.`, `:`, `@`. Kaizala's own are GUIDs; the wider
/// set takes the forms its documentation shows and nothing that could end a store
/// key, a log line or a URL path segment.
pub fn kaizala_id(field: &str, value: &str) -> Result<(), String> {
    let shaped = !value.is_empty()
        && value.len() <= MAX_KAIZALA_ID
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b));
    if shaped {
        Ok(())
    } else {
        Err(format!(
            "{field}: must be 1 to {MAX_KAIZALA_ID} letters, digits, '-', '_', '.', ':' or '@', got {}",
            shown(value)
        ))
    }
}

/// A value for an error message: quoted with escapes (so control and bidi
/// characters show as such) and cut to a readable length.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(48).collect();
    let escaped: String = cut.escape_default().collect();
    if cut.len() < value.len() {
        format!("\"{escaped}\"…")
    } else {
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_pass_and_anything_else_is_named() {
        assert!(guid("id", "8c291050-9be8-45d6-97f5-bb7013930027").is_ok());
        assert!(guid("id", "8C291050-9BE8-45D6-97F5-BB7013930027").is_ok());
        assert!(guid("id", "{8C291050-9BE8-45D6-97F5-BB7013930027}").is_err());
        let error = guid("PrimaryEntityId", "../../x\u{202e}\0").unwrap_err();
        assert_eq!(
            error,
            "PrimaryEntityId: must be a GUID (8-4-4-4-12 hex digits), got \"../../x\\u{202e}\\u{0}\""
        );
        assert!(guid("id", "8c291050-9be8-45d6-97f5-bb701393002").is_err());
    }

    #[test]
    fn kaizala_ids_take_their_documented_forms_only() {
        for ok in ["3e49b367-acf6-48a7-a675-6bf4d372a070", "poll:r1:5", "a@b.c"] {
            assert!(kaizala_id("id", ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_KAIZALA_ID + 1);
        for bad in ["", "a/b", "a b", "x\u{202e}", long.as_str()] {
            assert!(kaizala_id("data.actionId", bad).is_err(), "{bad}");
        }
    }
}
