//! Where a connector's learned credentials live: the refresh token Kaizala rotated
//! and the endpoint a 308 moved it to. Both must survive a restart: the rotated
//! token replaces the configured one for good, and the old endpoint may be gone.
//!
//! Until the durable store lands this is a JSON file under the data directory,
//! written atomically (a temporary file, then a rename) and readable by its owner only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::error::KaizalaError;

/// What was learned about one connector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learned {
    /// A refresh token Kaizala handed out to replace the configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The endpoint a 308 pointed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

/// Keeps what was learned about connectors, keyed `tenant/connector`.
pub trait CredentialStore: Send + Sync {
    /// What is known about `key`.
    fn load(&self, key: &str) -> Result<Learned, KaizalaError>;
    /// Records `learned` for `key`, durably, before returning.
    fn save(&self, key: &str, learned: &Learned) -> Result<(), KaizalaError>;
}

/// A [`CredentialStore`] in one JSON file.
pub struct FileCredentialStore {
    path: PathBuf,
    lock: Mutex<()>,
}

impl FileCredentialStore {
    /// A store in `path` (created on first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn read_all(&self) -> Result<BTreeMap<String, Learned>, KaizalaError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                KaizalaError::Credentials(format!("{} is not valid: {e}", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(KaizalaError::Credentials(format!(
                "cannot read {}: {e}",
                self.path.display()
            ))),
        }
    }
}

impl CredentialStore for FileCredentialStore {
    fn load(&self, key: &str) -> Result<Learned, KaizalaError> {
        let _guard = self.lock.lock().unwrap();
        Ok(self.read_all()?.remove(key).unwrap_or_default())
    }

    fn save(&self, key: &str, learned: &Learned) -> Result<(), KaizalaError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _guard = self.lock.lock().unwrap();
        let mut all = self.read_all()?;
        all.insert(key.to_string(), learned.clone());
        let fail = |what: &str, e: std::io::Error| {
            KaizalaError::Credentials(format!("cannot {what} {}: {e}", self.path.display()))
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail("create the directory of", e))?;
        }
        let temporary = self.path.with_extension("tmp");
        let text = serde_json::to_vec_pretty(&all).expect("plain data serializes");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| fail("write", e))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(|e| fail("write", e))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| fail("replace", e))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn saved_credentials_come_back_and_only_the_owner_may_read_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCredentialStore::new(dir.path().join("state/credentials.json"));
        assert_eq!(store.load("contoso/bot").unwrap(), Learned::default());
        let learned = Learned {
            refresh_token: Some("rt-2".into()),
            endpoint_url: None,
        };
        store.save("contoso/bot", &learned).unwrap();
        store.save("contoso/other", &Learned::default()).unwrap();
        assert_eq!(
            FileCredentialStore::new(store.path())
                .load("contoso/bot")
                .unwrap(),
            learned
        );
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
