//! Who may call: client keys for `/v1`, admin keys for `/admin/*` and `/metrics`, per-key model
//! lists, and the key's limits checked at the door (their shared accounting is
//! `crate::quota`). See docs/security.md and docs/limits.md.
//!
//! # Layout
//! - `keys`: the key store (digests only, constant-time lookup) and the keys file.
//! - `middleware`: the scope check every request passes, with the key's requests/minute.

mod keys;
mod middleware;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

pub use keys::{digest, KeyStore, Lookup};
pub use middleware::{admin_scope, client_scope, metrics_scope, Scope};

use crate::config::VarSource;

/// Who can reach `/v1`, decided before binding and said at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Clients need a key.
    KeyRequired,
    /// No client key, and only this machine can connect.
    OpenOnLoopback,
    /// No client key on a reachable address, by the operator's choice.
    OpenToNetwork,
}

/// The auth state shared by every worker; the key store is swapped on reload.
pub struct Auth {
    store: RwLock<Arc<KeyStore>>,
    /// `METRICS_PUBLIC=true`: `/metrics` needs no key.
    pub metrics_public: bool,
    /// Where the keys file is read from on start and reload, if any.
    pub keys_file: Option<PathBuf>,
}

impl Auth {
    pub fn new(store: KeyStore, metrics_public: bool, keys_file: Option<PathBuf>) -> Auth {
        Auth {
            store: RwLock::new(Arc::new(store)),
            metrics_public,
            keys_file,
        }
    }

    /// Read the keys (`API_KEYS`, `ADMIN_API_KEY(S)`, the keys file at `keys_file`); the auth
    /// settings that are not keys (`METRICS_PUBLIC`, where the keys file is) come from
    /// `settings::AuthSettings`, read with the rest of the environment.
    pub fn load(
        vars: &dyn VarSource,
        metrics_public: bool,
        keys_file: Option<PathBuf>,
    ) -> Result<Auth, Vec<String>> {
        let store = KeyStore::load(vars, keys_file.as_deref())?;
        Ok(Auth::new(store, metrics_public, keys_file))
    }

    pub fn store(&self) -> Arc<KeyStore> {
        self.store
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn replace_store(&self, store: KeyStore) {
        *self
            .store
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(store);
    }

    /// Say loudly what is open; called once at start, with where the server listens.
    pub fn warn_at_start(&self, exposure: Exposure, host: &str) {
        let store = self.store();
        match exposure {
            Exposure::KeyRequired => tracing::info!(
                keys = store.len(),
                host,
                "client keys configured: /v1 requires a Bearer key"
            ),
            Exposure::OpenOnLoopback => tracing::warn!(
                host,
                "no client keys configured: /v1 is open, listening on loopback only. Set API_KEYS or a keys file (KEYS_FILE) to require a key; ALLOW_UNAUTHENTICATED=true to serve it open on another address."
            ),
            Exposure::OpenToNetwork => {
                let msg = format!("NO CLIENT KEYS CONFIGURED: /v1 is OPEN to anyone who can reach {host} (ALLOW_UNAUTHENTICATED=true). Set API_KEYS or a keys file (KEYS_FILE) to require a key.");
                tracing::warn!("{msg}");
                eprintln!("WARNING: {msg}");
            }
        }
        if let Some(warning) = self
            .keys_file
            .as_deref()
            .and_then(|path| keys_file_exposure(&store, path))
        {
            tracing::warn!("{warning}");
        }
        if !store.has_admin_keys() {
            tracing::warn!("no ADMIN_API_KEY configured: /admin/* is disabled");
        }
        if self.metrics_public {
            tracing::info!("METRICS_PUBLIC=true: /metrics needs no key");
        }
    }
}

/// `KEYS_FILE`, else `config/keys.yaml` when it exists.
pub fn keys_file_path(vars: &dyn VarSource) -> Option<PathBuf> {
    match vars.get("KEYS_FILE") {
        Some(p) if !p.trim().is_empty() => Some(PathBuf::from(p.trim())),
        _ => {
            let default = PathBuf::from("config/keys.yaml");
            default.exists().then_some(default)
        }
    }
}

/// A warning when the keys file holds keys in plain text and its group or others may read it.
/// A file of `key_sha256` entries and `${VAR}` references holds no secret and needs none.
pub fn keys_file_exposure(store: &KeyStore, path: &std::path::Path) -> Option<String> {
    if !store.file_has_plaintext_keys() {
        return None;
    }
    let mode = file_mode(path)?;
    (mode & 0o077 != 0).then(|| {
        format!(
            "keys file {} holds plaintext keys and is readable by group/others (mode {:03o}): \
             chmod 600 it, or write key_sha256 / ${{VAR}} entries instead",
            path.display(),
            mode & 0o777
        )
    })
}

#[cfg(unix)]
fn file_mode(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode())
}

#[cfg(not(unix))]
fn file_mode(_path: &std::path::Path) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars as vars;

    fn keys_file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        file
    }

    #[cfg(unix)]
    #[test]
    fn readable_keys_files_with_plaintext_keys_are_warned_about() {
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let env = vars(&[("TEAM_KEY", "team-key-from-env")]);
        // (file, mode, warned)
        let cases = [
            ("keys: [{name: a, key: plain-text-key}]", 0o644, true),
            ("keys: [{name: a, key: plain-text-key}]", 0o640, true),
            ("keys: [{name: a, key: plain-text-key}]", 0o604, true),
            ("keys: [{name: a, key: plain-text-key}]", 0o600, false),
            ("keys: [{name: a, key: plain-text-key}]", 0o400, false),
            ("keys: [{name: a, key: 'pre-${TEAM_KEY}'}]", 0o644, true),
            (
                "keys: [{name: a, key: '${NOPE:-default-key}'}]",
                0o644,
                true,
            ),
            ("keys: [{name: a, key: '${TEAM_KEY}'}]", 0o644, false),
            (
                &*format!("keys: [{{name: a, key_sha256: {sha}}}]"),
                0o644,
                false,
            ),
        ];
        for (text, mode, warned) in cases {
            let file = keys_file(text, mode);
            let store = KeyStore::load(&env, Some(file.path())).unwrap();
            let warning = keys_file_exposure(&store, file.path());
            assert_eq!(warning.is_some(), warned, "{text} {mode:o}: {warning:?}");
            if let Some(w) = warning {
                assert!(!w.contains("plain-text-key"), "{w}");
                assert!(w.contains(&format!("{mode:03o}")), "{w}");
            }
        }
    }
}
