//! `POST /v1/images/generations` and the files it links to (`GET /_mock/files/{id}.png`).

use std::sync::OnceLock;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};

use super::errors::{bad_request, not_found, Rejection};
use super::faults::deliver;
use super::request::{begin_json, JsonRequest};
use super::state::{lock, MockState};
use super::util::{base64_encode, unix_now};

pub const ROUTE: &str = "/v1/images/generations";
pub const FILES_ROUTE: &str = "/_mock/files/{name}";
const MAX_IMAGES: u64 = 10;
/// Issued URLs remembered before the oldest are forgotten (all at once; it is a mock).
const MAX_REMEMBERED: usize = 100_000;

/// A valid 2×2 RGB PNG (red, green / blue, white).
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0xfd, 0xd4, 0x9a,
    0x73, 0x00, 0x00, 0x00, 0x12, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8, 0xcf, 0xc0, 0xc0,
    0x00, 0xc2, 0x0c, 0xff, 0x81, 0x00, 0x00, 0x1f, 0xee, 0x05, 0xfb, 0xf1, 0xab, 0xba, 0x77, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

pub async fn generations(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<MockState>,
) -> HttpResponse {
    let request = match begin_json(&req, payload, &state, ROUTE).await {
        Ok(r) => r,
        Err(rejection) => return *rejection,
    };
    match respond(&request, &state) {
        Ok(response) => response,
        Err(rejection) => *rejection,
    }
}

fn respond(request: &JsonRequest, state: &web::Data<MockState>) -> Result<HttpResponse, Rejection> {
    request.model()?;
    if request.str_field("prompt").is_none() {
        return Err(
            bad_request("`prompt` is required and must be a string", Some("prompt")).into(),
        );
    }
    let n = match request.body.get("n") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=MAX_IMAGES) => n,
            _ => {
                return Err(bad_request(
                    format!("`n` must be an integer within 1..{MAX_IMAGES}"),
                    Some("n"),
                )
                .into())
            }
        },
    };
    let as_url = match request.str_field("response_format") {
        None | Some("url") => true,
        Some("b64_json") => false,
        Some(other) => {
            return Err(bad_request(
                format!("`response_format` must be `url` or `b64_json`, not `{other}`"),
                Some("response_format"),
            )
            .into())
        }
    };
    let data: Vec<Value> = (0..n)
        .map(|_| {
            if as_url {
                json!({"url": issue_url(state)})
            } else {
                json!({"b64_json": png_base64()})
            }
        })
        .collect();
    let body = json!({"created": unix_now(), "data": data});
    Ok(deliver(
        state,
        &request.settings,
        "application/json",
        Bytes::from(body.to_string()),
    ))
}

/// The PNG in base64, encoded once.
fn png_base64() -> &'static str {
    static ENCODED: OnceLock<String> = OnceLock::new();
    ENCODED.get_or_init(|| base64_encode(PNG))
}

fn issue_url(state: &MockState) -> String {
    let id = format!("img_{:016x}", fastrand::u64(..));
    let url = format!("{}/_mock/files/{id}.png", state.base_url);
    let mut images = lock(&state.images);
    if images.len() >= MAX_REMEMBERED {
        images.clear();
    }
    images.insert(id);
    url
}

/// Serves an image URL handed out by [`generations`]; not subject to faults.
pub async fn file(name: web::Path<String>, state: web::Data<MockState>) -> HttpResponse {
    state.count(FILES_ROUTE);
    let known = name
        .strip_suffix(".png")
        .is_some_and(|id| lock(&state.images).contains(id));
    if !known {
        return not_found(format!("No mock file `{name}`"));
    }
    HttpResponse::Ok()
        .content_type("image/png")
        .body(Bytes::from_static(PNG))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for b in bytes {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn png_chunks_have_valid_crcs() {
        assert_eq!(&PNG[..8], b"\x89PNG\r\n\x1a\n");
        let mut at = 8;
        let mut names = Vec::new();
        while at < PNG.len() {
            let len = u32::from_be_bytes(PNG[at..at + 4].try_into().unwrap()) as usize;
            let typed = &PNG[at + 4..at + 8 + len];
            let crc = u32::from_be_bytes(PNG[at + 8 + len..at + 12 + len].try_into().unwrap());
            assert_eq!(crc32(typed), crc);
            names.push(String::from_utf8_lossy(&typed[..4]).into_owned());
            at += 12 + len;
        }
        assert_eq!(names, ["IHDR", "IDAT", "IEND"]);
    }
}
