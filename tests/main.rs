//! Whole-app tests, in one binary so the app compiles once.

mod apis;
mod auth;
mod benches;
mod browser;
mod cache;
mod common;
mod dashboard;
mod door;
mod drift;
mod early_stop;
mod engines;
mod first_hour;
mod format_harness;
mod full_loop;
mod gate;
mod golden;
mod golden_http;
mod judging;
mod mirror;
mod proxy;
mod python_clients;
mod recommend;
mod scale;
mod spend;
