//! The official QQ bot platform (seed 000, seeds 002–004). Built so far, each tested on its
//! own: the webhook signatures ([`sign`]), the AccessToken ([`token`]), the gateway's state
//! machine ([`gateway`]), dispatch events read into events with intents computed from the
//! handlers ([`decode`], [`events`]), and the webhook receiver, over HTTPS or behind a proxy
//! ([`webhook`]). Not registered as an adapter yet: the REST functions, the socket and
//! webhook transports, the events and the reply layer are still to come, so no `[[bot]]` can
//! use this protocol.

pub mod decode;
pub mod events;
pub mod gateway;
pub mod sign;
pub mod token;
pub mod webhook;

use crate::bot::Protocol;

/// The official platform: its bots will accept the `qq::` functions.
pub static PROTOCOL: Protocol = Protocol { name: "qq", namespace: "qq" };
