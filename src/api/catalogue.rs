//! `GET /v1/catalogue`: the self-hosted model catalogue (docs/catalogue.md) as an OpenAI-style
//! list, the same entries `switchyard catalogue list --format json` prints, optionally filtered
//! by `category` and `engine`. Each entry carries its full `dockerfile` text, as the platform's
//! catalogue entries do. The catalogue is compiled in, so this never touches the mesh.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::json_response;
use crate::catalogue::{self, Category, Engine, Published};
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
pub struct CatalogueQuery {
    category: Option<String>,
    engine: Option<String>,
}

/// A filter value, or a 400 naming the parameter and the accepted values.
fn parse_filter<T: std::str::FromStr<Err = String>>(
    value: Option<&str>,
    param: &str,
) -> Result<Option<T>, ApiError> {
    value
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|e| ApiError::bad_request(format!("Invalid `{param}`: {e}."), Some(param)))
        })
        .transpose()
}

pub async fn list(query: web::Query<CatalogueQuery>) -> Result<HttpResponse, ApiError> {
    let category: Option<Category> = parse_filter(query.category.as_deref(), "category")?;
    let engine: Option<Engine> = parse_filter(query.engine.as_deref(), "engine")?;
    let all = catalogue::entries().map_err(|e| {
        tracing::error!(error = %e, "the embedded catalogue does not load");
        ApiError::internal("The model catalogue is unavailable.")
    })?;
    let data: Vec<Published<'_>> = all
        .iter()
        .filter(|e| {
            category.is_none_or(|c| e.category == c) && engine.is_none_or(|g| e.engine == g)
        })
        .map(Published::of)
        .collect();
    Ok(json_response(&json!({
        "object": "list",
        "total_count": data.len(),
        "data": data,
    })))
}
