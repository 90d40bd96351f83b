//! Speech, transcriptions, images and video jobs against the real `switchyard` binary and mock
//! engines (one test binary; see tests/api/main.rs for why the tests are grouped).

#[path = "../common/mod.rs"]
mod common;

mod media;
mod video;
