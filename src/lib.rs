//! rhaibot: a runtime in which a QQ bot is a `.rhai` script.
//!
//! # Layout
//! - [`config`]: the TOML config, raw and validated.
//! - [`bot`]: what every protocol shares: the bot handle, calls, call errors.
//! - [`event`]: the one event type every protocol produces.
//! - [`api`]: the API surface as data (actions and their parameters).
//! - [`adapter`]: protocol ends (console, OneBot 11), each described once; wire traffic in, events
//!   out, calls executed.
//! - [`script`]: the script host: engines, limits, worker pool, dispatch.
//! - [`bindings`]: what scripts see (`onebot::`, `msg::`, `Event`).
//! - [`runtime`]: wires it all together and shuts it down in order.
//!
//! Data flows one way: adapter -> Event -> dispatch -> script callbacks -> calls -> adapter.

pub mod adapter;
pub mod admin;
pub mod api;
pub mod bindings;
pub mod bot;
pub mod catalog;
pub mod config;
pub mod event;
pub mod logsafe;
pub mod project;
pub mod runtime;
pub mod scenario;
pub mod scheduler;
pub mod script;
pub mod storage;
pub mod tls;
