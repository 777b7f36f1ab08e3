//! Persistence over sqlx (SQLite), with the migrations under migrations/.
