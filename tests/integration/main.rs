//! Integration tests: the runtime against fake protocol ends over loopback, and the binary as
//! a user runs it.

#[path = "../support/mod.rs"]
mod support;

mod api_client;
mod catalog;
mod cli;
mod conversations;
mod examples;
mod hardening;
mod library;
mod milky;
mod onebot_ws;
mod qq;
mod qq_bot;
mod reload;
mod storage;
mod transports;
mod verbs;
