//! axum: the mirror endpoint, the JSON API and the dashboard.
