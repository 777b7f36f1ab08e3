//! `evaltap exchanges`: find stored exchanges by source, model and tags, newest first — the ids
//! `rubric render --exchange` and the API take.

use evaltap_store::{Filter, StoredExchange};

use evaltap_app::App;

/// What `evaltap exchanges` found.
#[derive(Debug, serde::Serialize)]
pub struct Found {
    /// Newest first.
    pub exchanges: Vec<StoredExchange>,
    /// Rows that did not read back (skipped, counted).
    pub unreadable: usize,
}

/// Up to `limit` exchanges matching `filter` and every `key=value` of `tags`, newest first.
pub async fn find(app: &App, filter: &Filter, tags: &[String], limit: usize) -> anyhow::Result<Found> {
    let wanted = evaltap_app::golden::parse_tags(tags)?;
    if limit == 0 {
        return Err(crate::UsageError("--limit must be at least 1".into()).into());
    }
    // Tags are JSON on every engine: match them here, reading newest first a page at a time.
    const PAGE: i64 = 500;
    let mut found = Found { exchanges: Vec::new(), unreadable: 0 };
    let mut offset = 0;
    loop {
        let page_size = if wanted.is_empty() { limit as i64 } else { PAGE };
        let (page, unreadable) = app.store.exchanges_matching(filter, page_size, offset).await?;
        found.unreadable += unreadable;
        let read = page.len() + unreadable;
        found.exchanges.extend(
            page.into_iter()
                .filter(|e| {
                    wanted.iter().all(|(k, v)| {
                        evaltap_app::golden::tag_value(&e.exchange.tags, k).as_deref() == Some(v)
                    })
                })
                .take(limit - found.exchanges.len()),
        );
        if found.exchanges.len() >= limit || (read as i64) < page_size {
            return Ok(found);
        }
        offset += page_size;
    }
}

/// One line per exchange: id, time, source, model, tags and the start of the last user message.
pub fn render(found: &Found) -> String {
    let mut out = String::new();
    if found.exchanges.is_empty() {
        out.push_str("no stored exchange matches\n");
    }
    for e in &found.exchanges {
        let prompt: String =
            evaltap_core::chat::last_user_text(&e.exchange.request).chars().take(60).collect();
        out.push_str(&format!(
            "{}  {}  {:<12} {:<16} {}  {}\n",
            e.id,
            e.received_at.format("%Y-%m-%d %H:%M:%S"),
            e.source,
            e.exchange.model.as_deref().unwrap_or("-"),
            if e.exchange.tags.as_object().is_some_and(|t| !t.is_empty()) {
                e.exchange.tags.to_string()
            } else {
                String::new()
            },
            prompt.replace('\n', " ")
        ));
    }
    if found.unreadable > 0 {
        out.push_str(&format!("({} unreadable rows skipped)\n", found.unreadable));
    }
    out
}
