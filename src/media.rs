//! Settings of the multimodal endpoints: audio uploads (size limit, spool directory) and video
//! jobs (storage, retention, polling, webhooks). Read from the environment with the rest of
//! the router's settings (`settings.rs`, which holds these); every variable is documented in
//! docs/configuration.md under "Multimodal and video".

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{bool_var, number_var};
use crate::config::{Secret, VarSource};
use crate::relay::pace::PaceLimits;

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
    /// Deadline and minimum rate of a whole upload (`UPLOAD_DEADLINE_SECS`,
    /// `UPLOAD_MIN_BYTES_PER_SEC`, `UPLOAD_RATE_GRACE_SECS`, `UPLOAD_RATE_WINDOW_SECS`).
    pub pace: PaceLimits,
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
            // 25 MiB in 15 minutes needs about 30 KB/s; the minimum rate only catches trickles.
            pace: PaceLimits {
                deadline: Duration::from_secs(900),
                min_bytes_per_sec: 4096,
                grace: Duration::from_secs(10),
                window: Duration::from_secs(10),
            },
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
    /// Most finished videos kept on disk, in bytes (`VIDEO_MAX_STORED_MB`): past it the oldest
    /// are expired early. At least `max_bytes`, so the newest video always fits.
    pub max_stored_bytes: u64,
    /// Most unfinished (queued or running) jobs of one client key (`VIDEO_MAX_UNFINISHED_PER_KEY`);
    /// without keys configured, every caller counts as one.
    pub max_unfinished_per_key: u32,
    /// Most unfinished jobs in the whole job table, all replicas (`VIDEO_MAX_UNFINISHED`).
    pub max_unfinished: u32,
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
            max_stored_bytes: 20 * 1024 * 1024 * 1024,
            max_unfinished_per_key: 32,
            max_unfinished: 512,
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
        if let Some(v) = num("UPLOAD_DEADLINE_SECS", 1.0) {
            m.upload.pace.deadline = secs(v);
        }
        if let Some(v) = num("UPLOAD_MIN_BYTES_PER_SEC", 0.0) {
            m.upload.pace.min_bytes_per_sec = v as u64;
        }
        if let Some(v) = num("UPLOAD_RATE_GRACE_SECS", 0.0) {
            m.upload.pace.grace = secs(v);
        }
        if let Some(v) = num("UPLOAD_RATE_WINDOW_SECS", 0.1) {
            m.upload.pace.window = secs(v);
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
        if let Some(v) = num("VIDEO_MAX_STORED_MB", 1.0) {
            m.video.max_stored_bytes = (v * 1024.0 * 1024.0) as u64;
        }
        if let Some(v) = num("VIDEO_MAX_UNFINISHED_PER_KEY", 1.0) {
            m.video.max_unfinished_per_key = v as u32;
        }
        if let Some(v) = num("VIDEO_MAX_UNFINISHED", 1.0) {
            m.video.max_unfinished = v as u32;
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
        m.video.webhook_allow_private =
            bool_var(vars, "VIDEO_WEBHOOK_ALLOW_PRIVATE", &mut errors).unwrap_or(false);
        m.video.runner_id = text("VIDEO_RUNNER_ID").map(|s| s.trim().to_string());
        if m.video.max_stored_bytes < m.video.max_bytes {
            errors.push(format!(
                "VIDEO_MAX_STORED_MB ({} MiB) must be at least VIDEO_MAX_MB ({} MiB), so one video always fits",
                m.video.max_stored_bytes >> 20,
                m.video.max_bytes >> 20
            ));
        }
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

    #[test]
    fn upload_pace_and_video_caps() {
        let m = MediaSettings::from_vars(&vars(&[])).unwrap();
        assert_eq!(m.upload.pace.deadline, Duration::from_secs(900));
        assert_eq!(m.upload.pace.min_bytes_per_sec, 4096);
        assert_eq!(m.video.max_unfinished_per_key, 32);
        assert_eq!(m.video.max_unfinished, 512);
        assert_eq!(m.video.max_stored_bytes, 20 << 30);
        let m = MediaSettings::from_vars(&vars(&[
            ("UPLOAD_DEADLINE_SECS", "3"),
            ("UPLOAD_MIN_BYTES_PER_SEC", "0"),
            ("UPLOAD_RATE_GRACE_SECS", "0.5"),
            ("UPLOAD_RATE_WINDOW_SECS", "2"),
            ("VIDEO_MAX_UNFINISHED_PER_KEY", "4"),
            ("VIDEO_MAX_UNFINISHED", "9"),
            ("VIDEO_MAX_MB", "2"),
            ("VIDEO_MAX_STORED_MB", "3"),
        ]))
        .unwrap();
        assert_eq!(
            m.upload.pace,
            PaceLimits {
                deadline: Duration::from_secs(3),
                min_bytes_per_sec: 0,
                grace: Duration::from_millis(500),
                window: Duration::from_secs(2),
            }
        );
        assert_eq!(
            (m.video.max_unfinished_per_key, m.video.max_unfinished),
            (4, 9)
        );
        assert_eq!(m.video.max_stored_bytes, 3 << 20);
        for bad in [
            ("UPLOAD_DEADLINE_SECS", "0"),
            ("UPLOAD_MIN_BYTES_PER_SEC", "-1"),
            ("UPLOAD_RATE_WINDOW_SECS", "0"),
            ("VIDEO_MAX_UNFINISHED_PER_KEY", "0"),
            ("VIDEO_MAX_UNFINISHED", "none"),
            // Smaller than the largest video (4096 MiB by default).
            ("VIDEO_MAX_STORED_MB", "100"),
        ] {
            assert!(MediaSettings::from_vars(&vars(&[bad])).is_err(), "{bad:?}");
        }
    }
}
