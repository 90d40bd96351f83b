//! Who may call: client keys for `/v1`, admin keys for `/admin/*` and `/metrics`, per-key model
//! lists and rate limits. See docs/security.md.
//!
//! # Layout
//! - `keys`: the key store (digests only, constant-time lookup) and the keys file.
//! - `limits`: per-key requests/minute and tokens/minute buckets.
//! - `middleware`: the scope check every request passes.
//! - `sink`: charges finished requests' tokens to their key.

mod keys;
mod limits;
mod middleware;
mod sink;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

pub use keys::{digest, Caller, KeyStore, Lookup};
pub use limits::KeyLimiter;
pub use middleware::{admin_scope, client_scope, metrics_scope, Scope};
pub use sink::KeyUsageSink;

use crate::api::error::{ApiError, ErrorKind};
use crate::config::VarSource;

/// The auth state shared by every worker; the key store is swapped on reload.
pub struct Auth {
    store: RwLock<Arc<KeyStore>>,
    pub limiter: KeyLimiter,
    /// `METRICS_PUBLIC=true`: `/metrics` needs no key.
    pub metrics_public: bool,
    /// Where the keys file is read from on start and reload, if any.
    pub keys_file: Option<PathBuf>,
}

impl Auth {
    pub fn new(store: KeyStore, metrics_public: bool, keys_file: Option<PathBuf>) -> Auth {
        Auth {
            store: RwLock::new(Arc::new(store)),
            limiter: KeyLimiter::default(),
            metrics_public,
            keys_file,
        }
    }

    /// Read keys and auth settings from the environment (`API_KEYS`, `ADMIN_API_KEY(S)`,
    /// `KEYS_FILE` or `config/keys.yaml`, `METRICS_PUBLIC`).
    pub fn from_vars(vars: &dyn VarSource) -> Result<Auth, Vec<String>> {
        let keys_file = keys_file_path(vars);
        let store = KeyStore::load(vars, keys_file.as_deref())?;
        let metrics_public = vars.get("METRICS_PUBLIC").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
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

    /// Say loudly what is open; called once at start.
    pub fn warn_at_start(&self) {
        let store = self.store();
        if store.requires_client_key() {
            tracing::info!(
                keys = store.len(),
                "client keys configured: /v1 requires a Bearer key"
            );
        } else {
            let msg = "NO CLIENT KEYS CONFIGURED: /v1 is OPEN to anyone who can reach this port. Set API_KEYS or a keys file (KEYS_FILE) to require a key.";
            tracing::warn!("{msg}");
            eprintln!("WARNING: {msg}");
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

/// 403 for a key used on a model outside its list.
pub fn model_not_allowed(model: &str, caller: &Caller) -> ApiError {
    ApiError::new(
        ErrorKind::Forbidden,
        format!(
            "The API key `{}` may not use model `{model}`.",
            caller.key_id
        ),
    )
    .with_param("model")
    .with_code("model_not_allowed")
}
