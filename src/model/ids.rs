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

/// A string id of one kind, a type of its own so that a tenant's id is never passed
/// where a group's is expected. Serialized as the bare string (job payloads and
/// stored correlations keep their shape); reads as `&str` where text is wanted.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_string())
            }
        }

        impl From<&String> for $name {
            fn from(id: &String) -> Self {
                Self(id.clone())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

string_id!(
    /// A Kaizala tenant as the configuration names it (`tenants[].id`): whose
    /// records, quota, callback token and state namespace a thing belongs to.
    TenantId
);
string_id!(
    /// A connector within its tenant (`tenants[].connectors[].id`): one Kaizala
    /// application, its credentials and its quota.
    ConnectorId
);
string_id!(
    /// A Kaizala group id: where an action is posted and its answers come from.
    GroupId
);

/// A connector of a tenant: what a Kaizala client, its quota and its learned
/// credentials belong to. Shown (and kept in the store) as `tenant/connector`;
/// neither id holds a `/` (the configuration refuses one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorRef {
    /// The tenant.
    pub tenant: TenantId,
    /// The connector within it.
    pub connector: ConnectorId,
}

impl ConnectorRef {
    /// `tenant`'s connector `connector`.
    pub fn new(tenant: impl Into<TenantId>, connector: impl Into<ConnectorId>) -> Self {
        Self {
            tenant: tenant.into(),
            connector: connector.into(),
        }
    }
}

impl std::fmt::Display for ConnectorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tenant, self.connector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_their_text_on_the_wire_and_a_connector_shows_its_tenant() {
        let tenant = TenantId::from("contoso");
        assert_eq!(serde_json::to_string(&tenant).unwrap(), "\"contoso\"");
        assert_eq!(
            serde_json::from_str::<GroupId>("\"g-1\"").unwrap(),
            GroupId::from("g-1")
        );
        assert_eq!(tenant, "contoso");
        assert_eq!(
            ConnectorRef::new("contoso", "app-1").to_string(),
            "contoso/app-1"
        );
        let mut map = std::collections::HashMap::new();
        map.insert(tenant, 1);
        assert_eq!(map.get("contoso"), Some(&1), "looked up by text");
    }

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
