//! Per-route options of video backends (`video_mode`, `video_*_path`): how the router tells an
//! asynchronous job API from a backend that answers with the video, and where its job paths are.

use serde::{Deserialize, Serialize};

/// `models.yaml` route keys, flattened into the route.
#[derive(Debug, Default, Deserialize)]
pub struct RawVideoRoute {
    pub video_mode: Option<String>,
    pub video_submit_path: Option<String>,
    pub video_poll_path: Option<String>,
    pub video_content_path: Option<String>,
    pub video_cancel_path: Option<String>,
}

/// The keys of [`RawVideoRoute`], for "did you mean" suggestions on a route.
pub const VIDEO_ROUTE_KEYS: &[&str] = &[
    "video_mode",
    "video_submit_path",
    "video_poll_path",
    "video_content_path",
    "video_cancel_path",
];

/// How a video backend answers a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoMode {
    /// Decide from the answer: JSON with an `id` is a job, `video/*` or other binary is the video.
    #[default]
    Auto,
    Async,
    Sync,
}

impl VideoMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VideoMode::Auto => "auto",
            VideoMode::Async => "async",
            VideoMode::Sync => "sync",
        }
    }
}

/// Validated video options of one route. Paths are relative to the route's API base (like
/// `/video/generations`, which becomes `{base}/v1/video/generations`); `{id}` is the backend's
/// job id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoRouteOptions {
    pub mode: VideoMode,
    pub submit_path: String,
    pub poll_path: String,
    pub content_path: String,
    pub cancel_path: String,
}

impl Default for VideoRouteOptions {
    fn default() -> Self {
        VideoRouteOptions {
            mode: VideoMode::Auto,
            submit_path: "/video/generations".into(),
            poll_path: "/video/generations/{id}".into(),
            content_path: "/video/generations/{id}/content".into(),
            cancel_path: "/video/generations/{id}/cancel".into(),
        }
    }
}

impl VideoRouteOptions {
    /// Validate the raw keys; each problem is `(field, message)`.
    pub fn from_raw(raw: &RawVideoRoute) -> Result<VideoRouteOptions, Vec<(&'static str, String)>> {
        let mut out = VideoRouteOptions::default();
        let mut errors = Vec::new();
        if let Some(mode) = &raw.video_mode {
            out.mode = match mode.trim().to_ascii_lowercase().as_str() {
                "auto" => VideoMode::Auto,
                "async" => VideoMode::Async,
                "sync" => VideoMode::Sync,
                other => {
                    errors.push((
                        "video_mode",
                        format!("unknown mode {other:?}; expected auto, async or sync"),
                    ));
                    VideoMode::Auto
                }
            };
        }
        let mut path =
            |field: &'static str, value: &Option<String>, needs_id: bool, slot: &mut String| {
                let Some(p) = value.as_deref().map(str::trim) else {
                    return;
                };
                if !p.starts_with('/') {
                    errors.push((field, "must start with /".to_string()));
                } else if needs_id && !p.contains("{id}") {
                    errors.push((
                        field,
                        "must contain {id} (the backend's job id)".to_string(),
                    ));
                } else {
                    *slot = p.to_string();
                }
            };
        path(
            "video_submit_path",
            &raw.video_submit_path,
            false,
            &mut out.submit_path,
        );
        path(
            "video_poll_path",
            &raw.video_poll_path,
            true,
            &mut out.poll_path,
        );
        path(
            "video_content_path",
            &raw.video_content_path,
            true,
            &mut out.content_path,
        );
        path(
            "video_cancel_path",
            &raw.video_cancel_path,
            true,
            &mut out.cancel_path,
        );
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// A path template with the backend job id filled in (percent-encoded: ids come from the
    /// backend and must not change the path's shape).
    pub fn fill(template: &str, backend_id: &str) -> String {
        let encoded: String = url::form_urlencoded::byte_serialize(backend_id.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        template.replace("{id}", &encoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let ok = VideoRouteOptions::from_raw(&RawVideoRoute {
            video_mode: Some("SYNC".into()),
            video_poll_path: Some("/jobs/{id}/status".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ok.mode, VideoMode::Sync);
        assert_eq!(ok.poll_path, "/jobs/{id}/status");
        assert_eq!(ok.content_path, "/video/generations/{id}/content");
        let errs = VideoRouteOptions::from_raw(&RawVideoRoute {
            video_mode: Some("later".into()),
            video_content_path: Some("/content".into()),
            video_cancel_path: Some("cancel/{id}".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(errs.len(), 3);
    }

    #[test]
    fn route_keys_load_without_unknown_field_warnings() {
        let yaml = "models:\n  - id: v\n    type: video\n    route:\n      - kind: video-engine\n        base_url: http://127.0.0.1:9\n        video_mode: async\n        video_poll_path: /jobs/{id}\n";
        let vars = std::collections::HashMap::<String, String>::new();
        let registry = crate::config::load_str("t", yaml, None, &vars).unwrap();
        assert!(registry.warnings.is_empty(), "{:?}", registry.warnings);
        let video = &registry.models[0].routes[0].video;
        assert_eq!(video.mode, VideoMode::Async);
        assert_eq!(video.poll_path, "/jobs/{id}");
        let bad = "models:\n  - id: v\n    type: video\n    route:\n      - kind: video-engine\n        base_url: http://127.0.0.1:9\n        video_mode: whenever\n";
        let errs = crate::config::load_str("t", bad, None, &vars).unwrap_err();
        assert!(
            errs.messages().iter().any(|e| e.contains("video_mode")),
            "{errs}"
        );
    }

    #[test]
    fn ids_cannot_escape_the_path() {
        assert_eq!(
            VideoRouteOptions::fill("/v/{id}/content", "a/../b c"),
            "/v/a%2F..%2Fb%20c/content"
        );
    }
}
