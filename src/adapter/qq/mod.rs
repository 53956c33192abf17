//! The official QQ bot platform (seed 000, seeds 002–004). Built so far, each tested on its
//! own: the webhook signatures ([`sign`]), the AccessToken ([`token`]), the gateway's state
//! machine ([`gateway`]) and its socket loop with resume and a kept session
//! ([`gateway_socket`]), dispatch events read into events with intents computed from the
//! handlers ([`decode`], [`events`]), the webhook receiver, over HTTPS or behind a proxy
//! ([`webhook`]), the OpenAPI client every function will go through ([`rest`]), and the
//! reply rules: windows, budgets, `msg_seq` and channel pacing ([`reply`]).
//!
//! Not registered as an adapter yet: the 66 functions' request shapes, sharding over several
//! connections (`/gateway/bot`, `max_concurrency`), the reply layer wired to `ev.reply`, and the
//! registration are still to come, so no `[[bot]]` can use this protocol.

pub mod decode;
pub mod events;
pub mod gateway;
pub mod gateway_socket;
pub mod reply;
pub mod rest;
pub mod sign;
pub mod token;
pub mod webhook;

use crate::bot::Protocol;

/// The official platform: its bots will accept the `qq::` functions.
pub static PROTOCOL: Protocol = Protocol { name: "qq", namespace: "qq" };
