//! Settings of the multimodal endpoints: audio uploads (size limit, spool directory) and video
//! jobs (storage, retention, polling, webhooks). Read from the environment with the rest of
//! [`crate::settings::Settings`]; every variable is documented in docs/configuration.md under
//! "Multimodal and video".

use std::path::PathBuf;
use std::time::Duration;

use crate::config::number_var;
use crate::config::{Secret, VarSource};

#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// Largest audio file accepted (`MAX_UPLOAD_MB`, default 25 MiB, OpenAI's limit).
    pub max_file_bytes: u64,
    /// Largest text field of a multipart form (prompt, language, …).
    pub max_field_bytes: usize,
    /// Most fields in one form.
    pub max_fields: usize,
    /// Where uploads are spooled when they cannot be streamed (`UPLOAD_SPOOL_DIR`).
    pub spool_dir: PathBuf,
}

impl UploadSettings {
    /// The whole multipart body may carry the file plus this much for fields and framing.
    pub fn max_body_bytes(&self) -> u64 {
        self.max_file_bytes + 1024 * 1024
    }
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            max_file_bytes: 25 * 1024 * 1024,
            max_field_bytes: 64 * 1024,
            max_fields: 64,
            spool_dir: PathBuf::from("var/spool"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VideoSettings {
    /// Where finished videos are kept (`VIDEO_STORAGE_DIR`).
    pub storage_dir: PathBuf,
    /// How long a finished video stays downloadable (`VIDEO_RETENTION_SECS`).
    pub retention: Duration,
    /// First delay between two polls of a backend job; it grows by half each time.
    pub poll_interval: Duration,
    pub poll_max_interval: Duration,
    /// Consecutive failed polls after which a job is failed.
    pub max_poll_failures: u32,
    /// How long a queued job may wait for backend capacity before it fails.
    pub queue_timeout: Duration,
    /// Longest call to a backend that answers with the video itself (sync mode).
    pub sync_timeout: Duration,
    /// Largest video accepted from a backend.
    pub max_bytes: u64,
    /// Signs webhooks (`X-Gateway-Signature`); unset = webhooks are sent unsigned.
    pub webhook_secret: Option<Secret>,
    pub webhook_max_attempts: u32,
    pub webhook_backoff: Duration,
    /// Webhooks may go to loopback/private/link-local addresses (`VIDEO_WEBHOOK_ALLOW_PRIVATE`).
    pub webhook_allow_private: bool,
    /// Identity of this router's job runner in the shared job table (`VIDEO_RUNNER_ID`).
    pub runner_id: Option<String>,
    /// How long a runner's claim on a job lasts without renewal (another replica may then take it).
    pub claim: Duration,
}

impl Default for VideoSettings {
    fn default() -> Self {
        VideoSettings {
            storage_dir: PathBuf::from("var/video"),
            retention: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_secs(1),
            poll_max_interval: Duration::from_secs(15),
            max_poll_failures: 30,
            queue_timeout: Duration::from_secs(3600),
            sync_timeout: Duration::from_secs(1800),
            max_bytes: 4 * 1024 * 1024 * 1024,
            webhook_secret: None,
            webhook_max_attempts: 8,
            webhook_backoff: Duration::from_secs(1),
            webhook_allow_private: false,
            runner_id: None,
            claim: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct MediaSettings {
    pub upload: UploadSettings,
    pub video: VideoSettings,
}

impl MediaSettings {
    /// Read from `vars`; malformed values are all reported.
    pub fn from_vars(vars: &dyn VarSource) -> Result<MediaSettings, Vec<String>> {
        let mut m = MediaSettings::default();
        let mut errors = Vec::new();
        let mut num = |name: &str, min: f64| number_var(vars, name, min, &mut errors);
        let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
        let secs = Duration::from_secs_f64;
        if let Some(v) = num("MAX_UPLOAD_MB", 0.001) {
            m.upload.max_file_bytes = (v * 1024.0 * 1024.0) as u64;
        }
        if let Some(v) = num("VIDEO_RETENTION_SECS", 1.0) {
            m.video.retention = secs(v);
        }
        if let Some(v) = num("VIDEO_POLL_INTERVAL_MS", 10.0) {
            m.video.poll_interval = ms(v);
        }
        if let Some(v) = num("VIDEO_POLL_MAX_INTERVAL_MS", 10.0) {
            m.video.poll_max_interval = ms(v);
        }
        if let Some(v) = num("VIDEO_MAX_POLL_FAILURES", 1.0) {
            m.video.max_poll_failures = v as u32;
        }
        if let Some(v) = num("VIDEO_QUEUE_TIMEOUT_SECS", 1.0) {
            m.video.queue_timeout = secs(v);
        }
        if let Some(v) = num("VIDEO_SYNC_TIMEOUT_SECS", 1.0) {
            m.video.sync_timeout = secs(v);
        }
        if let Some(v) = num("VIDEO_MAX_MB", 1.0) {
            m.video.max_bytes = (v * 1024.0 * 1024.0) as u64;
        }
        if let Some(v) = num("VIDEO_WEBHOOK_MAX_ATTEMPTS", 1.0) {
            m.video.webhook_max_attempts = v as u32;
        }
        if let Some(v) = num("VIDEO_WEBHOOK_BACKOFF_MS", 10.0) {
            m.video.webhook_backoff = ms(v);
        }
        if let Some(v) = num("VIDEO_CLAIM_SECS", 2.0) {
            m.video.claim = secs(v);
        }
        let text = |name: &str| vars.get(name).filter(|v| !v.trim().is_empty());
        if let Some(dir) = text("UPLOAD_SPOOL_DIR") {
            m.upload.spool_dir = PathBuf::from(dir);
        }
        if let Some(dir) = text("VIDEO_STORAGE_DIR") {
            m.video.storage_dir = PathBuf::from(dir);
        }
        m.video.webhook_secret = text("VIDEO_WEBHOOK_SECRET").map(Secret::new);
        m.video.webhook_allow_private = text("VIDEO_WEBHOOK_ALLOW_PRIVATE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        m.video.runner_id = text("VIDEO_RUNNER_ID").map(|s| s.trim().to_string());
        if m.video.poll_max_interval < m.video.poll_interval {
            m.video.poll_max_interval = m.video.poll_interval;
        }
        if errors.is_empty() {
            Ok(m)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars as vars;

    #[test]
    fn defaults_and_overrides() {
        let m = MediaSettings::from_vars(&vars(&[])).unwrap();
        assert_eq!(m.upload.max_file_bytes, 25 * 1024 * 1024);
        assert!(m.video.webhook_secret.is_none());
        let m = MediaSettings::from_vars(&vars(&[
            ("MAX_UPLOAD_MB", "1.5"),
            ("VIDEO_POLL_INTERVAL_MS", "50"),
            ("VIDEO_WEBHOOK_SECRET", "s3cret"),
            ("UPLOAD_SPOOL_DIR", "/tmp/spool"),
        ]))
        .unwrap();
        assert_eq!(m.upload.max_file_bytes, 1572864);
        assert_eq!(m.video.poll_interval, Duration::from_millis(50));
        assert_eq!(m.upload.spool_dir, PathBuf::from("/tmp/spool"));
        assert!(!format!("{:?}", m.video).contains("s3cret"));
    }

    #[test]
    fn bad_values_are_all_reported() {
        let errs = MediaSettings::from_vars(&vars(&[
            ("MAX_UPLOAD_MB", "lots"),
            ("VIDEO_RETENTION_SECS", "-1"),
        ]))
        .unwrap_err();
        assert_eq!(errs.len(), 2);
    }
}
