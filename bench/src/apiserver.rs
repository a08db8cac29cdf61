//! The API server's own count of the requests it served (`apiserver_request_total` on its
//! /metrics): every client's, so it shows writes a resourceVersion does not (a no-op apply).

use kube::Client;

/// The requests served, summed over the series of `apiserver_request_total` whose label text
/// `counts` accepts.
pub async fn requests_served(
    client: &Client,
    counts: impl Fn(&str) -> bool,
) -> anyhow::Result<f64> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let body = client.request_text(request).await?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| counts(l))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Write requests served (all write verbs).
pub async fn writes_served(client: &Client) -> anyhow::Result<f64> {
    let writes = [
        "POST",
        "PUT",
        "PATCH",
        "APPLY",
        "DELETE",
        "DELETECOLLECTION",
    ];
    let is_write = |l: &str| writes.iter().any(|v| l.contains(&format!("verb=\"{v}\"")));
    requests_served(client, is_write).await
}
